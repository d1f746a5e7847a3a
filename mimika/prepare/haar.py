"""Input preparation, step 2 (the original method): find faces with OpenCV's Viola-Jones
frontal-face Haar cascade, the XML files OpenCV ships, in named presets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..common.errors import MimikaError
from .boxes import Box, Detection


@lru_cache(maxsize=None)
def _cascade(path: str) -> cv2.CascadeClassifier:
    if not Path(path).is_file():
        raise MimikaError(f"{path}: no such cascade file")
    try:
        cascade = cv2.CascadeClassifier(path)
    except (cv2.error, SystemError):  # OpenCV raises on some malformed XML instead of returning empty
        raise MimikaError(f"{path}: not an OpenCV cascade file") from None
    if cascade.empty():
        raise MimikaError(f"{path}: not an OpenCV cascade file")
    return cascade


def haar_cascade_path(name: str = "haarcascade_frontalface_default.xml") -> str:
    """Path of a cascade XML shipped with opencv-python."""
    return str(Path(cv2.data.haarcascades) / name)


def cascade_file(cascade: str) -> str:
    """A cascade setting as a file path: empty = OpenCV's frontal-face default, a bare file name =
    one of the XML files opencv-python ships, anything else = the user's own file."""
    if not cascade:
        return haar_cascade_path()
    if Path(cascade).parent == Path(".") and not Path(cascade).exists():
        shipped = haar_cascade_path(cascade)
        if not Path(shipped).is_file():
            names = sorted(p.name for p in Path(cv2.data.haarcascades).glob("haarcascade_frontalface*.xml"))
            raise MimikaError(f"{cascade}: no such cascade file, nor one OpenCV ships (its face cascades: "
                              f"{', '.join(names)})")
        return shipped
    return cascade


@dataclass
class HaarDetector:
    """Viola-Jones face detector; the parameters are those of `detectMultiScale`."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 30
    max_size: int | None = None
    cascade: str = ""  # empty: OpenCV's haarcascade_frontalface_default.xml; a bare name: an XML it ships
    downscale: float = 1.0  # detect on the image shrunk by this factor (min_size shrinks with it)
    verify: int = 0  # if > 0: keep a box only if the cascade finds it again, at full resolution
    #                  in the box's neighbourhood and near its size, with this many neighbours
    trust: int = 0  # if > 0: a candidate backed by this many raw detections skips that second look

    def __post_init__(self):
        checks = [(self.scale_factor > 1, f"scale_factor must be > 1, got {self.scale_factor}"),
                  (self.min_neighbors >= 0, f"min_neighbors must be >= 0, got {self.min_neighbors}"),
                  (self.min_size >= 1, f"min_size (smallest face) must be >= 1 pixel, got {self.min_size}"),
                  (self.max_size is None or self.max_size >= self.min_size, "max_size must be >= min_size"),
                  (self.downscale >= 1, f"downscale must be >= 1, got {self.downscale}"),
                  (self.verify >= 0 and self.trust >= 0, "verify and trust must be >= 0")]
        for ok, why in checks:
            if not ok:
                raise MimikaError(f"face detector: {why}")

    def __call__(self, gray: np.ndarray) -> list[Box]:
        """Boxes of all faces found, left to right, in the image's own coordinates."""
        cascade = _cascade(cascade_file(self.cascade))
        f = max(1.0, float(self.downscale))
        img = gray
        if f > 1:
            img = cv2.resize(gray, (max(1, round(gray.shape[1] / f)), max(1, round(gray.shape[0] / f))),
                             interpolation=cv2.INTER_AREA)
        side = lambda v: max(1, round(v / f))
        found, votes = cascade.detectMultiScale2(
            img,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(side(self.min_size), side(self.min_size)),
            maxSize=(side(self.max_size), side(self.max_size)) if self.max_size else (0, 0),
        )
        boxes = [tuple(int(round(v * f)) for v in b) for b in np.asarray(found).reshape(-1, 4)]
        if self.verify:
            trusted = [bool(self.trust) and n >= self.trust for n in np.asarray(votes).reshape(-1)]
            boxes = [b for b, t in zip(boxes, trusted) if t or self._confirmed(cascade, gray, b)]
        return sorted(boxes, key=lambda b: (b[0], b[1]))

    def detect(self, gray: np.ndarray) -> list[Detection]:
        """The faces as `Detection`s (no landmarks: a cascade gives none)."""
        return [Detection(b, 1.0) for b in self(gray)]

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


ALT2 = "haarcascade_frontalface_alt2.xml"

#: Named settings, compared by bench/detection.py (recall, false detections, speed) on
#: ../shared/data/facedet. All frame a face alike (scripts/calibrate_margin.py --detector ...: median
#: box sides within 1% of each other on FER faces), so a model's crop margin suits each of them.
#: "haar": faces from 40 px (smaller faces are read markedly less well: experiments/
#: accuracy_by_face_size.py, quoted in docs/detection.md), OpenCV's alt2 cascade (20 px window) on the image
#: shrunk by 2, a coarse pyramid and a permissive vote, each candidate confirmed by a second look at
#: full resolution unless 8 or more raw detections back it: on faces of 40 px and more it finds as
#: many as the baseline with a tenth of its false detections, about five times faster.
#: "haar-thorough": faces from 30 px (group photos, and the face crops of training sets);
#: "haar-fast": faces from 48 px; "haar-baseline": the thesis' OpenCV defaults.
HAAR_PRESETS: dict[str, HaarDetector] = {
    "haar": HaarDetector(1.3, 1, 40, cascade=ALT2, downscale=2.0, verify=2, trust=8),
    "haar-thorough": HaarDetector(1.2, 2, 30, downscale=1.25, verify=3),
    "haar-fast": HaarDetector(1.25, 1, 48, cascade=ALT2, downscale=2.4, verify=2, trust=8),
    "haar-baseline": HaarDetector(1.1, 5, 30),
}


def check_cascade(detector: HaarDetector) -> HaarDetector:
    """Load the detector's cascade now, so a bad cascade setting fails here, not on every image."""
    _cascade(cascade_file(detector.cascade))
    return detector
