"""The header probe: format, size, pages and EXIF orientation, read before anything is decoded.

OpenCV has no header-only call, so Pillow reads the header. Pillow parses headers in Python, so a
hostile header gives an exception, not a crash or a huge allocation, and it knows every format
OpenCV decodes but PAM, PFM and Radiance HDR, whose one-line text headers are read here; TIFF goes
through Pillow's IFD parser, which reads the size of any TIFF whatever its pixel layout. A file
whose header Pillow refuses is refused. (OpenEXR, which OpenCV disables by default, is not read.)
A PNG's chunk lengths are checked against the file too: OpenCV allocates what a chunk claims
before reading it (a 0.5 MB file whose IDAT claimed 2 GB took 2.1 GB and 8 s to fail).
OpenCV's TIFF decoder applies the TIFF orientation itself, whatever the flags: checked once at run
time. Cost per file: 21 us for a 640 x 480 JPEG; importing Pillow, once, 20 ms
(bench/large_image.py).
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from ...common.errors import MimikaError
from .capture import Unreadable, short_text


@dataclass(frozen=True)
class Header:
    """What the probe reads; width and height as OpenCV will decode them (before the EXIF turn)."""

    format: str
    width: int
    height: int
    pages: int = 1
    orientation: int = 1


#: Pillow's names of the formats OpenCV decodes (TIFF, PAM, PFM and HDR are read apart).
_PIL_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "PPM", "WEBP", "SUN", "JPEG2000", "AVIF")
_PIL_PLUGINS = ("JpegImagePlugin", "PngImagePlugin", "GifImagePlugin", "BmpImagePlugin", "PpmImagePlugin",
                "WebPImagePlugin", "SunImagePlugin", "Jpeg2KImagePlugin", "AvifImagePlugin", "TiffImagePlugin")
_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
_MAX_PAGES_COUNTED = 1000
_MAX_PNG_CHUNKS = 1 << 22  # a PNG holds tens of chunks and an IDAT per 8 KiB or more: 4M is 32 GiB of them
_PNG_CHUNK = struct.Struct(">I4s")  # a chunk's length and type; its data and CRC follow


@functools.lru_cache(maxsize=None)
def pillow():
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


def read_header(data: bytes) -> Header:
    """Format, size, page count and EXIF orientation, from the header: nothing is decoded."""
    if data[:4] in _TIFF_MAGIC:
        return _probe_tiff(data)
    text = _probe_text(data)
    if text is not None:
        return text
    Image = pillow()
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
            raise Unreadable(f"not a readable image ({fmt} header: {short_text(e)})") from None
        if fmt == "PNG":
            _check_png_chunks(data)
        return Header(im.format or fmt, *im.size, _frames(im), _exif_orientation(Image, im))
    raise Unreadable("not a readable image (not a format mimika reads)")


def _check_png_chunks(data: bytes) -> None:
    """Every chunk up to IEND within the file: a length that claims more is refused before OpenCV
    would allocate it."""
    pos, end, n = 8, len(data), 0
    while pos + 12 <= end:
        size, kind = _PNG_CHUNK.unpack_from(data, pos)
        if size > end - pos - 12:
            raise Unreadable(f"not a readable image (PNG chunk {kind.decode('latin-1')!r} at byte {pos} claims "
                             f"{size:,} bytes; {max(0, end - pos - 12):,} are left in the file)")
        pos += 12 + size
        n += 1
        if kind == b"IEND":
            return
        if n > _MAX_PNG_CHUNKS:
            raise Unreadable(f"not a readable image (PNG of more than {_MAX_PNG_CHUNKS:,} chunks)")


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


def _probe_tiff(data: bytes) -> Header:
    """A TIFF's first page, by Pillow's IFD parser (Pillow's TIFF plugin refuses some pixel
    layouts libtiff reads, e.g. float RGB)."""
    pillow()
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
        raise Unreadable(f"not a readable image (TIFF header: {short_text(e)})") from None
    return Header("TIFF", w, h, pages, orientation)


@functools.lru_cache(maxsize=None)
def _opencv_turns_tiff() -> bool:
    """Whether OpenCV's TIFF decoder applies the Orientation tag itself, whatever the flags (4.14
    does; it ignores EXIF in the other formats when told to)."""
    buf = io.BytesIO()
    pillow().new("L", (2, 1)).save(buf, "TIFF", tiffinfo={274: 6})
    img = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    return img is not None and img.shape[:2] == (2, 1)


def _probe_text(data: bytes) -> Header | None:
    """The text headers of PAM, PFM and Radiance HDR, which Pillow does not read."""
    head = data[:4096]
    if head[:2] == b"P7":
        w, h = re.search(rb"\bWIDTH\s+(\d+)", head), re.search(rb"\bHEIGHT\s+(\d+)", head)
        if not (w and h):
            raise Unreadable("not a readable image (PAM header without WIDTH and HEIGHT)")
        return Header("PAM", int(w[1]), int(h[1]))
    if head[:2] in (b"PF", b"Pf"):
        m = re.match(rb"P[Ff]\s+(\d+)\s+(\d+)\s", head)
        if not m:
            raise Unreadable("not a readable image (bad PFM header)")
        return Header("PFM", int(m[1]), int(m[2]))
    if head[:2] == b"#?":
        m = re.search(rb"\n\s*\n([-+])([XY]) (\d+) ([-+])([XY]) (\d+)\s", head)
        if not m or m[2] == m[5]:
            raise Unreadable("not a readable image (bad Radiance HDR header)")
        a, b = int(m[3]), int(m[6])
        return Header("HDR", *((b, a) if m[2] == b"Y" else (a, b)))
    return None


def page_notes(head: Header) -> list[str]:
    """What the user is told about a file of several pages or frames (the first is read)."""
    if head.pages <= 1:
        return []
    what = "pages" if head.format == "TIFF" else "frames"
    more = "+" if head.pages >= _MAX_PAGES_COUNTED else ""
    return [f"{head.pages}{more} {what}; read the first"]
