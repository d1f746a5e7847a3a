"""The Taiwan Corpora of Chinese Emotions (TFEID-style posed faces): performers in a studio.

    ROOT/labels.csv   image,subject,performance,view,label,votes_<emotion>...
    ROOT/<class>/<name>.jpg

Head-and-shoulders photos: the face is found by the detector and cropped aligned, as a user's
photo is. Each face carries its performer (`subject`) and the observers' vote shares per class,
which are its soft labels (`--soft-labels`): the observers' top vote agrees with the performed label
for 78% of the faces, for fear only 25 of 151. The votes of a row are normalised to sum to 1.

Fixed split (`SPLIT`): by performer, 30% of the performers in the test part and 15% in the
validation part; a person is never on two sides.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...common.errors import MimikaError
from ...common.labels import canonical_label, in_code_order
from ..crop import CropSpec
from .faceset import FaceSet, fixed_split
from .prepare import crop_files, csv_header, labelled_rows, stack_faces

INDEX = "labels.csv"
COLUMNS = ("image", "subject", "performance", "view", "label")
VOTES = "votes_"
SPLIT = {"val": 0.15, "test": 0.30, "salt": "taiwanese"}  # shares of the performers
MAX_INDEX_BYTES = 16 << 20


def is_taiwanese_root(path: Path) -> bool:
    """A folder with a `labels.csv` whose header names the performer and the observers' votes."""
    header = csv_header(path / INDEX)
    return tuple(header[:len(COLUMNS)]) == COLUMNS and any(h.startswith(VOTES) for h in header)


def read_index(root: Path) -> tuple[list[dict], list[str]]:
    """The rows of `labels.csv` (label, performer, votes) and the classes its vote columns name."""
    index = root / INDEX
    header = csv_header(index)
    vote_columns = [c for c in header if c.startswith(VOTES)]
    voted = [canonical_label(c[len(VOTES):]) for c in vote_columns]
    if None in voted:
        raise MimikaError(f"{index}: a vote column names no emotion: {vote_columns[voted.index(None)]}")
    rows = []
    for line, row, _, label in labelled_rows(index, MAX_INDEX_BYTES):
        try:
            votes = np.array([float(row[c]) for c in vote_columns])
        except (TypeError, ValueError):
            raise MimikaError(f"{index}: line {line}: the votes must be numbers") from None
        if not np.all(np.isfinite(votes)) or votes.min() < 0 or votes.sum() <= 0:
            raise MimikaError(f"{index}: line {line}: the votes must be shares >= 0, not all 0")
        if not row.get("subject"):
            raise MimikaError(f"{index}: line {line}: no performer id")
        rows.append({"image": row["image"], "subject": row["subject"], "label": label, "votes": votes / votes.sum()})
    if not rows:
        raise MimikaError(f"{index}: no faces listed")
    return rows, voted


def load_taiwanese(root: str | os.PathLike, spec: CropSpec, crop: str = "detect", detector=None) -> FaceSet:
    """The corpus' faces as crops, with performer ids and vote distributions."""
    root = Path(root)
    if not is_taiwanese_root(root):
        raise MimikaError(f"{root}: not a folder of the Taiwanese corpus (expected {INDEX} with columns "
                          f"{','.join(COLUMNS)},{VOTES}<emotion>...)")
    rows, voted = read_index(root)
    files = [root / row["image"] for row in rows]
    crops, ok, skipped, notes = crop_files(files, spec, crop, "Taiwanese faces", detector)
    if not ok:
        raise MimikaError(f"{root}: none of the {len(files)} faces could be read")
    labels = in_code_order([row["label"] for row in rows] + voted)
    soft = np.zeros((len(ok), len(labels)), np.float32)
    columns = [labels.index(name) for name in voted]
    for j, i in enumerate(ok):
        soft[j, columns] = rows[i]["votes"]
    subjects = [rows[i]["subject"] for i in ok]
    return FaceSet(stack_faces(crops, spec), np.array([labels.index(rows[i]["label"]) for i in ok], np.int64),
                   labels, np.array(subjects, dtype=str), [str(files[i]) for i in ok], skipped, notes,
                   splits=fixed_split(subjects, (row["subject"] for row in rows), **SPLIT), soft=soft)
