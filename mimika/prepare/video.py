"""Video input: frames read with OpenCV, made grayscale for detection.

Only regular files are opened: OpenCV's VideoCapture blocks forever on a FIFO and reads devices,
so the file type is checked with stat() first, as for images (`images.check_regular_file`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..common.errors import MimikaError
from .images import check_regular_file, list_files

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files below `folder`, sorted; the walk skips FIFOs and devices and always ends."""
    return list_files(folder, VIDEO_SUFFIXES)


def open_video(path: str | os.PathLike) -> cv2.VideoCapture:
    p = Path(path)
    check_regular_file(p, "video")
    try:
        cap = cv2.VideoCapture(str(p))
    except cv2.error as e:
        raise MimikaError(f"{p}: not a readable video (OpenCV: {' '.join(str(e).split())[:200]})") from None
    if not cap.isOpened():
        raise MimikaError(f"{p}: not a readable video (corrupt or unsupported format)")
    return cap


def read_frames(path: str | os.PathLike, every: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time in seconds, 8-bit BGR or gray frame) of every `every`-th frame."""
    if every < 1:
        raise MimikaError(f"--every must be at least 1, got {every}")
    cap = open_video(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    index, got_any = 0, False
    try:
        while True:
            ok = cap.grab()
            if not ok:
                break
            if index % every == 0:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    break
                got_any = True
                yield index, (index / fps if fps > 0 else 0.0), frame
            index += 1
    finally:
        cap.release()
    if not got_any:
        raise MimikaError(f"{path}: no frames could be read")


def video_fps(path: str | os.PathLike) -> float:
    cap = open_video(path)
    try:
        return cap.get(cv2.CAP_PROP_FPS) or 25.0
    finally:
        cap.release()
