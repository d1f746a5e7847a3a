"""The labelled face sets that training, evaluation and calibration read, loaded as the command
and the API load them: one set or several, each face found by the dataset detector, every file
skipped logged. Imports no PyTorch (evaluating an ONNX model needs none); `mimika.api` exports
these beside the verbs that train on them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

from .common.errors import MimikaError
from .prepare.crop import CropSpec
from .prepare.datasets import FaceSet

PathLike = str | os.PathLike


def load_set(path: PathLike, spec: CropSpec, crop: str = "auto", labels: PathLike | None = None, detector=None,
             with_neutral: bool = False, log: Callable[[str], None] = print) -> FaceSet:
    """The set at `path` (any layout `load_dataset` reads) prepared for the crop `spec`; `detector`
    finds its faces where they are detected (None: the fixed `DATASET_DETECTOR`); every file
    skipped and every note logged. Under torchrun, rank 0 prepares it first (filling the cache)
    and the other processes then read it."""
    from .prepare.datasets import load_dataset
    from .training.distributed import rank_zero_first
    with rank_zero_first():
        data = load_dataset(path, spec, crop=crop, labeldir=labels, detector=detector, log=log,
                            with_neutral=with_neutral)
    for line in [f"skipped {s}" for s in data.skipped] + data.notes:
        log(line)
    return data


def load_sets(paths: PathLike | Sequence[PathLike], spec: CropSpec, crop: str = "auto",
              labels: PathLike | None = None, detector=None, with_neutral: bool = False,
              log: Callable[[str], None] = print) -> list[FaceSet]:
    """Several sets to train on at once (`load_set` each), every one checked to be there and of a
    layout this version reads before the first is prepared (minutes for a large one), and each
    one's summary logged. `labels` (the Emotion tree of a CK+ image tree) goes with one set only;
    `with_neutral` is for the CK+ sets among them (`neutral_frames`)."""
    from .prepare.datasets.registry import find_layout
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if labels and len(paths) > 1:
        raise MimikaError("--labels names the Emotion tree of one CK+ image tree; to use several sets, "
                          "give each CK+ set as its release folder")
    kinds = [find_layout(Path(path), labels and Path(labels)).name for path in paths]
    sets = [load_set(path, spec, crop, labels, detector, neutral, log)
            for path, neutral in zip(paths, neutral_frames(kinds, with_neutral))]
    for path, data in zip(paths, sets):
        log(summary(path, data))
    return sets


def neutral_frames(kinds: Sequence[str], with_neutral: bool) -> list[bool]:
    """Per set (its layout's name), whether it adds each sequence's first frame as neutral: a lone
    set when asked (a set of another layout then refuses it in one line); of several sets, the
    CK+ ones alone, as only they have sequences."""
    return [with_neutral and (len(kinds) == 1 or kind == "ckplus") for kind in kinds]


def summary(path: PathLike, data: FaceSet) -> str:
    """One line: the set's faces, subjects and faces per class."""
    subjects = len(set(data.subjects.tolist()) - {""}) or "unknown"
    counts = ", ".join(f"{k} {v}" for k, v in data.class_counts().items())
    return f"{path}: {len(data)} faces, {subjects} subjects; {counts}"
