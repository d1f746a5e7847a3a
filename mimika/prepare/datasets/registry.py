"""`load_dataset`: which layout a path holds, and the loader for it.

The layouts are a table of (name, probe, loader, default crop): a new layout is one entry.
Loaders are called as `loader(path, spec, crop, detector, labeldir)`; prepared faces are cached
on disk, keyed by the files and the preparation settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ...common.errors import MimikaError
from ..crop import CropSpec
from ..detection import loaded
from .cache import cached, files_signature
from .ckplus import is_ckplus_root, load_ckplus
from .expw import is_expw_root, load_expw
from .faceset import FaceSet
from .fer2013 import fer_pixels_beside, is_fer_csv, is_ferplus_csv, load_fer2013, load_ferplus
from .folders import is_one_class_root, load_class_folders, load_one_class
from .prepare import dataset_detector, detector_name, resize_set
from .taiwanese import is_taiwanese_root, load_taiwanese


@dataclass(frozen=True)
class Layout:
    name: str
    probe: Callable[[Path, Path | None], bool]  # (path, labeldir) -> whether this layout reads it
    load: Callable[..., FaceSet]  # (path, spec, crop, detector, labeldir) -> faces
    default_crop: str  # what crop="auto" means: "whole" for pre-cropped faces, "detect" for frames
    files: Callable[[Path, Path | None], list[Path]]  # the files whose change invalidates the cache
    description: str


def _tree(*roots: Path | None) -> list[Path]:
    return [f for r in roots if r is not None for f in Path(r).rglob("*") if f.is_file()]


LAYOUTS: list[Layout] = [
    Layout("ferplus", lambda p, _: is_fer_csv(p) and is_ferplus_csv(p),
           lambda p, spec, crop, det, _: resize_set(load_ferplus(p), spec, crop, det), "whole",
           lambda p, _: [p, fer_pixels_beside(p)], "fer2013new.csv (FER+ votes on the pixels of fer2013.csv beside it)"),
    Layout("fer2013", lambda p, _: is_fer_csv(p),
           lambda p, spec, crop, det, _: resize_set(load_fer2013(p), spec, crop, det), "whole",
           lambda p, _: [p], "fer2013.csv or .csv.gz"),
    Layout("ckplus", lambda p, labeldir: labeldir is not None or is_ckplus_root(p),
           lambda p, spec, crop, det, labeldir, with_neutral=False: load_ckplus(
               p, labeldir, spec, crop=crop, detector=det, with_neutral=with_neutral), "detect",
           lambda p, labeldir: _tree(p if labeldir is None else p.parent, labeldir),
           "a CK+ folder (cohn-kanade-images/ and Emotion/), or --data IMAGES --labels EMOTION"),
    Layout("expw", lambda p, _: is_expw_root(p),
           lambda p, spec, crop, det, _: load_expw(p, spec, crop, det), "detect",
           lambda p, _: _tree(p), "an ExpW folder (faces.csv with each face's box, <class>/ crops)"),
    Layout("taiwanese", lambda p, _: is_taiwanese_root(p),
           lambda p, spec, crop, det, _: load_taiwanese(p, spec, crop, det), "detect",
           lambda p, _: _tree(p), "a Taiwanese corpus folder (labels.csv with performers and votes, <class>/ photos)"),
    Layout("one-class", lambda p, _: is_one_class_root(p),
           lambda p, spec, crop, det, _: load_one_class(p, spec, crop, det), "detect",
           lambda p, _: _tree(p), "a folder of one class folder (ROOT/contempt/...: trained beside other sets)"),
    Layout("folders", lambda p, _: p.is_dir(),
           lambda p, spec, crop, det, _: load_class_folders(p, spec, crop=crop, detector=det), "whole",
           lambda p, _: _tree(p), "class folders ROOT/<class>/<images>"),
]


def find_layout(path: Path, labeldir: Path | None = None) -> Layout:
    """The layout of the set at `path`, or one line: no such file, or not a set this version reads."""
    if not path.exists():
        raise MimikaError(f"{path}: no such file or folder")
    for layout in LAYOUTS:
        if layout.probe(path, labeldir):
            return layout
    raise MimikaError(f"{path}: not a dataset this version reads ("
                      + "; ".join(layout.description for layout in LAYOUTS) + ")")


def load_dataset(path: str | os.PathLike, spec: CropSpec, crop: str = "auto",
                 labeldir: str | os.PathLike | None = None, detector=None, use_cache: bool = True,
                 log: Callable[[str], None] | None = None, with_neutral: bool = False) -> FaceSet:
    """Load any supported layout (`LAYOUTS`), prepared for a model's crop `spec`.

    crop: "detect" finds the face in each image, "whole" takes the image as the face, "auto" is the
    layout's default (detect on CK+ frames and the photos of ExpW and the Taiwanese corpus, whole for
    pre-cropped sets). `with_neutral` (CK+ only) adds each sequence's first frame as neutral. Every
    face carries the set's name (`FaceSet.origins`). Prepared faces are cached.
    """
    p = Path(path)
    labels = Path(labeldir) if labeldir is not None else None
    layout = find_layout(p, labels)
    mode = layout.default_crop if crop == "auto" else crop
    detector = dataset_detector(detector)

    def build() -> FaceSet:
        # loaded only to detect: faces taken whole need no detector (nor OpenCV 5, which ships no cascades)
        used = loaded(detector) if mode == "detect" else detector
        data = layout.load(p, spec, mode, used, labels, **({"with_neutral": True} if with_neutral else {}))
        data.detector = detector_name(detector) if mode == "detect" else ""
        return data

    def named(data: FaceSet) -> FaceSet:
        data.origins = np.full(len(data), origin_name(p, layout), dtype="<U32")
        return data
    if not use_cache:
        return named(build())
    if with_neutral and layout.name != "ckplus":
        raise MimikaError(f"{p}: neutral first frames are a CK+ option; this is a {layout.name} set")
    key = {"kind": layout.name, "path": str(p.resolve()), "labeldir": str(labeldir), "with_neutral": with_neutral,
           "files": files_signature(layout.files(p, labels)), "spec": spec.to_dict(), "crop": mode,
           "detector": repr(detector)}
    return named(cached(key, build, log))


def origin_name(path: Path, layout: Layout) -> str:
    """The name a set's faces carry in a joint set: its layout's ("ferplus", "expw", "ckplus"), or
    for class folders the folder's own ("contempt_extra")."""
    return path.resolve().name if layout.name in ("one-class", "folders") else layout.name
