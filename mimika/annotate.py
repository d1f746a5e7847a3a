"""Annotated copies of images: each face's box and its most likely emotion drawn on it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import MimikaError
from .fileio import atomic_path, write_bytes
from .images import ImageLike, read_color
from .recognition import Face

COLOR = (60, 200, 60)  # BGR


def draw_faces(image: ImageLike, faces: list[Face]) -> np.ndarray:
    """A BGR copy of the image with boxes and "label 0.93" captions."""
    canvas = read_color(image).copy()
    thick = max(1, round(max(canvas.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = face.box
        cv2.rectangle(canvas, (x, y), (x + w, y + h), COLOR, thick)
        text = f"{face.label} {face.score:.2f}"
        scale = max(0.4, w / 220)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = y - 4 if y - th - base - 4 >= 0 else y + h + th + 4
        cv2.rectangle(canvas, (x, ty - th - base), (x + tw + 4, ty + base), COLOR, -1)
        cv2.putText(canvas, text, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return canvas


def write_image(path: str | os.PathLike, bgr: np.ndarray) -> Path:
    """Encode by the file's suffix and write atomically."""
    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".png", bgr)
    if not ok:
        raise MimikaError(f"{path}: cannot encode an image of this type")
    return write_bytes(path, buf.tobytes())


@contextlib.contextmanager
def video_writer(path: str | os.PathLike, fps: float, size: tuple[int, int]) -> Iterator[cv2.VideoWriter]:
    """An annotated-video writer (MPEG-4) whose file appears only once complete."""
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), max(fps, 1.0), size)
        if not writer.isOpened():
            raise MimikaError(f"{path}: cannot write a video here")
        try:
            yield writer
        finally:
            writer.release()
