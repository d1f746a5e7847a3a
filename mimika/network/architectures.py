"""Network architecture: the networks mimika can build, registered by name.

A registered architecture is built untrained from its name and class count; a trained one
is rebuilt from a model file by `mimika.model.Model.load`, which reads the name from the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..common.errors import MimikaError


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[int], nn.Module]  # num_classes -> untrained network
    input_size: tuple[int, int]  # width, height of the grayscale input
    description: str
    train_bf16: bool = False  # whether bf16 autocast trains it faster even on a CPU without native bf16
    any_input: bool = False  # global pooling: the same weights take faces of any size (`--input-size`)


ARCHITECTURES: dict[str, Architecture] = {}


def register(name: str, input_size: tuple[int, int], description: str, train_bf16: bool = False,
             any_input: bool = False):
    def wrap(build: Callable[[int], nn.Module]):
        ARCHITECTURES[name] = Architecture(name, build, input_size, description, train_bf16, any_input)
        return build
    return wrap


def get_architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise MimikaError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]


def build_net(arch: str, num_classes: int) -> nn.Module:
    """An untrained network of the named architecture with `num_classes` outputs (logits)."""
    return get_architecture(arch).build(num_classes)


def glorot_init(net: nn.Module) -> nn.Module:
    """Glorot-uniform weights and zero biases, as in the original (Lasagne) design."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


class SeedCNN(nn.Module):
    """The original network: 1x96x96 -> conv 32@5x5 ReLU -> maxpool 2 -> conv 32@5x5 ReLU ->
    maxpool 2 -> dropout .5 -> dense 256 ReLU -> dropout .5 -> dense N (softmax in the loss)."""

    def __init__(self, num_classes: int = 7, size: int = 96):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        side = ((size - 4) // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.5),
            nn.Linear(32 * side * side, 256), nn.ReLU(inplace=True), nn.Dropout(0.5),
        )
        self.head = nn.Linear(256, num_classes)
        glorot_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.classifier(self.features(x)))


register("seed", (96, 96), "the original thesis CNN (2 conv + 1 dense layer), 96x96 input", train_bf16=True)(
    lambda num_classes: SeedCNN(num_classes, 96))


def head_of(net: nn.Module) -> nn.Linear:
    """The final classification layer (every registered network names it `head`)."""
    return net.head


def conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGFace48(nn.Module):
    """A compact VGG for 48x48 grayscale faces: four stages of two 3x3 conv-BN-ReLU layers
    (widths w, 2w, 4w, 8w), max-pooling between, global average pooling, dropout, linear head.
    Sized for CPU training and inference (1.2M parameters at w=32)."""

    def __init__(self, num_classes: int = 8, width: int = 32, dropout: float = 0.4):
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        cin = 1
        for i, c in enumerate(w):
            layers += conv_bn(cin, c) + conv_bn(c, c)
            if i < len(w) - 1:
                layers.append(nn.MaxPool2d(2))
            cin = c
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.classifier(self.features(x)))


register("vgg48", (48, 48), "compact VGG (8 conv-BN layers, widths 32-256, global pooling), 48x48 input",
         any_input=True)(
    lambda num_classes: VGGFace48(num_classes, 32))
register("vgg48w", (48, 48), "wider compact VGG (widths 48-384), 48x48 input", any_input=True)(
    lambda num_classes: VGGFace48(num_classes, 48))
