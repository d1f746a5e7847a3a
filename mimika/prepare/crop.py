"""Input preparation, step 3: cut a face out of the image and bring it to the model's input size.

Training and recognition use this same function with the settings stored in the model file,
so a model sees the same kind of crop on a whole photo as it saw in training. Two ways:
- a box crop: the detector's box (framed like a Haar box) widened by the model's margin;
- an aligned crop, when the detector gives landmarks and the model allows it (`CropSpec.align`):
  the face rotated so its eyes are level and scaled so its eyes, nose and mouth fall where they
  fall in a FER2013 training crop (`ALIGN_TEMPLATE`, measured by scripts/calibrate_margin.py), so a
  tilted face reaches the model as an upright one, framed as the models' training faces are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .boxes import Box, iou

#: how much a detection must overlap an annotated box (intersection over union) to be that face
MATCH_IOU = 0.3

#: where the landmarks (right eye, left eye, nose tip, right and left mouth corner) of an upright
#: face sit in a FER2013 crop, as fractions of its side: the median over 1,219 Training faces found
#: by the CNN detector, made left-right symmetric with level eyes (`python scripts/calibrate_margin.py
#: ../shared/data/fer2013/fer2013.csv.gz --detector cnn`)
ALIGN_TEMPLATE = np.array([(0.3123, 0.3954), (0.6877, 0.3954), (0.5000, 0.5933), (0.3531, 0.7596),
                           (0.6469, 0.7596)])


@dataclass(frozen=True)
class CropSpec:
    """How a face box becomes a model input: output size and margin around the box."""

    width: int = 96
    height: int = 96
    margin: float = 0.0  # fraction of the box side added on each side
    align: bool = True  # use the detector's landmarks, when it gives them, for an aligned crop

    def to_dict(self) -> dict:
        return asdict(self)


def crop_face(gray: np.ndarray, box: Box, spec: CropSpec, landmarks=None) -> np.ndarray:
    """The face in `box`, widened by the margin, resized to spec's size (edges replicated); aligned
    by its `landmarks` instead when they are given and `spec.align` allows it."""
    if landmarks is not None and spec.align:
        return aligned_crop(gray, landmarks, spec)
    x, y, w, h = box
    mx, my = spec.margin * w, spec.margin * h
    x0, y0 = int(round(x - mx)), int(round(y - my))
    x1, y1 = int(round(x + w + mx)), int(round(y + h + my))
    H, W = gray.shape[:2]
    roi = gray[max(y0, 0):min(y1, H), max(x0, 0):min(x1, W)]
    pads = (max(0, -y0), max(0, y1 - H), max(0, -x0), max(0, x1 - W))
    if any(pads):
        roi = cv2.copyMakeBorder(roi, *pads, cv2.BORDER_REPLICATE)
    shrink = roi.shape[0] > spec.height or roi.shape[1] > spec.width
    return cv2.resize(roi, (spec.width, spec.height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def aligned_crop(gray: np.ndarray, landmarks, spec: CropSpec) -> np.ndarray:
    """The face warped so that its eyes are level and its five landmarks fall, as closely as a
    rotation, a scale and a shift allow, on `ALIGN_TEMPLATE` (widened by the margin)."""
    W, H = spec.width, spec.height
    src = np.asarray(landmarks, np.float64).reshape(5, 2)
    dst = ((ALIGN_TEMPLATE - 0.5) / (1 + 2 * spec.margin) + 0.5) * [W, H]
    M = eye_level_similarity(src, dst)
    per_pixel = 1 / max(np.hypot(M[0, 0], M[1, 0]), 1e-6)  # image pixels per output pixel
    k = int(min(max(round(per_pixel), 1), 4))  # shrinking a lot: warp larger, then average pixels down
    big = cv2.warpAffine(gray, M * [[k], [k]], (W * k, H * k), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return big if k == 1 else cv2.resize(big, (W, H), interpolation=cv2.INTER_AREA)


def eye_level_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 map of a rotation that levels the eyes (src[0], src[1]; dst's eyes are level),
    then the scale and shift that bring all the points closest to `dst` (least squares)."""
    (rx, ry), (lx, ly) = src[0], src[1]
    a = -np.arctan2(ly - ry, lx - rx)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    p = src @ R.T
    pc, dc = p - p.mean(0), dst - dst.mean(0)
    scale = float((pc * dc).sum() / max((pc ** 2).sum(), 1e-12))
    shift = dst.mean(0) - scale * p.mean(0)
    return np.hstack([scale * R, shift[:, None]])


def whole_image_box(gray: np.ndarray) -> Box:
    return (0, 0, int(gray.shape[1]), int(gray.shape[0]))


def single_face(gray: np.ndarray, spec: CropSpec, crop: str, detector=None, color: np.ndarray | None = None,
                near: Box | None = None) -> tuple[np.ndarray, bool]:
    """The one face of an image known to hold one (a dataset frame, a user's face photo).

    crop="whole" uses the whole image as the face; crop="detect" uses the largest face `detector`
    finds (aligned by its landmarks when it gives them) and falls back to the whole image when none
    is found. A detector that reads colour (`takes_color`) is given `color` (BGR, as `gray`) where
    there is one, as recognition does. `near`: the annotated box of the labelled face in an image
    that may show others (a crop of a crowd): the detection that overlaps it most is taken (at
    least `MATCH_IOU`), and the box itself, widened by the margin, where none does. Returns the crop
    and whether a face was detected.
    """
    if crop != "detect":
        return crop_face(gray, whole_image_box(gray), spec), False
    image = color if color is not None and getattr(detector, "takes_color", False) else gray
    found = detector.detect(image)
    if near is not None:
        found = [d for d in found if iou(d.box, near) >= MATCH_IOU]
        if not found:
            return crop_face(gray, near, spec), False
        face = max(found, key=lambda d: iou(d.box, near))
        return crop_face(gray, face.box, spec, face.landmarks), True
    if not found:
        return crop_face(gray, whole_image_box(gray), spec), False
    face = max(found, key=lambda d: d.box[2] * d.box[3])
    return crop_face(gray, face.box, spec, face.landmarks), True
