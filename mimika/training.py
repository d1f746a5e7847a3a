"""Training: categorical cross-entropy, SGD with Nesterov momentum, shuffled minibatches.

Runs a fixed number of epochs, or until the training loss changes by less than `tol` between
consecutive epochs (bounded by `max_epochs`). After each epoch a checkpoint (checkpoint.py) can
be written, from which a resumed run ends with the same weights as one never interrupted. The
options are in options.py, the learning-rate schedule in schedules.py; this module keeps the loop.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import checkpoint as checkpoints
from .augment import augment
from .checkpoint import EpochStats, TrainingState
from .datasets import FaceSet
from .errors import MimikaError
from .model import Model
from .options import TrainOptions
from .progress import progress
from .schedules import check_schedule, learning_rate

__all__ = ["EpochStats", "TrainOptions", "Trainer", "evaluate_loss", "history_json"]


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def save_dtype(options: TrainOptions) -> str:
    return "float16" if options.half else "float32"


def evaluate_loss(model: Model, data: FaceSet, options: TrainOptions | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the weights as they will be saved (float16 when the run
    saves float16), computed as prediction computes them (float32, the model's test-time
    augmentation): the figure `mimika evaluate` gives for the saved file."""
    o = options or TrainOptions()
    if len(data) == 0:
        return float("nan"), float("nan")
    p = model.rounded(save_dtype(o)).predict_proba(data.relabel(model.labels).faces)
    y = data.relabel(model.labels).y
    loss = float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).mean())
    return loss, float((p.argmax(1) == y).mean())


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
        check_schedule(o)
        torch.manual_seed(o.seed)
        self.rng = np.random.default_rng(o.seed)
        if o.channels_last:
            model.net.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(model.net.parameters(), lr=o.lr, momentum=o.momentum, nesterov=True,
                                         weight_decay=o.weight_decay)
        self.state = TrainingState(history=[], best=None)
        self.fingerprint = checkpoints.data_fingerprint(self.train_set)

    @property
    def history(self) -> list[EpochStats]:
        return self.state.history

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        try:
            checkpoints.save(path, self.model, self.optimizer, self.options, self.state, self.rng, self.fingerprint)
        except MimikaError as e:
            raise MimikaError(f"{e}; training stopped after epoch {len(self.history)}") from None

    def restore(self, path: str | os.PathLike) -> None:
        """Continue the run saved in `path` (same model, data and fixed options)."""
        self.state = checkpoints.restore(path, self.model, self.optimizer, self.options, self.rng, self.fingerprint)
        self.log(f"resumed {path} after epoch {len(self.history)}")

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
                group["lr"] = learning_rate(o, epoch, k, len(batches))
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
                if o.keep_best and (self.state.best is None or val_acc > self.state.best[0]):
                    self.state.best = (val_acc, len(self.history) + 1,
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
        if o.keep_best and self.state.best is not None:
            self.model.net.load_state_dict(self.state.best[2])
            self.log(f"kept the weights of epoch {self.state.best[1]} (best validation accuracy "
                     f"{self.state.best[0]:.4f})")
        self.model.net.to(memory_format=torch.contiguous_format)
        return self.history


def history_json(history: list[EpochStats]) -> str:
    return json.dumps([asdict(h) for h in history], indent=1)
