"""Image sources: what a caller hands in (a file path, "-" for standard input, bytes, a numpy
array, a PIL image), its display name, and the folder scans that find image files.

Files come from anywhere (phones, the web, fuzzers): only regular files are opened, non-blocking,
so a FIFO, a device, a folder or a symlink loop is refused at once instead of hanging; a file over
the file limit (`config`) is refused unread.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import sys
from pathlib import Path
from typing import Any, Iterable, Union

import numpy as np

from ...common.errors import MimikaError
from .capture import short_text
from .config import check_pixels, limits

ImageLike = Union[str, os.PathLike, bytes, bytearray, memoryview, np.ndarray, Any]  # Any: a PIL image


#: Suffixes of the files the reader decodes (each one is tested), for folder scans.
IMAGE_SUFFIXES = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".dib", ".tif", ".tiff",
    ".webp", ".avif", ".jp2", ".j2k", ".pbm", ".pgm", ".ppm", ".pnm", ".pam", ".pfm", ".hdr",
    ".sr", ".ras",
}



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


def open_source(source: ImageLike, color: str = "rgb") -> tuple[str, bytes | np.ndarray, str]:
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
    check_pixels("<PIL image>", w, h)
    try:
        im = ImageOps.exif_transpose(im)
        if im.mode in ("LA", "La"):
            im = im.convert("L")
        elif im.mode not in ("1", "L", "I", "F", "RGB", "RGBA") and not im.mode.startswith("I;16"):
            im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
        return np.asarray(im)
    except Exception as e:  # a lazily opened image decodes here: any failure of Pillow's
        raise MimikaError(f"<PIL image>: cannot read it ({short_text(e)})") from None


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
