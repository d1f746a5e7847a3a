"""Annotated copies of images and videos: each face's box and its most likely emotion drawn on it.

`Annotator` names the copies after the inputs' paths below the folders they were found in, so
two inputs never write the same file; an image keeps its format where OpenCV can write it
(JPEG in, JPEG out), and videos become MPEG-4.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..common.errors import MimikaError
from ..common.fileio import atomic_path, check_writable_dir, write_bytes
from ..prepare.images import read_color
from .results import Face, ImageResult

COLOR = (60, 200, 60)  # BGR; the service puts it in its page, which draws live boxes in it
LANDMARK_COLOR = (40, 40, 230)
WRITABLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def caption_layout(box, text: str, shape: tuple[int, ...]) -> tuple[tuple[int, int, int, int], float, int]:
    """Where a face's caption goes: its background rectangle (left, top, right, bottom), the font
    scale and the line thickness. Sizes follow the image (readable on any photo); the caption sits
    outside the box, above it or, without room there, below it, never over the box's line."""
    H, W = shape[:2]
    thick = max(1, round(min(H, W) / 300))
    scale = max(0.4, min(H, W) / 900)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, thick // 2))
    pad = max(2, thick)
    x, y, w, h = box
    box_h, box_w = th + base + 2 * pad, tw + 2 * pad
    above = y - thick - box_h
    top = above if above >= 0 else min(y + h + thick + 1, H - box_h)
    left = min(max(0, x - thick // 2), max(0, W - box_w))
    return (left, top, left + box_w, top + box_h), scale, thick


def draw_faces(image, faces: list[Face], color: str = "rgb", landmarks: bool = False) -> np.ndarray:
    """A BGR copy of the image with boxes and "label 0.93" captions (placed by `caption_layout`), and
    each face's landmarks as dots when asked."""
    canvas = read_color(image, color=color).copy()
    for face in faces:
        if landmarks and face.landmarks is not None:
            radius = max(2, round(face.box[2] / 40))
            for x, y in face.landmarks:
                cv2.circle(canvas, (round(x), round(y)), radius, LANDMARK_COLOR, -1, cv2.LINE_AA)
        x, y, w, h = face.box
        text = f"{'' if face.track_id is None else f'#{face.track_id} '}{face.label} {face.score:.2f}"
        (left, top, right, bottom), scale, thick = caption_layout(face.box, text, canvas.shape)
        cv2.rectangle(canvas, (x, y), (x + w, y + h), COLOR, thick)
        cv2.rectangle(canvas, (left, top), (right, bottom), COLOR, -1)
        pad = max(2, thick)
        base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, thick // 2))[1]
        cv2.putText(canvas, text, (left + pad, bottom - pad - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    max(1, thick // 2), cv2.LINE_AA)
    return canvas


def write_image(path: str | os.PathLike, bgr: np.ndarray) -> Path:
    """Encode by the file's suffix and write atomically."""
    path = Path(path)
    try:
        ok, buf = cv2.imencode(path.suffix or ".png", bgr)
    except cv2.error:
        ok = False
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


class Annotator:
    """Writes the annotated copy of each result below `out_dir`, named after its input."""

    def __init__(self, out_dir: str | os.PathLike, every: int = 1, landmarks: bool = False):
        self.out_dir = check_writable_dir(out_dir, "--annotate folder")
        self.every, self.landmarks = every, landmarks
        self.used: set[Path] = set()
        self._video: contextlib.ExitStack | None = None
        self._writer = None

    def target(self, name: Path, video: bool) -> Path:
        """A unique output path mirroring `name` (the input's path below its folder)."""
        suffix = ".mp4" if video else (name.suffix.lower() if name.suffix.lower() in WRITABLE_SUFFIXES else ".png")
        out = self.out_dir / name.with_suffix(suffix)
        k = 2
        while out in self.used:
            out = self.out_dir / name.with_name(f"{name.stem}-{k}{suffix}")
            k += 1
        self.used.add(out)
        return out

    def image(self, source, result: ImageResult) -> ImageResult:
        if result.error is None:
            try:
                write_image(self.target(source.name, False), draw_faces(source.path, result.faces,
                                                                        landmarks=self.landmarks))
            except MimikaError as err:
                result.error = str(err)
        return result

    def frame(self, source, result: ImageResult) -> ImageResult:
        frame, result.image = result.image, None
        if frame is None:
            return result
        canvas = draw_faces(frame, result.faces, color="bgr", landmarks=self.landmarks)
        if self._writer is None:
            from ..prepare.video import video_fps
            self._video = contextlib.ExitStack()
            self._writer = self._video.enter_context(video_writer(
                self.target(source.name, True), video_fps(source.path) / self.every, canvas.shape[1::-1]))
        self._writer.write(canvas)
        return result

    def close_video(self) -> None:
        if self._video is not None:
            video, self._video, self._writer = self._video, None, None
            video.close()
