"""Input preparation, step 2: find every face in a grayscale image.

The baseline is OpenCV's Viola-Jones frontal-face Haar cascade, the XML file OpenCV ships.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .errors import MimikaError

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


@lru_cache(maxsize=None)
def _cascade(path: str) -> cv2.CascadeClassifier:
    if not Path(path).is_file():
        raise MimikaError(f"{path}: no such cascade file")
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise MimikaError(f"{path}: not an OpenCV cascade file")
    return cascade


def haar_cascade_path(name: str = "haarcascade_frontalface_default.xml") -> str:
    """Path of a cascade XML shipped with opencv-python."""
    return str(Path(cv2.data.haarcascades) / name)


@dataclass
class HaarDetector:
    """Viola-Jones face detector; the parameters are those of `detectMultiScale`."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 30
    max_size: int | None = None
    cascade: str = ""  # empty: OpenCV's haarcascade_frontalface_default.xml
    downscale: float = 1.0  # detect on the image shrunk by this factor (min_size shrinks with it)
    verify: int = 0  # if > 0: keep a box only if the cascade finds it again, at full resolution
    #                  in the box's neighbourhood and near its size, with this many neighbours


    def __call__(self, gray: np.ndarray) -> list[Box]:
        """Boxes of all faces found, left to right, in the image's own coordinates."""
        cascade = _cascade(self.cascade or haar_cascade_path())
        f = max(1.0, float(self.downscale))
        img = gray
        if f > 1:
            img = cv2.resize(gray, (max(1, round(gray.shape[1] / f)), max(1, round(gray.shape[0] / f))),
                             interpolation=cv2.INTER_AREA)
        side = lambda v: max(1, round(v / f))
        found = cascade.detectMultiScale(
            img,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side(self.min_size), side(self.min_size)),
            maxSize=(side(self.max_size), side(self.max_size)) if self.max_size else (0, 0),
        )
        boxes = [tuple(int(round(v * f)) for v in b) for b in np.asarray(found).reshape(-1, 4)]
        if self.verify:
            boxes = [b for b in boxes if self._confirmed(cascade, gray, b)]
        return sorted(boxes, key=lambda b: (b[0], b[1]))

    def _confirmed(self, cascade: cv2.CascadeClassifier, gray: np.ndarray, box: Box) -> bool:
        """Second look at a candidate: a cheap search over a few scales around it (a coarse,
        permissive first pass plus this check is faster than a fine pass, for as many faces)."""
        x, y, w, h = box
        pad = w // 4
        x0, y0 = max(0, x - pad), max(0, y - pad)
        roi = gray[y0:y + h + pad, x0:x + w + pad]
        scale = 48 / w if w > 48 else 1.0  # check big faces on a shrunk copy: same answer, less work
        if scale < 1:
            roi = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        side = w * scale
        found = cascade.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=self.verify,
                                         minSize=(int(side * 0.75), int(side * 0.75)),
                                         maxSize=(int(side * 1.35) + 1, int(side * 1.35) + 1))
        return len(found) > 0


#: Named settings, compared by bench/detection.py (recall, false detections, speed) on
#: ../shared/data/facedet. "default": faces from 30 px, found on the image shrunk by 1.25 with a
#: coarser pyramid (step 1.2) and a permissive vote, each candidate then confirmed by a second look
#: at full resolution: more faces than the baseline, a third of its false detections, in about
#: half the time. "fast": faces from 48 px (portraits, webcam frames) on the image shrunk by 2,
#: several times faster than the baseline, with a few of the faces it finds lost (see the bench).
PRESETS: dict[str, HaarDetector] = {
    "baseline": HaarDetector(1.1, 5, 30),
    "default": HaarDetector(1.2, 2, 30, downscale=1.25, verify=3),
    "fast": HaarDetector(1.3, 2, 48, downscale=2.0, verify=3),
}


def get_detector(name: str = "default", **overrides) -> HaarDetector:
    """A preset by name, with any parameter overridden (None values are ignored)."""
    from dataclasses import replace
    if name not in PRESETS:
        raise MimikaError(f"unknown detector {name!r}; presets: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


def detect_faces(gray: np.ndarray, detector: HaarDetector | None = None) -> list[Box]:
    """All face boxes (x, y, w, h) in a uint8 grayscale image."""
    return (detector or PRESETS["default"])(gray)


def largest(boxes: list[Box]) -> Box | None:
    """The biggest box: the face of a single-face image such as a dataset frame."""
    return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None
