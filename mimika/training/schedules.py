"""Learning-rate schedules: the rate as a function of where training is, so a resumed run needs
no scheduler state (the checkpoint's epoch says it all)."""

from __future__ import annotations

import math

from ..common.errors import MimikaError
from .options import SCHEDULE_NAMES, TrainOptions


def check_schedule(options: TrainOptions) -> None:
    if options.schedule not in SCHEDULE_NAMES:
        raise MimikaError(f"unknown learning-rate schedule {options.schedule!r} ({' or '.join(SCHEDULE_NAMES)})")
    if options.schedule == "cosine" and options.epochs is None:
        raise MimikaError("a cosine schedule needs a number of epochs (--epochs)")


def learning_rate(options: TrainOptions, epoch: int, step: int, steps: int) -> float:
    """The rate at step `step` of `steps` in epoch `epoch` (both 0-based): linear warm-up over
    `warmup_epochs`, then constant or cosine decay to 0 at the last epoch."""
    o = options
    t = epoch + step / steps
    if o.warmup_epochs and t < o.warmup_epochs:
        return o.lr * (t + 1 / steps) / o.warmup_epochs
    if o.schedule == "cosine":
        span = max(o.epochs - o.warmup_epochs, 1)
        return 0.5 * o.lr * (1 + math.cos(math.pi * min((t - o.warmup_epochs) / span, 1.0)))
    return o.lr
