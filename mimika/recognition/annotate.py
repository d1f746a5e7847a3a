"""Annotated copies of images and videos: each face's box and its most likely emotion drawn on it.

`plan_copies` names the copies of a run's inputs once, before any work (and before the work is
split between worker processes): each after its input's path below the folder it was found in,
normalised into the --annotate folder, so two inputs never write the same file, no copy lands
outside the folder (`..`, an absolute name, a symbolic link) and none overwrites an input. An
image keeps its format where OpenCV can write it (JPEG in, JPEG out); videos become MPEG-4, put in
place only once every frame is in (`VideoCopy`).
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..common.errors import MimikaError
from ..common.fileio import PendingFile, check_writable_dir, write_bytes
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


@dataclasses.dataclass(frozen=True)
class Copies:
    """Where the annotated copy of each input of a run goes (`targets`, in input order, as
    `plan_copies` named them); `part` gives a worker the targets of its task."""

    targets: tuple[Path, ...]

    def part(self, start: int, stop: int) -> Copies:
        return dataclasses.replace(self, targets=self.targets[start:stop])


def _name_below(name: Path) -> Path:
    """An input's name as a relative path with no "." or "..": what the copy is called below the folder."""
    parts = [p for p in posixpath.normpath(name.as_posix()).split("/") if p not in ("", ".", "..")]
    return Path(*parts) if parts else Path("image")


def plan_copies(sources: Sequence, folder: str | os.PathLike) -> Copies:
    """Name the copies of `sources` (`recognizer.Source`s) below `folder`: unique (a second `a.png`,
    or an `a.gif` beside it, becomes `a-2.png`), and refused in one line, before any work, where a
    copy would overwrite an input or leave the folder through a symbolic link."""
    folder = check_writable_dir(folder, "--annotate folder")
    root = folder.resolve()
    inputs = {Path(s.path).resolve(): s.path for s in sources if s.path != "-"}
    used: set[Path] = set()
    targets = []
    for source in sources:
        name = _name_below(source.name)
        suffix = ".mp4" if source.video else (name.suffix.lower() if name.suffix.lower() in WRITABLE_SUFFIXES
                                              else ".png")
        out, k = folder / name.with_suffix(suffix), 2
        while (real := out.resolve()) in used:
            out, k = folder / name.with_name(f"{name.stem}-{k}{suffix}"), k + 1
        if not real.is_relative_to(root):
            raise MimikaError(f"{folder}: the annotated copy of {source.path} would be written to {real}, outside "
                              f"{folder} (through a symbolic link); choose another --annotate folder")
        if real in inputs:
            raise MimikaError(f"{folder}: the annotated copy of {source.path} would overwrite the input "
                              f"{inputs[real]}; choose an --annotate folder apart from the inputs")
        used.add(real)
        targets.append(out)
    return Copies(tuple(targets))


def annotate_image(path: str, target: Path, result: ImageResult, landmarks: bool = False) -> ImageResult:
    """Write the annotated copy of an image read from `path`; a failed write becomes the result's error."""
    if result.error is None:
        try:
            write_image(target, draw_faces(path, result.faces, landmarks=landmarks))
        except MimikaError as err:
            result.error = str(err)
    return result


class VideoCopy:
    """The annotated copy of a video, written frame by frame (`add`) into a temporary file that
    `commit` puts in place once every frame is in; a run stopped part-way `discard`s it, so no
    video appears as if complete."""

    def __init__(self, path: str, target: Path, every: int = 1, landmarks: bool = False):
        self.path, self.target, self.every, self.landmarks = path, target, every, landmarks
        self._file: PendingFile | None = None
        self._writer: cv2.VideoWriter | None = None

    def add(self, result: ImageResult) -> ImageResult:
        frame, result.image = result.image, None
        if frame is None:
            return result
        canvas = draw_faces(frame, result.faces, color="bgr", landmarks=self.landmarks)
        if self._writer is None:
            from ..prepare.video import video_fps
            fps = video_fps(self.path) / self.every
            self._file = PendingFile(self.target)
            self._writer = cv2.VideoWriter(str(self._file.tmp), cv2.VideoWriter_fourcc(*"mp4v"), max(fps, 1.0),
                                           canvas.shape[1::-1])
            if not self._writer.isOpened():
                self.discard()
                raise MimikaError(f"{self.target}: cannot write a video here")
        self._writer.write(canvas)
        return result

    def commit(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer, file, self._file = None, self._file, None
            file.commit()

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.release()
        if self._file is not None:
            self._file.discard()
        self._writer = self._file = None
