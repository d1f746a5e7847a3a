"""Training: categorical cross-entropy, SGD with Nesterov momentum, shuffled minibatches.

Runs a fixed number of epochs, or until the training loss changes by less than `tol` between
consecutive epochs (bounded by `max_epochs`). A checkpoint holds the weights, the optimizer's
momentum, the epoch, the history and both random states, so a resumed run ends with the same
weights as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .augment import augment
from .datasets.base import FaceSet
from .errors import MimikaError
from .model import Model
from .modelfile import read_npz, write_npz
from .progress import progress


@dataclass
class TrainOptions:
    epochs: int | None = None  # None: until the loss settles
    max_epochs: int = 100
    tol: float = 1e-4
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    seed: int = 0
    channels_last: bool = True  # faster on CPU for every network measured (bench/train_speed.py)
    bf16: bool | None = None  # bf16 autocast; None: the architecture's measured choice (nets.py)
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    schedule: str = "constant"  # or "cosine" (needs `epochs`), with linear warm-up
    warmup_epochs: int = 0
    augment: bool = False  # random affine, flip, erasing (mimika/augment.py)
    soft_labels: bool = False  # train on the data's label distributions (FER+ votes) where it has them
    keep_best: bool = False  # end with the weights of the epoch with the best validation accuracy


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float

    def line(self, total: int | None) -> str:
        of = f"/{total}" if total else ""
        val = (f"  val loss {self.val_loss:.4f}  val acc {self.val_accuracy:.4f}"
               if self.val_loss is not None else "")
        return f"epoch {self.epoch}{of}  train loss {self.train_loss:.4f}{val}  ({self.seconds:.1f}s)"


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def evaluate_loss(model: Model, data: FaceSet, options: "TrainOptions | None" = None,
                  batch_size: int = 256) -> tuple[float, float]:
    """Mean cross-entropy and accuracy with dropout off."""
    o = options or TrainOptions()
    model.net.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, correct = 0.0, 0
    for i in range(0, len(data), batch_size):
        with _autocast(o.bf16):
            logits = model.net(_layout(model.to_input(data.faces[i:i + batch_size]), o.channels_last)).float()
        y = torch.from_numpy(data.y[i:i + batch_size])
        total += float(loss_fn(logits, y))
        correct += int((logits.argmax(1) == y).sum())
    return total / max(len(data), 1), correct / max(len(data), 1)


def data_fingerprint(data: FaceSet) -> str:
    """A short id of the training data, so a checkpoint is not resumed on other data."""
    import hashlib
    h = hashlib.sha1(data.faces.tobytes())
    h.update(data.y.tobytes())
    return h.hexdigest()[:16]


class Trainer:
    """One training run; `run()` trains, checkpointing after each epoch when asked."""

    def __init__(self, model: Model, train_set: FaceSet, val_set: FaceSet | None = None,
                 options: TrainOptions | None = None, checkpoint: str | os.PathLike | None = None,
                 log: Callable[[str], None] = print):
        if len(train_set) == 0:
            raise MimikaError("the training set is empty")
        self.model, self.options, self.log = model, options or TrainOptions(), log
        self.train_set = train_set.relabel(model.labels)
        self.val_set = val_set.relabel(model.labels) if val_set is not None and len(val_set) else None
        self.checkpoint = Path(checkpoint) if checkpoint else None
        o = self.options
        if o.bf16 is None:
            from .nets import get_architecture
            o.bf16 = get_architecture(model.config.arch).train_bf16
        if o.schedule not in ("constant", "cosine"):
            raise MimikaError(f"unknown learning-rate schedule {o.schedule!r} (constant or cosine)")
        if o.schedule == "cosine" and o.epochs is None:
            raise MimikaError("a cosine schedule needs a number of epochs")
        torch.manual_seed(o.seed)
        self.rng = np.random.default_rng(o.seed)
        if o.channels_last:
            model.net.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(model.net.parameters(), lr=o.lr, momentum=o.momentum, nesterov=True,
                                         weight_decay=o.weight_decay)
        self.history: list[EpochStats] = []
        self.best: tuple[float, int, dict] | None = None  # (val accuracy, epoch, weights)
        self.fingerprint = data_fingerprint(self.train_set)

    # checkpoint -------------------------------------------------------------------------
    def save_checkpoint(self, path: Path) -> None:
        meta, arrays = self.model.file_contents("float32")
        names = [n for n, _ in self.model.net.named_parameters()]
        for name, p in zip(names, self.model.net.parameters()):
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                arrays[f"optim/{name}"] = buf.detach().numpy().copy()
        arrays["rng/torch"] = torch.get_rng_state().numpy().copy()
        if self.best is not None:
            arrays.update({f"best/{k}": v.numpy().copy() for k, v in self.best[2].items()})
        meta["training"] = {
            "best": None if self.best is None else [self.best[0], self.best[1]],
            "epoch": len(self.history),
            "history": [asdict(h) for h in self.history],
            "options": asdict(self.options),
            "numpy_rng": self.rng.bit_generator.state,
            "data": self.fingerprint,
        }
        write_npz(path, meta, arrays)

    def restore(self, path: str | os.PathLike) -> None:
        """Continue the run saved in `path` (same model, data and options)."""
        path = Path(path)
        meta, arrays = read_npz(path)
        state = meta.get("training")
        if state is None:
            raise MimikaError(f"{path}: a model file, not a training checkpoint (nothing to resume)")
        if state["data"] != self.fingerprint:
            raise MimikaError(f"{path}: checkpoint was made on other training data")
        fixed = ("batch_size", "lr", "momentum", "seed", "channels_last", "bf16", "weight_decay",
                 "label_smoothing", "schedule", "warmup_epochs", "augment", "soft_labels")
        diff = [f"{k} {state['options'][k]} -> {getattr(self.options, k)}" for k in fixed
                if state["options"].get(k) != getattr(self.options, k)]
        if diff:
            raise MimikaError(f"{path}: checkpoint was made with other settings ({'; '.join(diff)})")
        saved = Model.from_file_contents(path, meta, arrays)
        if saved.config.arch != self.model.config.arch or saved.labels != self.model.labels:
            raise MimikaError(f"{path}: checkpoint is of another architecture or label list")
        self.model.net.load_state_dict(saved.net.state_dict())
        self.model.config = saved.config
        for name, p in self.model.net.named_parameters():
            if f"optim/{name}" in arrays:
                self.optimizer.state[p]["momentum_buffer"] = torch.from_numpy(arrays[f"optim/{name}"].copy())
        torch.set_rng_state(torch.from_numpy(arrays["rng/torch"].copy()))
        self.rng.bit_generator.state = state["numpy_rng"]
        self.history = [EpochStats(**h) for h in state["history"]]
        if state.get("best"):
            weights = {k[len("best/"):]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("best/")}
            self.best = (state["best"][0], state["best"][1], weights)
        self.log(f"resumed {path} after epoch {len(self.history)}")

    # training ---------------------------------------------------------------------------
    def learning_rate(self, epoch: int, step: int, steps: int) -> float:
        """The schedule's rate at a step of an epoch (0-based): derived, so resuming needs no state."""
        o = self.options
        t = epoch + step / steps
        if o.warmup_epochs and t < o.warmup_epochs:
            return o.lr * (t + 1 / steps) / o.warmup_epochs
        if o.schedule == "cosine":
            span = max(o.epochs - o.warmup_epochs, 1)
            return 0.5 * o.lr * (1 + math.cos(math.pi * min((t - o.warmup_epochs) / span, 1.0)))
        return o.lr

    def train_epoch(self) -> float:
        o, net, data = self.options, self.model.net, self.train_set
        net.train()
        use_soft = o.soft_labels and data.soft is not None
        loss_fn = nn.CrossEntropyLoss(reduction="sum", label_smoothing=o.label_smoothing)
        perm = self.rng.permutation(len(data))
        total = 0.0
        batches = range(0, len(perm), o.batch_size)
        epoch = len(self.history)
        for k, i in enumerate(progress(batches, f"epoch {epoch + 1}", total=len(batches), unit="batch")):
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate(epoch, k, len(batches))
            idx = np.sort(perm[i:i + o.batch_size])
            y = torch.from_numpy(data.soft[idx] if use_soft else data.y[idx])
            x = self.model.to_input(data.faces[idx])
            if o.augment:
                x = augment(x)
            with _autocast(o.bf16):
                logits = net(_layout(x, o.channels_last)).float()
            loss = loss_fn(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            (loss / len(idx)).backward()
            self.optimizer.step()
            total += float(loss.detach())
        net.eval()
        return total / len(data)

    def done(self) -> bool:
        o, h = self.options, self.history
        if o.epochs is not None:
            return len(h) >= o.epochs
        if len(h) >= o.max_epochs:
            return True
        return len(h) >= 2 and abs(h[-1].train_loss - h[-2].train_loss) < o.tol

    def run(self) -> list[EpochStats]:
        o = self.options
        while not self.done():
            t0 = time.perf_counter()
            train_loss = self.train_epoch()
            if not np.isfinite(train_loss):
                raise MimikaError(f"training diverged at epoch {len(self.history) + 1} (loss {train_loss}); "
                                  "lower the learning rate")
            val_loss = val_acc = None
            if self.val_set is not None:
                val_loss, val_acc = evaluate_loss(self.model, self.val_set, o)
                if o.keep_best and (self.best is None or val_acc > self.best[0]):
                    self.best = (val_acc, len(self.history) + 1,
                                 {k: v.detach().clone() for k, v in self.model.net.state_dict().items()})
            stats = EpochStats(len(self.history) + 1, train_loss, val_loss, val_acc, time.perf_counter() - t0)
            self.history.append(stats)
            if self.checkpoint:
                self.save_checkpoint(self.checkpoint)
            self.log(stats.line(o.epochs))
        if o.epochs is None:
            self.log(f"stopped after {len(self.history)} epochs ("
                     + ("max epochs reached" if len(self.history) >= o.max_epochs else f"loss change < {o.tol}")
                     + ")")
        if o.keep_best and self.best is not None:
            self.model.net.load_state_dict(self.best[2])
            self.log(f"kept the weights of epoch {self.best[1]} (best validation accuracy {self.best[0]:.4f})")
        self.model.net.to(memory_format=torch.contiguous_format)
        return self.history


def history_json(history: list[EpochStats]) -> str:
    return json.dumps([asdict(h) for h in history], indent=1)
