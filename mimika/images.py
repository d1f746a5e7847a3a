"""Input preparation, step 1: read an image (file or array) and make it 8-bit grayscale."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import MimikaError

ImageLike = Union[str, os.PathLike, np.ndarray]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file as it is stored (any depth, 1/3/4 channels, BGR order)."""
    p = Path(path)
    if not p.exists():
        raise MimikaError(f"{p}: no such file")
    if p.is_dir():
        raise MimikaError(f"{p}: is a folder, not an image")
    try:
        data = np.fromfile(p, dtype=np.uint8)  # np.fromfile + imdecode copes with non-ASCII paths
    except OSError as e:
        raise MimikaError(f"{p}: cannot read ({e.strerror or e})") from None
    if data.size == 0:
        raise MimikaError(f"{p}: empty file")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise MimikaError(f"{p}: not a readable image (corrupt or unsupported format)")
    return img


def to_gray(image: np.ndarray, order: str = "rgb", where: str = "image") -> np.ndarray:
    """Convert gray/RGB(A)/BGR(A) arrays of any integer or float depth to uint8 grayscale.

    `order` says how 3- or 4-channel arrays are laid out: "rgb" for arrays from the user
    (PIL, scikit-image, matplotlib), "bgr" for what OpenCV decodes.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or img.size == 0 or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise MimikaError(f"{where}: expected an H x W, H x W x 3 or H x W x 4 image, got shape {img.shape}")
    img = _to_uint8(img, where)
    if img.ndim == 3:
        code = {
            ("rgb", 3): cv2.COLOR_RGB2GRAY, ("rgb", 4): cv2.COLOR_RGBA2GRAY,
            ("bgr", 3): cv2.COLOR_BGR2GRAY, ("bgr", 4): cv2.COLOR_BGRA2GRAY,
        }[(order, img.shape[2])]
        img = cv2.cvtColor(np.ascontiguousarray(img), code)
    return np.ascontiguousarray(img)


def _to_uint8(img: np.ndarray, where: str) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype == np.bool_:
        return img.astype(np.uint8) * 255
    if np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise MimikaError(f"{where}: image has NaN or infinite values")
        scale = 255.0 if img.max(initial=0) <= 1.0 else 1.0  # floats in [0, 1] or [0, 255]
        return np.clip(img * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(img.dtype, np.integer):
        return np.clip(img, 0, 255).astype(np.uint8)
    raise MimikaError(f"{where}: unsupported pixel type {img.dtype}")


def load_gray(source: ImageLike, order: str = "rgb") -> np.ndarray:
    """A path or an array, as uint8 grayscale: the one entry point the rest of mimika uses."""
    if isinstance(source, np.ndarray):
        return to_gray(source, order=order)
    return to_gray(read_image(source), order="bgr", where=str(source))


def read_color(source: ImageLike) -> np.ndarray:
    """A path or an RGB array, as 8-bit BGR for drawing on (annotated copies)."""
    if isinstance(source, np.ndarray):
        img, order = source, "rgb"
    else:
        img, order = read_image(source), "bgr"
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    img = _to_uint8(np.asarray(img), str(source) if not isinstance(source, np.ndarray) else "image")
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGR if order == "rgb" else cv2.COLOR_BGRA2BGR)
    elif order == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(img)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files below `folder`, sorted, by suffix."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
