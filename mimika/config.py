"""Model configuration and shipped-model lookup, without PyTorch: what prediction needs to know
about a model (labels, crop, normalization) travels with its weights in the model file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from .crop import CropSpec
from .errors import MimikaError

DEFAULT_MODEL = "ferplus"


@dataclass
class ModelConfig:
    """Everything needed to use the weights, stored in the model file beside them."""

    arch: str
    labels: list[str]
    crop: CropSpec
    mean: float = 0.0  # input = (pixel / 255 - mean) / std
    std: float = 1.0
    tta: str = ""  # test-time augmentation: "" none, "flip" averages the face and its mirror image
    info: dict = field(default_factory=dict)  # provenance: data, command, metrics

    @property
    def precision(self) -> str:
        """How the prediction file stores the network: "int8" (recorded by `mimika export --int8`) or "float"."""
        return self.info.get("onnx", {}).get("precision", "float")

    def to_dict(self) -> dict:
        return {"arch": self.arch, "labels": list(self.labels), "crop": self.crop.to_dict(),
                "mean": self.mean, "std": self.std, "tta": self.tta, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(arch=d["arch"], labels=list(d["labels"]), crop=CropSpec(**d["crop"]),
                   mean=float(d.get("mean", 0.0)), std=float(d.get("std", 1.0)), tta=d.get("tta", ""),
                   info=d.get("info", {}))

    def normalize(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops N x H x W -> float32 network input N x 1 x H x W."""
        x = np.asarray(crops, dtype=np.float32)[:, None]
        return (x * np.float32(1 / 255.0) - np.float32(self.mean)) * np.float32(1 / self.std)

    def predict_proba(self, logits: Callable[[np.ndarray], np.ndarray], crops: np.ndarray,
                      batch_size: int = 256) -> np.ndarray:
        """Softmax probabilities of `logits` (a network run on normalized input) for face crops,
        in batches; rows sum to 1. Shared by the PyTorch and ONNX back ends."""
        crops = np.asarray(crops)
        expect = (self.crop.height, self.crop.width)
        if crops.ndim != 3 or crops.shape[1:] != expect:
            raise MimikaError(f"face crops must be N x {expect[0]} x {expect[1]}, got {crops.shape}")
        if len(crops) == 0:
            return np.zeros((0, len(self.labels)))
        if self.tta not in ("", "flip"):
            raise MimikaError(f"unknown test-time augmentation {self.tta!r}")
        views = 2 if self.tta == "flip" else 1
        step = max(1, batch_size // views)
        parts = []
        for i in range(0, len(crops), step):
            chunk = crops[i:i + step]
            if views == 2:  # the faces and their mirror images in one run: one call's overhead, not two
                chunk = np.concatenate([chunk, chunk[:, :, ::-1]])
            p = _softmax(logits(self.normalize(chunk)))
            parts.append(p if views == 1 else (p[:len(p) // 2] + p[len(p) // 2:]) / 2)
        p = np.concatenate(parts)
        return p / p.sum(axis=1, keepdims=True)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def shipped_models() -> dict[str, dict[str, Path]]:
    """Models shipped inside the package: name -> {".onnx": prediction file, ".npz": training file}."""
    folder = resources.files("mimika") / "models"
    found: dict[str, dict[str, Path]] = {}
    for p in folder.iterdir():
        suffix = Path(p.name).suffix
        if suffix in (".npz", ".onnx"):
            found.setdefault(Path(p.name).stem, {})[suffix] = Path(str(p))
    return found


def resolve_model_path(name_or_path: str | os.PathLike | None, prefer: tuple[str, ...] = (".onnx", ".npz")
                       ) -> Path:
    """A shipped model's name (None: the default) or a file path, as a path; for a shipped model
    the first of its files in `prefer` (prediction prefers ONNX, training the .npz)."""
    name = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    shipped = shipped_models()
    if name in shipped and not Path(name).exists():
        files = shipped[name]
        for suffix in prefer:
            if suffix in files:
                return files[suffix]
        raise MimikaError(f"shipped model {name!r} has no {' or '.join(prefer)} file")
    p = Path(name)
    if p.exists() or p.suffix or os.sep in name:
        return p
    raise MimikaError(f"{name}: no such model file or shipped model (shipped: {', '.join(sorted(shipped)) or 'none'})")
