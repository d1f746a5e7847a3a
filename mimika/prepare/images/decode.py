"""Decoding: OpenCV decodes the pixels at their stored depth, then the EXIF orientation is applied,
so phone photos read upright; gray for detection and training, a BGR copy for the detector or
for drawing on.

- OpenCV decodes with IMREAD_UNCHANGED: every depth and channel count.
- `load_image` returns the gray image with a long side of at most MAX_SIDE = 4096 px, and the
  `scale` that maps its boxes back. A bigger image is shrunk while decoding: a JPEG by libjpeg at
  1/2, 1/4 or 1/8 size (IMREAD_REDUCED_*), anything else decoded straight to one gray channel.
  4096 keeps every photo up to 16 MP (all 12 MP phone photos) exactly as before; for an
  8000 x 8000 JPEG the whole `mimika predict` peaked at 234 MiB instead of 537 (310 MiB with the
  detector's colour copy, below), and a long-lived Recognizer keeps about 100 MiB more than before
  it instead of 377 (the face detector's buffers grow
  to the largest image it has seen). 2048 would keep 23 MiB and detect about 3x faster, but would
  halve every 12 MP photo and lose its faces under 80 px. `python bench/large_image.py` measures
  these (and 3072).
- `load_image(..., keep_color=True)` (what recognition asks for when its detector takes colour,
  the CNN: it finds more faces in colour) also keeps a BGR copy of a colour image, the same size
  as the gray one: a reduced JPEG decode is run a second time in colour (an 8000 x 8000 JPEG: a
  4000 x 4000 x 3 copy, 46 MiB; `mimika predict` peaks at 310 MiB instead of 234); a non-JPEG file
  over MAX_SIDE gets none (decoded straight to gray, as above).
- Reading costs 35-80 us (3-6%) more than OpenCV alone for a 640 x 480 JPEG, the header probe and
  the stderr capture included (bench/large_image.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from ...common.errors import MimikaError
from .capture import Unreadable, decoding
from .config import check_pixels
from .probe import Header, page_notes, read_header
from .source import ImageLike, open_source

MAX_SIDE = 4096


@dataclass
class LoadedImage:
    """An image ready for detection: `gray` is at most `max_side` on its long side; a box found on
    it maps back to the stored image by multiplying by `scale`."""

    gray: np.ndarray  # uint8, H x W
    scale: float  # stored pixels per loaded pixel (1.0: not shrunk)
    size: tuple[int, int]  # stored (width, height), after the EXIF orientation
    source: str  # display name: the path, "<stdin>", "<bytes>", "<array>", "<PIL image>"
    notes: list[str] = field(default_factory=list)  # for the user, about this source: "3 pages; read the first"
    decoder_messages: list[str] = field(default_factory=list)  # the decoders' warnings (verbose output)
    color: np.ndarray | None = None  # uint8 BGR, H x W x 3 as `gray`, with keep_color for a colour source

    @property
    def for_detector(self) -> np.ndarray:
        """What the face detector looks at: the colour copy where there is one (the CNN finds more
        faces in colour), else the gray image."""
        return self.gray if self.color is None else self.color


def load_image(source: ImageLike, color: str = "rgb", max_side: int | None = MAX_SIDE,
               keep_color: bool = False) -> LoadedImage:
    """Any source as uint8 gray for detection, shrunk to `max_side` (None: full size), upright;
    with `keep_color`, a BGR copy of a colour source beside it, of the same size (not for a
    non-JPEG file over `max_side`, which is decoded straight to gray to bound memory)."""
    _check_color(color)
    if max_side is not None and max_side < 1:
        raise MimikaError(f"max_side must be at least 1, got {max_side}")
    name, data, color = open_source(source, color)
    if isinstance(data, bytes):
        return _load_encoded(name, data, max_side, keep_color)
    gray = to_gray(data, color, where=name)
    h, w = gray.shape
    gray, scale = _shrink(gray, w, h, max_side)
    colored = _color_copy(data, color, name, gray) if keep_color else None
    return LoadedImage(gray, scale, (w, h), name, color=colored)


def load_gray(source: ImageLike, color: str = "rgb") -> np.ndarray:
    """Any source as uint8 gray at its full stored size, upright: what training data uses."""
    return load_image(source, color, max_side=None).gray


def read_color(source: ImageLike, color: str = "rgb") -> np.ndarray:
    """Any source as 8-bit BGR at full size, upright, for drawing on (annotated copies)."""
    _check_color(color)
    name, img, order = open_source(source, color)
    if isinstance(img, bytes):
        img, order = _decode_stored(name, img)[0], "bgr"
    return _as_bgr(img, order, name)


def _as_bgr(image: np.ndarray, order: str, where: str) -> np.ndarray:
    """An array of any depth and 1, 3 or 4 channels (`order` "rgb" or "bgr") as uint8 BGR."""
    img = _uint8_pixels(image, where)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGBA2BGR if order == "rgb" else cv2.COLOR_BGRA2BGR)
    elif order == "rgb":
        img = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(img)


def _color_copy(image: np.ndarray | None, order: str, where: str, gray: np.ndarray) -> np.ndarray | None:
    """The detector's BGR copy of a colour image, at the size `_shrink` gave its gray version;
    None for a gray image (or none decoded)."""
    if image is None or np.ndim(image) == 2 or np.shape(image)[2] == 1:
        return None
    bgr = _as_bgr(image, order, where)
    if bgr.shape[:2] == gray.shape:
        return bgr
    return cv2.resize(bgr, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_AREA)


def read_image(source: str | os.PathLike | bytes) -> np.ndarray:
    """Decode a file, bytes or "-" as stored (any depth, 1/3/4 channels, BGR order), upright."""
    name, data, _ = open_source(source)
    if not isinstance(data, bytes):
        raise MimikaError(f"{name}: read_image decodes files, bytes or '-'; use load_gray for images in memory")
    return _decode_stored(name, data)[0]


def to_gray(image: np.ndarray, color: str = "rgb", where: str = "<array>") -> np.ndarray:
    """Convert gray/RGB(A)/BGR(A) arrays of any integer or float depth to uint8 grayscale.

    `color` says how 3- or 4-channel arrays are laid out: "rgb" for arrays from the user
    (PIL, scikit-image, matplotlib), "bgr" for what OpenCV decodes (cv2.imread)."""
    _check_color(color)
    img = _uint8_pixels(image, where)
    if img.ndim == 3:
        code = {
            ("rgb", 3): cv2.COLOR_RGB2GRAY, ("rgb", 4): cv2.COLOR_RGBA2GRAY,
            ("bgr", 3): cv2.COLOR_BGR2GRAY, ("bgr", 4): cv2.COLOR_BGRA2GRAY,
        }[(color, img.shape[2])]
        img = cv2.cvtColor(np.ascontiguousarray(img), code)
    return np.ascontiguousarray(img)


def _load_encoded(name: str, data: bytes, max_side: int | None, keep_color: bool = False) -> LoadedImage:
    colored = None
    with decoding(name) as log:
        head = read_header(data)
        w, h = head.width, head.height
        check_pixels(name, w, h)
        if max_side is None or max(w, h) <= max_side:
            img = _imdecode(data, cv2.IMREAD_UNCHANGED)
            reduced = False
        else:  # shrink while decoding: the full-size color image never exists
            img = _imdecode(data, _reduced_flags(head, max_side))
            reduced = True
            if keep_color and img is not None and head.format in ("JPEG", "MPO"):  # libjpeg's reduced colour
                colored = _imdecode(data, _reduced_flags(head, max_side, color=True))
    if img is None:
        raise MimikaError(f"{name}: not a readable image{log.said()}")
    if reduced:
        gray = _to_uint8(img[:, :, 0] if img.ndim == 3 else img, name)
        gray, scale = _shrink(gray, w, h, max_side)
        colored = _color_copy(colored, "bgr", name, gray)
    else:
        check_pixels(name, img.shape[1], img.shape[0])  # in case the decoder disagrees with the header
        gray, scale = to_gray(img, "bgr", where=name), 1.0
        h, w = gray.shape
        colored = _color_copy(img, "bgr", name, gray) if keep_color else None
    gray = _orient(gray, head.orientation)
    colored = None if colored is None else _orient(colored, head.orientation)
    size = (h, w) if head.orientation >= 5 else (w, h)
    return LoadedImage(gray, scale, size, name, page_notes(head), log.messages, color=colored)


def _decode_stored(name: str, data: bytes) -> tuple[np.ndarray, Header]:
    """The image as stored (any depth and channels, BGR), upright."""
    with decoding(name) as log:
        head = read_header(data)
        check_pixels(name, head.width, head.height)
        img = _imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MimikaError(f"{name}: not a readable image{log.said()}")
    check_pixels(name, img.shape[1], img.shape[0])
    return _orient(img, head.orientation), head


def _imdecode(data: bytes, flags: int) -> np.ndarray | None:
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:  # e.g. its own size checks (CV_IO_MAX_IMAGE_PIXELS), out of memory
        raise Unreadable(f"not a readable image (OpenCV: {_cv_message(e)})") from None
    return None if img is None or img.size == 0 else img


def _reduced_flags(head: Header, max_side: int, color: bool = False) -> int:
    """Decode flags for a gray (or, JPEG only, `color`) image to be shrunk to max_side. JPEG:
    libjpeg decodes at 1/8, 1/4 or 1/2 size, the smallest that keeps 3/4 of max_side (an 8000 px
    photo: 4000 px, 15 MB instead of 61); others decode at full size, to one channel."""
    flags = (cv2.IMREAD_COLOR if color else cv2.IMREAD_GRAYSCALE) | cv2.IMREAD_IGNORE_ORIENTATION
    if head.format not in ("JPEG", "MPO"):
        return flags | cv2.IMREAD_ANYDEPTH  # 16-bit and float stay so until _to_uint8
    long = max(head.width, head.height)
    steps = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2)) \
        if color else ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8), (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
                       (2, cv2.IMREAD_REDUCED_GRAYSCALE_2))
    for r, reduced in steps:
        if 4 * -(-long // r) >= 3 * max_side:  # libjpeg rounds the scaled size up
            return reduced | cv2.IMREAD_IGNORE_ORIENTATION
    return flags


def _shrink(gray: np.ndarray, w: int, h: int, max_side: int | None) -> tuple[np.ndarray, float]:
    """Gray (of a w x h image, perhaps decoded smaller) shrunk to a long side of at most max_side;
    and the scale from it back to w x h."""
    if max_side is None or max(w, h) <= max_side:
        return gray, 1.0
    if max(gray.shape) > max_side:
        scale = max(w, h) / max_side
        gray = cv2.resize(gray, (max(1, round(w / scale)), max(1, round(h / scale))), interpolation=cv2.INTER_AREA)
    return gray, max(w, h) / max(gray.shape)  # a reduced JPEG decode may be a little smaller


def _orient(img: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2-8): the stored pixels turned/mirrored to stand upright."""
    if orientation == 2:
        img = img[:, ::-1]
    elif orientation == 3:
        img = img[::-1, ::-1]
    elif orientation == 4:
        img = img[::-1]
    elif orientation == 5:
        img = img.swapaxes(0, 1)
    elif orientation == 6:
        img = img[::-1].swapaxes(0, 1)  # 90 degrees clockwise
    elif orientation == 7:
        img = img[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        img = img.swapaxes(0, 1)[::-1]  # 90 degrees counter-clockwise
    else:
        return img
    return np.ascontiguousarray(img)


def _uint8_pixels(image: np.ndarray, where: str) -> np.ndarray:
    """An array of 1, 3 or 4 channels (one channel as H x W) checked and made uint8."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    _check_shape(img, where)
    return _to_uint8(img, where)


def _check_shape(img: np.ndarray, where: str) -> None:
    if img.ndim not in (2, 3) or img.size == 0 or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise MimikaError(f"{where}: expected an H x W, H x W x 3 or H x W x 4 image, got shape {img.shape}")


def _check_color(color: str) -> None:
    if color not in ("rgb", "bgr"):
        raise MimikaError(f"color must be 'rgb' or 'bgr', got {color!r}")


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


def _cv_message(e: cv2.error) -> str:
    text = getattr(e, "err", "") or str(e)
    return " ".join(text.split())[:200]
