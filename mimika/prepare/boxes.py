"""What a face detector returns: boxes, and detections with a score and landmarks."""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[int, int, int, int]  # x, y, width, height in pixels
Point = tuple[float, float]

#: the order of `Detection.landmarks`: the person's own right and left (for a frontal face the
#: right eye is on the image's left), as CenterFace outputs them
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")


@dataclass(frozen=True)
class Detection:
    """One face: its box (x, y, w, h; a square framed like a Haar box), the detector's confidence,
    and the `LANDMARKS` as (x, y) image pixels (None from a detector that gives none: Haar)."""

    box: Box
    score: float
    landmarks: tuple[Point, ...] | None = None


def largest(boxes: list[Box]) -> Box | None:
    """The biggest box: the face of a single-face image such as a dataset frame."""
    return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes: how much two detections are one face."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    inter = max(0, w) * max(0, h)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0

