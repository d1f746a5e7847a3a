"""ExpW (Expression in-the-Wild; Zhang, Luo, Loy and Tang 2016): web photos, one crop per labelled face.

    ROOT/faces.csv          image,source_image,face_id,label,left,top,width,height[,confidence]
    ROOT/<class>/<photo>_f<face id>.jpg

Each crop is the annotated face box enlarged to a square with margin, so it may show part of a
neighbour's face: the face is found by the detector as in a user's photo (aligned crop) and the
detection that overlaps the annotated box is taken (`crop.single_face(near=...)`); where none does,
the annotated box itself is cropped. The detector rather than the box alone, so that training and
test faces are framed as `mimika predict` frames a photo's faces; the box, so that the labelled face
and not its neighbour is the one read.

Fixed split (`SPLIT`): by source photo (faces of one photo, and identical crops, stay together;
there are no subject ids), 20% of the photos in the test part and 10% in the validation part.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ...common.errors import MimikaError
from ...common.labels import in_code_order
from ..crop import CropSpec
from .faceset import FaceSet, fixed_split
from .prepare import content_digest, crop_files, csv_header, labelled_rows, stack_faces

INDEX = "faces.csv"
COLUMNS = ("image", "source_image", "face_id", "label", "left", "top", "width", "height")
SPLIT = {"val": 0.10, "test": 0.20, "salt": "expw"}  # shares of the source photos
MAX_INDEX_BYTES = 64 << 20  # ExpW's 91,793 faces would be about 7 MB


def is_expw_root(path: Path) -> bool:
    """A folder with an ExpW `faces.csv` (its header names the annotated box)."""
    return tuple(csv_header(path / INDEX)[:len(COLUMNS)]) == COLUMNS


def read_index(root: Path) -> list[dict]:
    """The rows of `faces.csv`, each checked: a label mimika knows, a box of whole pixels."""
    index = root / INDEX
    rows = []
    for line, row, _, label in labelled_rows(index, MAX_INDEX_BYTES):
        try:
            box = tuple(int(row[k]) for k in ("left", "top", "width", "height"))
        except (TypeError, ValueError):
            raise MimikaError(f"{index}: line {line}: the box must be four whole numbers") from None
        if box[2] <= 0 or box[3] <= 0:
            raise MimikaError(f"{index}: line {line}: the box has no area")
        rows.append({"image": row["image"], "photo": row["source_image"], "label": label, "box": box})
    if not rows:
        raise MimikaError(f"{index}: no faces listed")
    return rows


def photo_groups(root: Path, rows: list[dict]) -> list[str]:
    """Each face's split group: its source photo, shared with any face whose crop is byte-identical
    (the same face found in two photos), so no copy is on two sides."""
    first: dict[str, str] = {}
    groups = []
    for row in rows:
        digest = content_digest(root / row["image"]) or row["image"]  # unreadable: skipped later, with the reason
        groups.append(first.setdefault(digest, row["photo"]))
    return groups


def load_expw(root: str | os.PathLike, spec: CropSpec, crop: str = "detect", detector=None) -> FaceSet:
    """ExpW's labelled faces as crops (see the module's docstring for how the face is found)."""
    root = Path(root)
    if not is_expw_root(root):
        raise MimikaError(f"{root}: not an ExpW folder (expected {INDEX} with columns {','.join(COLUMNS)})")
    rows = read_index(root)
    groups = photo_groups(root, rows)
    files = [root / row["image"] for row in rows]
    crops, ok, skipped, notes = crop_files(files, spec, crop, "ExpW faces", detector,
                                           boxes=[row["box"] for row in rows])
    if not ok:
        raise MimikaError(f"{root}: none of the {len(files)} faces could be read")
    labels = in_code_order(row["label"] for row in rows)
    return FaceSet(stack_faces(crops, spec), np.array([labels.index(rows[i]["label"]) for i in ok], np.int64),
                   labels, np.full(len(ok), "", dtype=str), [str(files[i]) for i in ok], skipped, notes,
                   splits=fixed_split([groups[i] for i in ok], groups, **SPLIT))
