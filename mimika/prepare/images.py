"""Input preparation, step 1: read an image and make it 8-bit grayscale.

A source is a file path, "-" (standard input), bytes (an encoded file's contents), a numpy array
(gray, RGB, or BGR with color="bgr"; any integer or float depth) or a PIL image. Every failure is a
`MimikaError` whose message starts with the source's name ("<stdin>", "<bytes>", "<array>",
"<PIL image>" or the path) and says the problem in one line.

Files come from anywhere (phones, the web, fuzzers), so reading is defensive:

- Only regular files are opened, non-blocking: a FIFO, a device, a folder or a symlink loop is
  refused at once instead of hanging. Files over 1 GiB (DEFAULT_MAX_FILE_BYTES;
  $MIMIKA_MAX_FILE_BYTES or `settings.max_file_bytes`) are refused unread: that is the largest
  uncompressed image within the pixel limit (16-bit RGBA).
- Pillow reads the header only (format, size, pages, EXIF orientation): OpenCV has no
  header-only call. Pillow parses headers in Python, so a hostile header gives an exception, not
  a crash or a huge allocation, and it knows every format OpenCV decodes but PAM, PFM and
  Radiance HDR, whose one-line text headers are read here; TIFF goes through Pillow's IFD parser,
  which reads the size of any TIFF whatever its pixel layout. A file whose header Pillow refuses
  is refused. (OpenEXR, which OpenCV disables by default, is not read.)
- The pixel limit, checked on that header before anything is decoded: 2**27 = 134 megapixels
  (DEFAULT_MAX_PIXELS; $MIMIKA_MAX_PIXELS or `settings.max_pixels`): above 100 MP medium-format
  and 108 MP phone photos (raise it for 200 MP ones), far below a decompression bomb (a 65-byte
  PNG can claim 60000 x 60000 = 3.6 gigapixels). Memory at the limit: up to 8 bytes a pixel
  (16-bit RGBA) for a full-size decode, and OpenCV holds the image twice while decoding.
- OpenCV decodes the pixels (IMREAD_UNCHANGED: every depth and channel count as before), then the
  EXIF orientation is applied, so phone photos read upright. (OpenCV's TIFF decoder applies the
  TIFF orientation itself, whatever the flags: checked once at run time.)
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
- Decoders print warnings from C (libjpeg "Corrupt JPEG data", libpng, OpenCV's log) on file
  descriptor 2. Each probe and decode runs with fd 2 redirected to a temporary file and Python's
  warnings caught, under a lock since both belong to the whole process (what other threads write
  to fd 2 meanwhile is caught too): the text reaches the terminal only after `set_verbose(True)`,
  is kept in `LoadedImage.decoder_messages`, and ends the error message of a file that fails.
  Cost per file: the capture 11 us, the header probe 21 us, 35-80 us (3-6%) in all for a 640 x 480
  JPEG; importing Pillow, once, 20 ms (bench/large_image.py).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import os
import re
import stat
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Union

import cv2
import numpy as np

from ..common.errors import MimikaError

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]  # Any: a PIL image

DEFAULT_MAX_PIXELS = 1 << 27  # 134 megapixels, e.g. 11585 x 11585
DEFAULT_MAX_FILE_BYTES = 1 << 30
MAX_SIDE = 4096

#: Suffixes of the files the reader decodes (each one is tested), for folder scans.
IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".webp", ".avif", ".jp2", ".j2k", ".pbm", ".pgm", ".ppm", ".pnm", ".pam", ".pfm", ".hdr",
    ".sr", ".ras",
}


@dataclass
class ReadSettings:
    """Python settings of the reader; None falls back to the environment variable, then the
    default."""

    max_pixels: int | None = None  # $MIMIKA_MAX_PIXELS, DEFAULT_MAX_PIXELS
    max_file_bytes: int | None = None  # $MIMIKA_MAX_FILE_BYTES, DEFAULT_MAX_FILE_BYTES
    verbose: bool = False  # show the decoders' own messages on stderr


settings = ReadSettings()


def set_verbose(on: bool = True) -> None:
    """Let the decoders' warnings through to stderr (the CLI's --verbose)."""
    settings.verbose = bool(on)


def limits() -> tuple[int, int]:
    """The pixel and file-size limits in force: (max pixels, max file bytes)."""
    return (_limit(settings.max_pixels, "MIMIKA_MAX_PIXELS", DEFAULT_MAX_PIXELS),
            _limit(settings.max_file_bytes, "MIMIKA_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES))


def _limit(value: int | None, env: str, default: int) -> int:
    if value is None:
        text = os.environ.get(env, "").strip()
        if not text:
            return default
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise MimikaError(f"{env}: expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise MimikaError(f"{env}: expected a positive whole number, got {value}")
    return int(value)


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


# ---------------------------------------------------------------------------------------------
# public entry points


def load_image(source: ImageLike, color: str = "rgb", max_side: int | None = MAX_SIDE,
               keep_color: bool = False) -> LoadedImage:
    """Any source as uint8 gray for detection, shrunk to `max_side` (None: full size), upright;
    with `keep_color`, a BGR copy of a colour source beside it, of the same size (not for a
    non-JPEG file over `max_side`, which is decoded straight to gray to bound memory)."""
    _check_color(color)
    if max_side is not None and max_side < 1:
        raise MimikaError(f"max_side must be at least 1, got {max_side}")
    name, data, color = _open_source(source, color)
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
    name, img, order = _open_source(source, color)
    if isinstance(img, bytes):
        img, order = _decode_stored(name, img)[0], "bgr"
    return _as_bgr(img, order, name)


def _as_bgr(image: np.ndarray, order: str, where: str) -> np.ndarray:
    """An array of any depth and 1, 3 or 4 channels (`order` "rgb" or "bgr") as uint8 BGR."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    _check_shape(img, where)
    img = _to_uint8(img, where)
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
    name, data, _ = _open_source(source)
    if not isinstance(data, bytes):
        raise MimikaError(f"{name}: read_image decodes files, bytes or '-'; use load_gray for images in memory")
    return _decode_stored(name, data)[0]


def to_gray(image: np.ndarray, color: str = "rgb", where: str = "<array>") -> np.ndarray:
    """Convert gray/RGB(A)/BGR(A) arrays of any integer or float depth to uint8 grayscale.

    `color` says how 3- or 4-channel arrays are laid out: "rgb" for arrays from the user
    (PIL, scikit-image, matplotlib), "bgr" for what OpenCV decodes (cv2.imread)."""
    _check_color(color)
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    _check_shape(img, where)
    img = _to_uint8(img, where)
    if img.ndim == 3:
        code = {
            ("rgb", 3): cv2.COLOR_RGB2GRAY, ("rgb", 4): cv2.COLOR_RGBA2GRAY,
            ("bgr", 3): cv2.COLOR_BGR2GRAY, ("bgr", 4): cv2.COLOR_BGRA2GRAY,
        }[(color, img.shape[2])]
        img = cv2.cvtColor(np.ascontiguousarray(img), code)
    return np.ascontiguousarray(img)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files below `folder`, sorted, by suffix (any case)."""
    return list_files(folder, IMAGE_SUFFIXES)


def list_files(folder: str | os.PathLike, suffixes: Iterable[str]) -> list[Path]:
    """Regular files below `folder` with one of these suffixes, sorted. Nothing is opened, so a
    FIFO cannot block; symlinks to files count, symlinked folders are not entered (as pathlib's
    rglob), and a folder reached twice (bind mounts) is scanned once: the walk always ends."""
    suffixes = {s.lower() for s in suffixes}
    out: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(folder, followlinks=False):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        for name in files:
            if os.path.splitext(name)[1].lower() not in suffixes:
                continue
            path = os.path.join(root, name)
            try:
                if stat.S_ISREG(os.stat(path).st_mode):
                    out.append(Path(path))
            except (OSError, ValueError):  # dangling link, link loop
                pass
    return sorted(out)


def check_regular_file(path: str | os.PathLike, what: str = "image") -> os.stat_result:
    """stat() a path and refuse anything but a regular file, without opening it."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as e:
        raise MimikaError(f"{path}: {_os_problem(path, e)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise MimikaError(f"{path}: is {_file_kind(st.st_mode)}, not {_article(what)} file")
    return st


# ---------------------------------------------------------------------------------------------
# sources


def _open_source(source: ImageLike, color: str = "rgb") -> tuple[str, bytes | np.ndarray, str]:
    """(display name, encoded bytes or an array, the array's channel order) of any source."""
    if isinstance(source, np.ndarray):
        return "<array>", source, color
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise MimikaError("<bytes>: empty")
        return "<bytes>", data, color
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if path == "-":
            return "<stdin>", _read_stdin(limits()[1]), color
        if not path:
            raise MimikaError("'': empty file name")
        return str(source), _read_file(str(source), path, limits()[1]), color
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(source, pil.Image):
        return "<PIL image>", _pil_to_array(source), "rgb"
    kind = type(source).__name__
    raise MimikaError(f"<{kind}>: not an image: expected a file path, '-', bytes, a numpy array or a PIL image")


def _read_file(name: str, path: str, max_bytes: int) -> bytes:
    check_regular_file(path)  # before opening: opening some devices has effects
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
        | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)  # non-blocking: a FIFO swapped in meanwhile cannot hang us
    except (OSError, ValueError) as e:
        raise MimikaError(f"{name}: {_os_problem(path, e)}") from None
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MimikaError(f"{name}: is {_file_kind(st.st_mode)}, not an image file")
        if st.st_size > max_bytes:
            raise MimikaError(f"{name}: file too large ({st.st_size:,} bytes; the limit is {max_bytes:,}, "
                              f"MIMIKA_MAX_FILE_BYTES)")
        try:
            data = _read_bounded(f, st.st_size + 1, max_bytes)
        except OSError as e:
            raise MimikaError(f"{name}: cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise MimikaError(f"{name}: file too large (over {max_bytes:,} bytes, MIMIKA_MAX_FILE_BYTES)")
    if not data:
        raise MimikaError(f"{name}: empty file")
    return data


def _read_bounded(f, first: int, max_bytes: int) -> bytes:
    """Read to the end, at most max_bytes + 1 bytes (one more says 'too large')."""
    parts = [f.read(min(first, max_bytes + 1)) or b""]
    total = len(parts[0])
    while total <= max_bytes:
        part = f.read(min(1 << 20, max_bytes + 1 - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


_stdin_read: tuple[object, bytes] | None = None  # (stream, its bytes): standard input can be read
#                                                   once, so what it gave is kept for a second look (annotation)


def _read_stdin(max_bytes: int) -> bytes:
    global _stdin_read
    if _stdin_read is None or _stdin_read[0] is not sys.stdin:
        _stdin_read = (sys.stdin, _read_stdin_once(max_bytes))
    return _stdin_read[1]


def _read_stdin_once(max_bytes: int) -> bytes:
    stream = sys.stdin
    if stream is None:
        raise MimikaError("<stdin>: no standard input")
    with contextlib.suppress(AttributeError, ValueError, OSError):
        if stream.isatty():
            raise MimikaError("<stdin>: is a terminal; pipe an image in (mimika predict - < photo.jpg)")
    buf = getattr(stream, "buffer", stream)
    if isinstance(buf, io.TextIOBase):
        raise MimikaError("<stdin>: is open as text; an image needs binary input")
    try:
        data = _read_bounded(buf, 1 << 20, max_bytes)
    except OSError as e:
        raise MimikaError(f"<stdin>: cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise MimikaError(f"<stdin>: too large (over {max_bytes:,} bytes, MIMIKA_MAX_FILE_BYTES)")
    if not data:
        raise MimikaError("<stdin>: empty")
    return data


def _pil_to_array(im) -> np.ndarray:
    """A PIL image as a numpy array in RGB(A) order (or gray), EXIF orientation applied."""
    from PIL import ImageOps
    w, h = im.size
    _check_pixels("<PIL image>", w, h)
    try:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("LA", "La"):
            im = im.convert("L")
        elif im.mode not in ("1", "L", "I", "F", "RGB", "RGBA") and not im.mode.startswith("I;16"):
            im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
        return np.asarray(im)
    except Exception as e:  # a lazily opened image decodes here: any failure of Pillow's
        raise MimikaError(f"<PIL image>: cannot read it ({_short(e)})") from None


# ---------------------------------------------------------------------------------------------
# decoding


class _Unreadable(Exception):
    """Why a file cannot be read; the decoders' messages are appended when it is raised."""


@dataclass(frozen=True)
class _Header:
    format: str
    width: int
    height: int
    pages: int = 1
    orientation: int = 1


def _load_encoded(name: str, data: bytes, max_side: int | None, keep_color: bool = False) -> LoadedImage:
    colored = None
    with _decoding(name) as log:
        head = _probe(data)
        w, h = head.width, head.height
        _check_pixels(name, w, h)
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
        _check_pixels(name, img.shape[1], img.shape[0])  # in case the decoder disagrees with the header
        gray, scale = to_gray(img, "bgr", where=name), 1.0
        h, w = gray.shape
        colored = _color_copy(img, "bgr", name, gray) if keep_color else None
    gray = _orient(gray, head.orientation)
    colored = None if colored is None else _orient(colored, head.orientation)
    size = (h, w) if head.orientation >= 5 else (w, h)
    return LoadedImage(gray, scale, size, name, _notes(head), log.messages, color=colored)


def _decode_stored(name: str, data: bytes) -> tuple[np.ndarray, _Header]:
    """The image as stored (any depth and channels, BGR), upright."""
    with _decoding(name) as log:
        head = _probe(data)
        _check_pixels(name, head.width, head.height)
        img = _imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MimikaError(f"{name}: not a readable image{log.said()}")
    _check_pixels(name, img.shape[1], img.shape[0])
    return _orient(img, head.orientation), head


def _imdecode(data: bytes, flags: int) -> np.ndarray | None:
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as e:  # e.g. its own size checks (CV_IO_MAX_IMAGE_PIXELS), out of memory
        raise _Unreadable(f"not a readable image (OpenCV: {_cv_message(e)})") from None
    return None if img is None or img.size == 0 else img


def _reduced_flags(head: _Header, max_side: int, color: bool = False) -> int:
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


def _notes(head: _Header) -> list[str]:
    if head.pages <= 1:
        return []
    what = "pages" if head.format == "TIFF" else "frames"
    more = "+" if head.pages >= _MAX_PAGES_COUNTED else ""
    return [f"{head.pages}{more} {what}; read the first"]


def _check_pixels(name: str, w: int, h: int) -> None:
    if w <= 0 or h <= 0:
        raise MimikaError(f"{name}: zero-sized image ({w} x {h})")
    max_pixels = limits()[0]
    if w * h > max_pixels:
        raise MimikaError(f"{name}: image too large ({w} x {h} = {w * h:,} pixels; the limit is {max_pixels:,}, "
                          f"MIMIKA_MAX_PIXELS)")


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


# ---------------------------------------------------------------------------------------------
# headers

#: Pillow's names of the formats OpenCV decodes (TIFF, PAM, PFM and HDR are read apart).
_PIL_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "PPM", "WEBP", "SUN", "JPEG2000", "AVIF")
_PIL_PLUGINS = ("JpegImagePlugin", "PngImagePlugin", "GifImagePlugin", "BmpImagePlugin", "PpmImagePlugin",
                "WebPImagePlugin", "SunImagePlugin", "Jpeg2KImagePlugin", "AvifImagePlugin", "TiffImagePlugin")
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
_MAX_PAGES_COUNTED = 1000


@functools.lru_cache(maxsize=None)
def _pillow():
    """PIL.Image with the plugins of the formats above (not all 40 of them: faster import)."""
    import importlib
    try:
        from PIL import Image
    except ImportError:
        raise MimikaError("reading image files needs Pillow, which reads their headers: pip install pillow") from None
    for plugin in _PIL_PLUGINS:
        with contextlib.suppress(ImportError):  # AVIF: Pillow >= 11.3
            importlib.import_module(f"PIL.{plugin}")
    return Image


def _probe(data: bytes) -> _Header:
    """Format, size, page count and EXIF orientation, from the header: nothing is decoded."""
    if data[:4] in _TIFF_MAGIC:
        return _probe_tiff(data)
    text = _probe_text(data)
    if text is not None:
        return text
    Image = _pillow()
    for fmt in _PIL_FORMATS:
        if fmt not in Image.OPEN:
            continue
        factory, accept = Image.OPEN[fmt]
        ok = accept(data[:16]) if accept else True
        if not ok or isinstance(ok, str):
            continue
        try:  # the plugin itself: Image.open would also apply Pillow's own pixel limit
            im = factory(io.BytesIO(data), "")
        except Exception as e:  # hostile headers raise all sorts: each means "unreadable"
            raise _Unreadable(f"not a readable image ({fmt} header: {_short(e)})") from None
        return _Header(im.format or fmt, *im.size, _frames(im), _exif_orientation(Image, im))
    raise _Unreadable("not a readable image (not a format mimika reads)")


def _frames(im) -> int:
    if im.format in ("JPEG", "MPO"):  # MPO: a phone's extra images beside the photo, not pages
        return 1
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception:
        return 1


def _exif_orientation(Image, im) -> int:
    try:  # Image.getexif itself: PNG's own version decodes the whole image to look for it
        o = Image.Image.getexif(im).get(0x0112, 1)
        return int(o) if int(o) in range(1, 9) else 1
    except Exception:
        return 1


def _probe_tiff(data: bytes) -> _Header:
    """A TIFF's first page, by Pillow's IFD parser (Pillow's TIFF plugin refuses some pixel
    layouts libtiff reads, e.g. float RGB)."""
    _pillow()
    from PIL.TiffImagePlugin import ImageFileDirectory_v2

    fp = io.BytesIO(data)
    ifh = data[:16] if data[2:3] == b"+" or data[3:4] == b"+" else data[:8]
    try:
        ifd = ImageFileDirectory_v2(ifh)
        first = ifd.next
        fp.seek(first)
        ifd.load(fp)
        w, h = ifd.get(256), ifd.get(257)
        if not isinstance(w, int) or not isinstance(h, int):
            raise ValueError("no image width or height")
        o = ifd.get(274, 1)
        orientation = o if isinstance(o, int) and 1 <= o <= 8 else 1
        if orientation != 1 and _opencv_turns_tiff():  # its output is upright already
            w, h, orientation = (h, w, 1) if orientation >= 5 else (w, h, 1)
        pages, seen, nxt = 1, {first}, ifd.next
        while nxt and nxt not in seen and pages < _MAX_PAGES_COUNTED and nxt < len(data):
            seen.add(nxt)
            page = ImageFileDirectory_v2(ifh)
            fp.seek(nxt)
            page.load(fp)
            pages += 1
            nxt = page.next
    except Exception as e:
        raise _Unreadable(f"not a readable image (TIFF header: {_short(e)})") from None
    return _Header("TIFF", w, h, pages, orientation)


@functools.lru_cache(maxsize=None)
def _opencv_turns_tiff() -> bool:
    """Whether OpenCV's TIFF decoder applies the Orientation tag itself, whatever the flags (4.14
    does; it ignores EXIF in the other formats when told to)."""
    buf = io.BytesIO()
    _pillow().new("L", (2, 1)).save(buf, "TIFF", tiffinfo={274: 6})
    img = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    return img is not None and img.shape[:2] == (2, 1)


def _probe_text(data: bytes) -> _Header | None:
    """The text headers of PAM, PFM and Radiance HDR, which Pillow does not read."""
    head = data[:4096]
    if head[:2] == b"P7":
        w, h = re.search(rb"\bWIDTH\s+(\d+)", head), re.search(rb"\bHEIGHT\s+(\d+)", head)
        if not (w and h):
            raise _Unreadable("not a readable image (PAM header without WIDTH and HEIGHT)")
        return _Header("PAM", int(w[1]), int(h[1]))
    if head[:2] in (b"PF", b"Pf"):
        m = re.match(rb"P[Ff]\s+(\d+)\s+(\d+)\s", head)
        if not m:
            raise _Unreadable("not a readable image (bad PFM header)")
        return _Header("PFM", int(m[1]), int(m[2]))
    if head[:2] == b"#?":
        m = re.search(rb"\n\s*\n([-+])([XY]) (\d+) ([-+])([XY]) (\d+)\s", head)
        if not m or m[2] == m[5]:
            raise _Unreadable("not a readable image (bad Radiance HDR header)")
        a, b = int(m[3]), int(m[6])
        return _Header("HDR", *((b, a) if m[2] == b"Y" else (a, b)))
    return None


# ---------------------------------------------------------------------------------------------
# the decoders' messages


class _Log:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def said(self) -> str:
        """' (decoder: ...)' when a decoder said something, for an error message."""
        if not self.messages:
            return ""
        text = "; ".join(dict.fromkeys(self.messages))
        return f" (decoder: {text[:300]}{'...' if len(text) > 300 else ''})"


_lock = threading.Lock()
_capture_file: tuple[int, int] | None = None  # (pid, fd) of an unlinked temporary file


def _after_fork_in_child() -> None:
    """A child forked while another thread decoded must not inherit a held lock or share our
    capture file's offset with its parent."""
    global _lock, _capture_file
    _lock, _capture_file = threading.Lock(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
_CV_LOG_PREFIX = re.compile(r"^\[\s*[A-Z]+:\d+@[\d.]+\]\s+(global\s+)?\S+:\d+\s+\S+\s+")


@contextlib.contextmanager
def _decoding(name: str) -> Iterator[_Log]:
    """Run a probe and decode with the decoders' C-level stderr and Python warnings caught.
    An _Unreadable raised inside becomes a MimikaError naming the file, with what they said."""
    log = _Log()
    raised: _Unreadable | None = None
    with _lock, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved, tmp = _redirect_fd2()
        try:
            yield log
        except _Unreadable as e:
            raised = e
        finally:
            text = _restore_fd2(saved, tmp)
            lines = [_CV_LOG_PREFIX.sub("", line).strip() for line in text.splitlines()]
            log.messages = [line for line in lines if line] + [f"{w.category.__name__}: {w.message}" for w in caught]
            if settings.verbose:
                with contextlib.suppress(OSError):
                    os.write(2, text.encode(errors="replace"))
                for w in caught:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if raised is not None:
        raise MimikaError(f"{name}: {raised}{log.said()}") from None


def _redirect_fd2() -> tuple[int, int]:
    """Point fd 2 at the capture file; (saved fd 2, capture fd), or (-1, -1) if there is no fd 2."""
    global _capture_file
    try:
        if _capture_file is None or _capture_file[0] != os.getpid():
            with tempfile.TemporaryFile() as f:
                _capture_file = (os.getpid(), os.dup(f.fileno()))
        tmp = _capture_file[1]
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved = os.dup(2)
    except OSError:
        return -1, -1
    try:
        os.ftruncate(tmp, 0)
        os.lseek(tmp, 0, os.SEEK_SET)
        os.dup2(tmp, 2)
    except OSError:
        os.close(saved)
        return -1, -1
    return saved, tmp


def _restore_fd2(saved: int, tmp: int) -> str:
    if saved < 0:
        return ""
    os.dup2(saved, 2)
    os.close(saved)
    try:
        n = os.lseek(tmp, 0, os.SEEK_END)
        os.lseek(tmp, 0, os.SEEK_SET)
        return os.read(tmp, min(n, 1 << 16)).decode(errors="replace") if n else ""
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------------
# small helpers


def _os_problem(path: str | os.PathLike, e: BaseException) -> str:
    if isinstance(e, ValueError):
        return "not a valid file name"
    if isinstance(e, FileNotFoundError):
        return "broken symbolic link" if os.path.islink(path) else "no such file"
    if isinstance(e, IsADirectoryError):
        return "is a folder, not an image"
    if isinstance(e, OSError) and e.errno == errno.ELOOP:
        return "symbolic link loop"
    if isinstance(e, PermissionError):
        return "permission denied"
    return f"cannot read ({getattr(e, 'strerror', None) or e})"


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _article(what: str) -> str:
    return f"an {what}" if what[:1] in "aeiou" else f"a {what}"


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]


def _cv_message(e: cv2.error) -> str:
    text = getattr(e, "err", "") or str(e)
    return " ".join(text.split())[:200]
