"""A labelled set of face crops, and the subject-wise splits that keep a person out of both sides."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..crop import CropSpec
from ..errors import MimikaError


@dataclass
class FaceSet:
    """Face crops (N x H x W uint8) with class indices into `labels` and a subject id per face."""

    faces: np.ndarray
    y: np.ndarray
    labels: list[str]
    subjects: np.ndarray
    sources: list[str]
    skipped: list[str] = field(default_factory=list)  # "file: why", for the report
    notes: list[str] = field(default_factory=list)
    splits: np.ndarray | None = None  # per face: the dataset's own split name (FER2013 Usage)
    soft: np.ndarray | None = None  # N x len(labels) target distributions (FER+ votes)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> "FaceSet":
        idx = np.asarray(idx, dtype=np.int64)
        return FaceSet(self.faces[idx], self.y[idx], list(self.labels), self.subjects[idx],
                       [self.sources[i] for i in idx], list(self.skipped), list(self.notes),
                       None if self.splits is None else self.splits[idx],
                       None if self.soft is None else self.soft[idx])

    def split(self, name: str) -> "FaceSet":
        """The faces of one of the dataset's own splits (FER2013: Training, PublicTest, PrivateTest)."""
        if self.splits is None:
            raise MimikaError(f"this dataset has no predefined splits (asked for {name!r})")
        from .fer2013 import split_name
        return self.subset(np.flatnonzero(self.splits == split_name(name)))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=len(self.labels))
        return {name: int(c) for name, c in zip(self.labels, counts)}

    def relabel(self, labels: list[str]) -> "FaceSet":
        """The same faces with class indices into another label list (a model's)."""
        if list(labels) == self.labels:
            return self
        present = {self.labels[i] for i in np.unique(self.y)}
        missing = sorted(present - set(labels))
        if missing:
            raise MimikaError(f"the data has classes the model does not know: {', '.join(missing)} "
                              f"(model labels: {', '.join(labels)})")
        lut = np.array([labels.index(n) if n in labels else -1 for n in self.labels])
        out = self.subset(np.arange(len(self)))
        out.y, out.labels = lut[self.y], list(labels)
        if self.soft is not None:
            out.soft = np.zeros((len(self), len(labels)), np.float32)
            for j, name in enumerate(self.labels):
                if name in labels:
                    out.soft[:, labels.index(name)] = self.soft[:, j]
        return out

    def split_by_subject(self, val_fraction: float, seed: int = 0) -> tuple["FaceSet", "FaceSet"]:
        """Train / validation sets with no subject in both: a fraction of the subjects is held out."""
        val = held_out_subjects(self.subjects, val_fraction, seed)
        is_val = np.isin(self.subjects, val)
        return self.subset(np.flatnonzero(~is_val)), self.subset(np.flatnonzero(is_val))

    def with_subjects(self, subjects: list[str], keep: bool = True) -> "FaceSet":
        mask = np.isin(self.subjects, np.asarray(subjects, dtype=str))
        return self.subset(np.flatnonzero(mask if keep else ~mask))


def held_out_subjects(subjects: np.ndarray, fraction: float, seed: int = 0) -> list[str]:
    """A reproducible random choice of ceil(fraction * #subjects) subject ids."""
    if not 0 < fraction < 1:
        raise MimikaError(f"validation fraction must be between 0 and 1, got {fraction}")
    uniq = np.unique(subjects)
    if len(uniq) < 2 or (len(uniq) == 1 and uniq[0] == ""):
        raise MimikaError("cannot split by subject: the data has fewer than two subject ids")
    order = np.random.default_rng(seed).permutation(len(uniq))
    k = max(1, math.ceil(fraction * len(uniq)))
    return sorted(str(s) for s in uniq[order[:k]])


def stack_faces(faces: list[np.ndarray], spec: CropSpec) -> np.ndarray:
    if not faces:
        return np.zeros((0, spec.height, spec.width), np.uint8)
    return np.stack(faces).astype(np.uint8)


def load_dataset(path: str | os.PathLike, spec: CropSpec, crop: str = "auto",
                 labeldir: str | os.PathLike | None = None, detector=None, use_cache: bool = True,
                 log=None) -> FaceSet:
    """Load any supported layout, prepared for a model's crop `spec`:

    - `fer2013.csv` / `.csv.gz` (FER2013 labels), `fer2013new.csv` (FER+ labels on the pixels
      of the fer2013.csv beside it); faces are pre-cropped 48x48 and only resized;
    - the CK+ release layout (image and Emotion trees);
    - class folders ROOT/<class>/<images>.

    crop: "detect" finds the face in each image, "whole" takes the image as the face, "auto"
    detects on CK+ and takes pre-cropped sets whole. Prepared faces are cached on disk.
    """
    from ..detection import DATASET_DETECTOR, PRESETS
    from .cache import cached, files_signature
    from .ckplus import is_ckplus_root, load_ckplus
    from .fer2013 import is_ferplus_csv, load_fer2013, load_ferplus
    from .folders import load_class_folders

    p = Path(path)
    if not p.exists():
        raise MimikaError(f"{p}: no such file or folder")
    detector = detector or PRESETS[DATASET_DETECTOR]
    if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz")):
        ferplus = is_ferplus_csv(p)
        files = [p] + ([_fer_pixels(p)] if ferplus else [])

        def build():
            raw = load_ferplus(p) if ferplus else load_fer2013(p)
            return resize_set(raw, spec, crop, detector)
        kind = "ferplus" if ferplus else "fer2013"
    elif labeldir is not None or is_ckplus_root(p):
        mode = "detect" if crop == "auto" else crop
        root = p if labeldir is None else p.parent
        files = [f for f in Path(root).rglob("*") if f.is_file()] + (
            [f for f in Path(labeldir).rglob("*") if f.is_file()] if labeldir else [])

        def build():
            return load_ckplus(p, labeldir, spec, crop=mode, detector=detector)
        kind = "ckplus"
        crop = mode
    elif p.is_dir():
        mode = "whole" if crop == "auto" else crop
        files = [f for f in p.rglob("*") if f.is_file()]

        def build():
            return load_class_folders(p, spec, crop=mode, detector=detector)
        kind = "folders"
        crop = mode
    else:
        raise MimikaError(f"{p}: not a dataset this version reads (fer2013.csv, fer2013new.csv, "
                          "a CK+ folder or class folders)")
    if not use_cache:
        return build()
    key = {"kind": kind, "path": str(p.resolve()), "labeldir": str(labeldir), "files": files_signature(files),
           "spec": spec.to_dict(), "crop": crop, "detector": repr(detector)}
    return cached(key, build, log)


def _fer_pixels(p: Path) -> Path:
    from .fer2013 import fer_pixels_beside
    return fer_pixels_beside(p)


def resize_set(data: FaceSet, spec: CropSpec, crop: str, detector) -> FaceSet:
    """Bring a pre-cropped set to the model's input size (crop "detect" looks for the face first)."""
    import cv2

    from ..crop import single_face
    from ..progress import progress
    if data.faces.shape[1:] == (spec.height, spec.width) and crop != "detect":
        return data
    if crop == "detect":
        faces = [single_face(f, spec, "detect", detector)[0]
                 for f in progress(data.faces, "finding faces", total=len(data), unit="img")]
    else:
        # a pre-cropped face is already framed: resized as it is (the margin applies to detector boxes)
        interp = cv2.INTER_AREA if data.faces.shape[1] > spec.height else cv2.INTER_LINEAR
        faces = [cv2.resize(f, (spec.width, spec.height), interpolation=interp) for f in data.faces]
    data.faces = stack_faces(faces, spec)
    return data


def crop_files(files: list[Path], spec: CropSpec, crop: str, desc: str, detector=None
               ) -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    """Read each file and cut its one face. Returns crops, the indices of files that gave one,
    the files skipped (unreadable) with the reason, and a note on faces not detected."""
    from ..crop import single_face
    from ..detection import DATASET_DETECTOR, PRESETS
    from ..images import load_gray
    from ..progress import progress

    if crop not in ("detect", "whole"):
        raise MimikaError(f"crop must be 'detect' or 'whole', got {crop!r}")
    detector = detector or PRESETS[DATASET_DETECTOR]
    crops, ok, skipped, undetected = [], [], [], []
    for i, f in enumerate(progress(files, desc, total=len(files), unit="img")):
        try:
            gray = load_gray(f)
        except MimikaError as e:
            skipped.append(str(e))
            continue
        face, found = single_face(gray, spec, crop, detector)
        if crop == "detect" and not found:
            undetected.append(str(f))
        crops.append(face)
        ok.append(i)
    notes = []
    if undetected:
        notes.append(f"no face detected in {len(undetected)} image(s), used whole: "
                     + ", ".join(Path(u).name for u in undetected[:5]) + (" ..." if len(undetected) > 5 else ""))
    return crops, ok, skipped, notes
