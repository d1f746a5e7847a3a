"""The Python API: a few verbs over the core modules. The CLI is a thin layer over these."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .datasets import FaceSet, faces_from_arrays
from .labels import CKPLUS_EMOTIONS
from .model import Model
from .training import EpochStats, Trainer, TrainOptions


def create_model(arch: str = "seed", labels: list[str] | None = None, seed: int | None = 0) -> Model:
    """A new, untrained model of a registered architecture."""
    return Model.create(arch, labels, seed=seed)


def load_model(name_or_path: str | os.PathLike | None = None) -> Model:
    """A shipped model by name ("seed"), a model file by path, or the default model (None)."""
    return Model.load(name_or_path)


def train(model: Model, train_set: FaceSet, val_set: FaceSet | None = None,
          options: TrainOptions | None = None, out: str | os.PathLike | None = None,
          checkpoint: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
          log: Callable[[str], None] = print) -> list[EpochStats]:
    """Train `model` in place; save it to `out` if given. Returns the per-epoch history."""
    trainer = Trainer(model, train_set, val_set, options, checkpoint=checkpoint or None, log=log)
    if resume:
        trainer.restore(resume)
    t0 = time.perf_counter()
    history = trainer.run()
    model.config.info.setdefault("training", {}).update(
        {"epochs": len(history), "seconds_this_session": round(time.perf_counter() - t0, 1)})
    if out:
        model.save(out)
    return history


def fine_tune(model: Model | str | os.PathLike, faces: np.ndarray | FaceSet, codes=None, epochs: int = 10,
              lr: float = 0.001, batch_size: int = 32, seed: int = 0, crop: str = "detect",
              out: str | os.PathLike | None = None, log: Callable[[str], None] = print) -> Model:
    """Continue training a trained model on the user's own labelled faces.

    `faces` is an N x K x H x W array (K = 1 gray or 3 RGB, any H, W: the face is found and
    resized to the model input) with `codes`, CK+ class codes (1..7, or 0 for neutral); or a
    FaceSet. Classes the model does not know get new outputs (the head is widened).
    """
    model = model if isinstance(model, Model) else Model.load(model)
    data = faces if isinstance(faces, FaceSet) else faces_from_arrays(faces, codes, model.config.crop, crop)
    new = [n for n in data.labels if n not in model.labels]
    if new:
        order = ["neutral"] + CKPLUS_EMOTIONS
        model.with_labels(sorted(set(model.labels) | set(new), key=lambda n: order.index(n) if n in order else 99))
        log(f"new classes {', '.join(new)}: the model's output layer was widened to {len(model.labels)} classes")
    for note in data.notes:
        log(note)
    opts = TrainOptions(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    history = train(model, data, None, opts, out=None, log=log)
    model.config.info["fine_tuned"] = {"faces": len(data), "epochs": len(history), "lr": lr}
    if out:
        model.save(out)
    return model
