"""Class-folder sets (`ROOT/<class>/*.png`) and in-memory arrays: the user's own labelled faces.

A folder of one class only (`contempt_extra/contempt/`) cannot train a model alone; it is a source
to train beside others, and it gets a fixed split (`ONE_CLASS_SPLIT`: 20% of its images in the test
part, 10% in the validation part, identical images together) so that what it does to the other
sources' faces can be checked on faces it never trained on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ...common.errors import MimikaError
from ...common.labels import CKPLUS_EMOTIONS, canonical_label, in_code_order, label_of
from ..crop import CropSpec
from ..images import IMAGE_SUFFIXES, list_images, to_gray
from .faceset import FaceSet, fixed_split
from .prepare import content_digest, crop_files, crop_images, stack_faces

SUBJECT_RE = re.compile(r"^(S\d+)_")  # CK+-style file names carry the subject id
ONE_CLASS_SPLIT = {"val": 0.10, "test": 0.20, "salt": "one-class"}  # shares of the distinct images


def class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def is_one_class_root(path: Path) -> bool:
    """Class folders of which there is exactly one, naming an emotion."""
    if not path.is_dir():
        return False
    dirs = class_dirs(path)
    return len(dirs) == 1 and canonical_label(dirs[0].name) is not None


def load_class_folders(root: str | os.PathLike, spec: CropSpec, crop: str = "whole", detector=None) -> FaceSet:
    """Faces from ROOT/<class>/<image>; class names ("happy", "anger", "5", ...) map to our labels."""
    root = Path(root)
    if not root.is_dir():
        raise MimikaError(f"{root}: no such folder")
    dirs = class_dirs(root)
    if not dirs:
        raise MimikaError(f"{root}: no class folders (expected ROOT/<class>/<image files>)")
    unknown = [d.name for d in dirs if canonical_label(d.name) is None]
    if unknown:
        raise MimikaError(f"{root}: class folder names that map to no emotion: {', '.join(unknown)} "
                          f"(known: {', '.join(CKPLUS_EMOTIONS)}, neutral, synonyms such as happy/angry/sad, "
                          "or CK+ codes 0..7)")
    files, names = [], []
    for d in dirs:
        found = list_images(d)
        for f in sorted(found + _not_regular(d, found)):  # those are read to be skipped, saying why
            files.append(f)
            names.append(canonical_label(d.name))
    if not files:
        raise MimikaError(f"{root}: the class folders hold no images")
    labels = in_code_order(names)
    crops, ok, skipped, notes = crop_files(files, spec, crop, f"reading {root.name}", detector)
    if not ok:
        raise MimikaError(f"{root}: none of the {len(files)} images could be read")
    subjects = [(m.group(1) if (m := SUBJECT_RE.match(files[i].name)) else "") for i in ok]
    return FaceSet(stack_faces(crops, spec), np.array([labels.index(names[i]) for i in ok], np.int64),
                   labels, np.array(subjects, dtype=str), [str(files[i]) for i in ok], skipped, notes)


def _not_regular(class_dir: Path, found: list[Path]) -> list[Path]:
    """Entries named like images, in the folders where `list_images` found files, that it leaves out
    for being no regular file (a FIFO, a device, a broken link): reading them says so, as for CK+."""
    out = []
    for folder in {class_dir, *(f.parent for f in found)}:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        out += [Path(e.path) for e in entries if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
                and not e.is_dir() and not e.is_file()]
    return out


def load_one_class(root: str | os.PathLike, spec: CropSpec, crop: str = "detect", detector=None) -> FaceSet:
    """A one-class folder set (`is_one_class_root`), with its fixed split by image content."""
    data = load_class_folders(root, spec, crop, detector)
    every = list_images(class_dirs(Path(root))[0])
    digest = {str(f): content_digest(f) for f in every}
    data.splits = fixed_split([digest[s] for s in data.sources], digest.values(), **ONE_CLASS_SPLIT)
    return data


def faces_from_arrays(images: np.ndarray, labels, spec: CropSpec, crop: str = "detect") -> FaceSet:
    """A face set from an N x K x H x W array (K = 1 gray or 3 RGB; any H, W) and a label per
    image: CK+ codes (0..7) or emotion names ("happiness", "happy").

    The face in each image is found and resized to the model input (the whole image is used
    where none is detected)."""
    images = np.asarray(images)
    values = np.asarray(labels, dtype=object).reshape(-1)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise MimikaError(f"faces must be an N x K x H x W array with K = 1 or 3, got shape {images.shape}")
    if len(values) != len(images):
        raise MimikaError(f"{len(images)} faces but {len(values)} labels")
    if len(images) == 0:
        raise MimikaError("no faces given")
    names = [label_of(v, f"label {i}") for i, v in enumerate(values)]
    crops, ok, skipped, notes = crop_images(
        ((f"face {i}", lambda img=img, i=i: to_gray(np.moveaxis(img, 0, -1), where=f"face {i}"))
         for i, img in enumerate(images)), spec, crop, desc="faces")
    if skipped:
        raise MimikaError(skipped[0])
    label_list = in_code_order(names)
    return FaceSet(stack_faces(crops, spec), np.array([label_list.index(n) for n in names], np.int64), label_list,
                   np.array([""] * len(names)), [f"array[{i}]" for i in range(len(names))], [], notes)
