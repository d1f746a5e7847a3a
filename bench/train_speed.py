"""Training throughput (images/s) of an architecture in each memory layout / precision.

    python bench/train_speed.py [--arch seed] [--batch 64] [--steps 10] [--repeats 3] [--augment]

Runs all four settings in one process on random inputs, interleaved, and prints medians and
ratios to the plain float32 default of PyTorch. mimika trains each architecture with the
fastest (nets.py: `train_bf16`; channels-last always).
"""

import argparse
import contextlib
import statistics
import time

import torch
from torch import nn

from mimika.network.model import Model
from mimika.training.augment import augment

SETTINGS = [("float32, contiguous", False, False), ("float32, channels-last", True, False),
            ("bf16 autocast, contiguous", False, True), ("bf16 autocast, channels-last", True, True)]


def images_per_second(model: Model, channels_last: bool, bf16: bool, batch: int, steps: int, aug: bool) -> float:
    net = model.net.train()
    net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    h, w = model.config.crop.height, model.config.crop.width
    x0 = torch.rand(batch, 1, h, w)
    y = torch.randint(0, len(model.labels), (batch,))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        x = augment(x0) if aug else x0
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with ctx():
            loss = nn.functional.cross_entropy(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="seed")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--augment", action="store_true", help="include the augmentation of each batch")
    a = ap.parse_args()
    model = Model.create(a.arch, seed=0)
    res = {s[0]: [] for s in SETTINGS}
    for _ in range(a.repeats):
        for name, cl, bf in SETTINGS:
            res[name].append(images_per_second(model, cl, bf, a.batch, a.steps, a.augment))
    base = statistics.median(res[SETTINGS[0][0]])
    print(f"arch {a.arch}, batch {a.batch}, augment {a.augment}, torch threads {torch.get_num_threads()}, "
          f"medians of {a.repeats}")
    for name, _, _ in SETTINGS:
        med = statistics.median(res[name])
        print(f"  {name:<30} {med:8.1f} images/s   {med / base:5.2f}x")


if __name__ == "__main__":
    main()
