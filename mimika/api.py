"""The Python API for models and training: a few verbs over the core modules. The CLI is a thin
layer over these (recognition's verbs are in recognition.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .common.errors import MimikaError
from .common.fileio import check_writable
from .common.labels import in_code_order
from .network.model import Model
from .prepare.datasets import FaceSet, faces_from_arrays
from .training.loop import EpochStats, Trainer, kept_as_teacher, save_dtype
from .training.options import TrainOptions


def create_model(arch: str = "seed", labels: list[str] | None = None, seed: int | None = 0) -> Model:
    """A new, untrained model of a registered architecture."""
    return Model.create(arch, labels, seed=seed)


def load_model(name_or_path: str | os.PathLike | None = None) -> Model:
    """A shipped model by name ("seed"), a model file by path, or the default model (None)."""
    return Model.load(name_or_path)


def train(model: Model, train_set: FaceSet, val_set: FaceSet | None = None,
          options: TrainOptions | None = None, out: str | os.PathLike | None = None,
          checkpoint: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
          log: Callable[[str], None] = print, teachers: Sequence[Model] = ()) -> list[EpochStats]:
    """Train `model` in place. Returns the per-epoch history; the wall time goes into the model's
    info. With `out`, the model is saved there, with its history beside it (`.history.json`, and a
    plot `.history.png` when matplotlib is installed), and the saved file's validation accuracy is
    logged. Under torchrun every process calls this and trains its share of each batch
    (distributed.py); only rank 0 writes the checkpoint and `out`. `teachers`: models in memory
    distilled from beside those of `options.teacher`."""
    options = options or TrainOptions()
    for path in (out, checkpoint):
        if path:
            check_writable(path, "model file" if path == out else "checkpoint")
    trainer = Trainer(model, train_set, val_set, options, checkpoint=checkpoint or None, log=log,
                      teachers=teachers)
    if resume:
        trainer.restore(resume)
    t0 = time.perf_counter()
    history = trainer.run()
    model.config.info.setdefault("training", {}).update(
        {"epochs": len(history), "seconds_this_session": round(time.perf_counter() - t0, 1)})
    if train_set.detector:  # so figures on detector-cropped data can be reproduced with the same crops
        model.config.info["dataset_detector"] = train_set.detector
    if out and trainer.world.writer:
        save_run(model, history, out, options, val_set, log)
    return history


def save_run(model: Model, history: list[EpochStats], out: str | os.PathLike, options: TrainOptions,
             val_set: FaceSet | None = None, log: Callable[[str], None] = print) -> Path:
    """Write a trained model, its history (JSON, and a PNG plot when matplotlib is there) and log the
    validation accuracy of the file as saved (the figure `mimika evaluate` gives for it)."""
    from importlib.util import find_spec

    from .common.fileio import write_text
    from .training.loop import evaluate_loss, history_json
    out = model.save(out, dtype=save_dtype(options))
    stem = out.with_suffix("")
    written = [write_text(f"{stem}.history.json", history_json(history))]
    if find_spec("matplotlib") is not None:
        from .reports.plots import plot_history
        written.append(plot_history([h.__dict__ for h in history], f"{stem}.history.png"))
    log(f"saved {out} (history: {', '.join(str(p) for p in written)})")
    if val_set is not None and len(val_set) and history:
        log(f"validation accuracy of the saved weights {evaluate_loss(Model.load(out), val_set, options)[1]:.4f} "
            f"({len(val_set)} faces)")
    return out


def fine_tune(model: Model | str | os.PathLike, faces: np.ndarray | FaceSet, labels=None, epochs: int = 10,
              lr: float = 0.001, batch_size: int = 32, seed: int = 0, crop: str = "detect",
              out: str | os.PathLike | None = None, log: Callable[[str], None] = print, codes=None,
              device: str = "auto", augment: bool = False, keep: float = 0.0) -> Model:
    """Continue training a trained model on the user's own labelled faces.

    `faces` is an N x K x H x W array (K = 1 gray or 3 RGB, any H, W: the face is found and
    resized to the model input) with `labels`, one per face: CK+ codes (1..7, or 0 for neutral) or
    emotion names ("happiness", "happy"); or a FaceSet. Classes the model does not know get new
    outputs (the head is widened). `codes` is the old name of `labels`. `device`: where to train
    (auto: a GPU when PyTorch sees one). `augment`: random shifts, scales, rotations, flips and
    erasing of the faces. `keep`: the share of each target the starting model answers (its frozen
    copy as teacher, "learning without forgetting"), so it forgets less of the faces it knew; faces
    of a class it never learned keep their labels (experiment E17: 0 reads the user's people best,
    at a loss on everyone else).
    """
    labels = labels if labels is not None else codes
    model = model if isinstance(model, Model) else Model.load(model)
    if not isinstance(faces, FaceSet) and labels is None:
        raise MimikaError("fine_tune needs a label per face (CK+ codes or emotion names)")
    if not 0 <= keep <= 1:
        raise MimikaError(f"keep {keep}: the share of each target the starting model answers is between 0 and 1")
    data = faces if isinstance(faces, FaceSet) else faces_from_arrays(faces, labels, model.config.crop, crop)
    start = model.labels
    new = [n for n in data.labels if n not in start]
    teacher = kept_as_teacher(model) if keep else None
    if new:
        model.with_labels(in_code_order(start + new))
        log(f"new classes {', '.join(new)}: the model's output layer was widened to {len(model.labels)} classes")
    for note in data.notes:
        log(note)
    opts = TrainOptions(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, augment=augment,
                        teacher_weight=keep)
    history = train(model, data, None, opts, out=None, log=log, teachers=[teacher] if teacher else [])
    model.config.info["fine_tuned"] = {"faces": len(data), "epochs": len(history), "lr": lr, "augment": augment,
                                       "keep": keep}
    from .training.distributed import is_writer
    if out and is_writer():
        model.save(out)
    return model
