"""Input preparation, step 3: cut a face out of the image and bring it to the model's input size.

Training and recognition use this same function with the settings stored in the model file,
so a model sees the same kind of crop on a whole photo as it saw in training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .detection import Box, largest


@dataclass(frozen=True)
class CropSpec:
    """How a face box becomes a model input: output size and margin around the box."""

    width: int = 96
    height: int = 96
    margin: float = 0.0  # fraction of the box side added on each side

    def to_dict(self) -> dict:
        return asdict(self)


def crop_face(gray: np.ndarray, box: Box, spec: CropSpec) -> np.ndarray:
    """The face in `box`, widened by the margin, resized to spec's size (edges replicated)."""
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


def whole_image_box(gray: np.ndarray) -> Box:
    return (0, 0, int(gray.shape[1]), int(gray.shape[0]))


def single_face(gray: np.ndarray, spec: CropSpec, crop: str, detector=None) -> tuple[np.ndarray, bool]:
    """The one face of an image known to hold one (a dataset frame, a user's face photo).

    crop="whole" uses the whole image as the face; crop="detect" uses the largest detected face
    and falls back to the whole image when none is found. Returns the crop and whether a face
    was detected.
    """
    box = largest(detector(gray)) if crop == "detect" else None
    return crop_face(gray, box or whole_image_box(gray), spec), box is not None
