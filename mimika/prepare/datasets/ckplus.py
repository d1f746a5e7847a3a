"""The CK+ release layout: an image tree and an Emotion (label) tree of identical structure.

    cohn-kanade-images/Sxxx/yyy/Sxxx_yyy_ffffffff.png
    Emotion/Sxxx/yyy/Sxxx_yyy_ffffffff_emotion.txt      (one float: the sequence's code)

A sequence without a labelled counterpart is not loaded; of a labelled one the last 30% of
its frames (at least one) are taken, each labelled with the sequence's code.

Fixed split (`SPLIT`): by subject, 30% of the subjects (ordered by a hash of their id) are the test
part and 15% the validation part; a person is never on two sides. `--val-subjects F` and
cross-validation choose their own subjects instead, as before.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...common.errors import MimikaError
from ...common.labels import CKPLUS_EMOTIONS, code_to_label, in_code_order
from ..crop import CropSpec
from ..images import IMAGE_SUFFIXES
from .faceset import FaceSet, fixed_split
from .prepare import crop_files, stack_faces

IMAGE_TREE, LABEL_TREE = "cohn-kanade-images", "Emotion"
SPLIT = {"val": 0.15, "test": 0.30, "salt": "ckplus"}  # shares of the subjects (see the module's docstring)


def is_ckplus_root(path: Path) -> bool:
    return (path / IMAGE_TREE).is_dir() and (path / LABEL_TREE).is_dir()


def read_emotion_file(path: Path) -> str:
    """The label of a CK+ `*_emotion.txt` file (one number, e.g. `   3.0000000e+00`)."""
    if not path.is_file():  # a FIFO or device would block the read
        raise MimikaError(f"{path}: not a regular file")
    try:
        with open(path, "rb") as f:
            text = f.read(256).decode("ascii").strip()  # one number: a longer file is not an emotion file
        code = float(text.split()[0])
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        raise MimikaError(f"{path}: not a CK+ emotion file (expected one number, e.g. 3.0000000e+00)") from None
    return code_to_label(code, str(path))


def peak_frames(frames: list[Path], fraction: float) -> list[Path]:
    """The last `fraction` of a sequence's frames, at least one."""
    k = max(1, int(round(fraction * len(frames))))
    return frames[-k:]


def load_ckplus(datadir: str | os.PathLike, labeldir: str | os.PathLike | None = None,
                spec: CropSpec = CropSpec(), crop: str = "detect", fraction: float = 0.3,
                detector=None, with_neutral: bool = False) -> FaceSet:
    """Labelled CK+ frames as face crops. `datadir` is the image tree, or the folder holding
    both trees when `labeldir` is not given. `with_neutral` adds the first frame of every sequence
    (labelled or not: a sequence starts from a neutral face) as "neutral": the 8-class protocol."""
    datadir = Path(datadir)
    if labeldir is None:
        if not is_ckplus_root(datadir):
            raise MimikaError(f"{datadir}: expected '{IMAGE_TREE}' and '{LABEL_TREE}' folders "
                              "(or give the label tree separately)")
        datadir, labeldir = datadir / IMAGE_TREE, datadir / LABEL_TREE
    labeldir = Path(labeldir)
    for d in (datadir, labeldir):
        if not d.is_dir():
            raise MimikaError(f"{d}: no such folder")

    files, names, subjects = [], [], []
    for seq in sorted(p for p in datadir.glob("*/*") if p.is_dir()):
        rel = seq.relative_to(datadir)
        label_files = sorted((labeldir / rel).glob("*_emotion.txt")) if (labeldir / rel).is_dir() else []
        if with_neutral:
            first = sorted(f for f in seq.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)[:1]
            files += first
            names += ["neutral"] * len(first)
            subjects += [rel.parts[0]] * len(first)
        if not label_files:
            continue  # unlabelled sequence
        found = {read_emotion_file(f) for f in label_files}
        if len(found) > 1:
            raise MimikaError(f"{labeldir / rel}: label files disagree ({', '.join(sorted(found))})")
        label = found.pop()
        frames = sorted(f for f in seq.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not frames:
            raise MimikaError(f"{seq}: labelled sequence has no image frames")
        for f in peak_frames(frames, fraction):
            if with_neutral and f == frames[0]:
                continue  # a one-frame sequence: its frame is already there, as neutral
            files.append(f)
            names.append(label)
            subjects.append(rel.parts[0])
    if not files:
        raise MimikaError(f"{labeldir}: no labelled sequences (no *_emotion.txt beside a folder of {datadir})")

    labels = in_code_order(CKPLUS_EMOTIONS + names)
    crops, ok, skipped, notes = crop_files(files, spec, crop, "CK+ frames", detector)
    if not ok:
        raise MimikaError(f"{datadir}: none of the {len(files)} labelled frames could be read")
    return FaceSet(
        faces=stack_faces(crops, spec),
        y=np.array([labels.index(names[i]) for i in ok], dtype=np.int64),
        labels=labels,
        subjects=np.array([subjects[i] for i in ok], dtype=str),
        sources=[str(files[i]) for i in ok],
        skipped=skipped,
        notes=notes,
        splits=fixed_split([subjects[i] for i in ok], (d.name for d in datadir.iterdir() if d.is_dir()), **SPLIT),
    )
