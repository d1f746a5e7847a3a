"""Preparation shared by the loaders: read each file, cut its one face, bring crops to the
model's input size. Faces of training and evaluation sets are found by one fixed detector
(`DATASET_DETECTOR`), so a dataset's crops, and every figure measured on them, do not move when
the default detector for photos changes."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ...common.errors import MimikaError
from ...common.labels import canonical_label
from ...common.progress import progress
from ..boxes import Box
from ..crop import CropSpec, single_face
from ..detection import DATASET_DETECTOR, PRESETS, HaarDetector
from ..images import load_image
from .faceset import FaceSet

CROP_MODES = ("detect", "whole")


def dataset_detector(detector: HaarDetector | None = None) -> HaarDetector:
    """The detector that crops dataset faces: the one given, else the fixed `DATASET_DETECTOR`."""
    return detector or PRESETS[DATASET_DETECTOR]


def detector_name(detector) -> str:
    """A detector's preset name, or its full settings when it is no preset: what a model records."""
    return next((name for name, preset in PRESETS.items() if preset == detector), repr(detector))


def check_crop_mode(crop: str) -> str:
    if crop not in CROP_MODES:
        raise MimikaError(f"crop must be 'detect' or 'whole', got {crop!r}")
    return crop


def stack_faces(faces: list[np.ndarray], spec: CropSpec) -> np.ndarray:
    if not faces:
        return np.zeros((0, spec.height, spec.width), np.uint8)
    return np.stack(faces).astype(np.uint8)


def resize_set(data: FaceSet, spec: CropSpec, crop: str, detector: HaarDetector | None = None) -> FaceSet:
    """Bring a pre-cropped set to the model's input size (crop "detect" looks for the face first)."""
    check_crop_mode(crop)
    if data.faces.shape[1:] == (spec.height, spec.width) and crop != "detect":
        return data
    if crop == "detect":
        detector = dataset_detector(detector)
        faces = [single_face(f, spec, "detect", detector)[0]
                 for f in progress(data.faces, "finding faces", total=len(data), unit="img")]
    else:
        # a pre-cropped face is already framed: resized as it is (the margin applies to detector boxes)
        interp = cv2.INTER_AREA if data.faces.shape[1] > spec.height else cv2.INTER_LINEAR
        faces = [cv2.resize(f, (spec.width, spec.height), interpolation=interp) for f in data.faces]
    data.faces = stack_faces(faces, spec)
    return data


@dataclass(frozen=True)
class Frame:
    """An image of a set as its face is cut from it: gray for the crop, the colour copy for a
    detector that reads colour (as recognition gives it), and the annotated box of the labelled face
    where the set has one (a crop that may show a neighbour's face too)."""

    gray: np.ndarray
    color: np.ndarray | None = None
    box: Box | None = None


def read_frame(path: Path, color: bool, box: Box | None = None) -> Frame:
    """A set's image file as a `Frame`: full size, upright, with a colour copy if asked."""
    image = load_image(path, max_side=None, keep_color=color)
    return Frame(image.gray, image.color, box)


def crop_images(images, spec: CropSpec, crop: str, detector: HaarDetector | None = None,
                desc: str = "cropping") -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    """Cut the one face of each image. `images` yields (name, loader) pairs, the loader returning
    the uint8 gray image or a `Frame`, or raising MimikaError. Returns crops, the indices of the
    images that gave one, the images skipped (unreadable) with the reason, and a note on faces not
    detected."""
    check_crop_mode(crop)
    detector = dataset_detector(detector)
    crops, ok, skipped, undetected = [], [], [], []
    images = list(images)
    for i, (name, load) in enumerate(progress(images, desc, total=len(images), unit="img")):
        try:
            frame = load()
        except MimikaError as e:
            skipped.append(str(e))
            continue
        frame = frame if isinstance(frame, Frame) else Frame(frame)
        face, found = single_face(frame.gray, spec, crop, detector, frame.color, frame.box)
        if crop == "detect" and not found:
            undetected.append(name)
        crops.append(face)
        ok.append(i)
    notes = []
    if undetected:
        notes.append(f"no face detected in {len(undetected)} of {len(images)} image(s), used whole "
                     "(or, where the set gives one, its annotated box): "
                     + ", ".join(Path(u).name for u in undetected[:5]) + (" ..." if len(undetected) > 5 else ""))
    return crops, ok, skipped, notes


def crop_files(files: list[Path], spec: CropSpec, crop: str, desc: str, detector: HaarDetector | None = None,
               boxes: list[Box] | None = None) -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    """`crop_images` over image files, read in colour for a detector that reads colour; `boxes`: the
    annotated box of each file's labelled face, where the set gives them."""
    color = crop == "detect" and getattr(dataset_detector(detector), "takes_color", False)
    boxes = boxes or [None] * len(files)
    return crop_images(((str(f), lambda f=f, b=b: read_frame(f, color, b)) for f, b in zip(files, boxes)),
                       spec, crop, detector, desc)


def csv_header(index: Path) -> list[str]:
    """The column names of a set's CSV index ([] when it is no readable CSV): what its probe checks."""
    if not index.is_file():
        return []
    try:
        with open(index, newline="", encoding="utf-8-sig") as f:
            return next(csv.reader([f.readline(4096)]), [])
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def csv_rows(index: Path, max_bytes: int) -> Iterator[tuple[int, dict, list[str]]]:
    """(line number, row, column names) of a set's CSV index; a file too large to be one, or one
    that is no CSV, is one MimikaError naming it."""
    if index.stat().st_size > max_bytes:
        raise MimikaError(f"{index}: larger than {max_bytes >> 20} MiB: not the index of this set")
    try:
        with open(index, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            for line, row in enumerate(reader, start=2):
                yield line, row, list(reader.fieldnames or [])
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise MimikaError(f"{index}: {e}") from None


def labelled_rows(index: Path, max_bytes: int) -> Iterator[tuple[int, dict, list[str], str]]:
    """`csv_rows` with each row's `label` column read as an emotion mimika knows (a row naming no
    such emotion is one MimikaError naming the file and line)."""
    for line, row, columns in csv_rows(index, max_bytes):
        label = canonical_label(row.get("label") or "")
        if label is None:
            raise MimikaError(f"{index}: line {line}: unknown label {row.get('label')!r}")
        yield line, row, columns, label


def content_digest(path: Path) -> str:
    """A file's SHA-1 ("" where it cannot be read: it is skipped with the reason when cropped)."""
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return ""
