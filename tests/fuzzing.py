"""Seeded fuzzing harness (issue #9): hostile inputs for mimika, and the checks that classify
what mimika does with them.

Used by `tests/test_fuzz.py` (short, seeded, asserts) and `bench/fuzz.py` (long campaigns,
prints the table). It drives mimika only through its public names (`mimika.Recognizer`,
`mimika.recognize`, `mimika.load_predictor`, `mimika.load_dataset`, `mimika.create_model`,
`mimika.train`, `mimika.TrainOptions`, `mimika.CropSpec`, `mimika.MimikaError`,
`mimika.shipped_models`) and the CLI, so it keeps working while modules move.

Every case runs in a child process ("worker") with an address-space limit; the parent kills
the worker when a case runs past its time limit. Outcomes:

  ok        a result (a damaged file that still decodes is fine)
  clean     a `MimikaError` (CLI: exit status != 0, no traceback)
  uncaught  any other exception (CLI: a traceback)
  crash     the process died of a signal
  hang      past the time limit
  memory    MemoryError / OpenCV out of memory under the address-space limit
  nan       NaN, infinite or invalid probabilities
  changed   a damaged model loaded without error but answers differently
  lost      (batches) a good file's result missing or changed by its bad neighbours
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
STATUSES = ("ok", "clean", "uncaught", "crash", "hang", "memory", "nan", "changed")
FAILURES = ("uncaught", "crash", "hang", "memory", "nan", "changed")
IMAGE_FORMATS = ("jpeg", "png", "bmp", "tiff", "webp", "gif", "pgm")
EXT = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "tiff": ".tif", "webp": ".webp", "gif": ".gif",
       "pgm": ".pgm", "ppm": ".ppm"}
GiB = 1 << 30
PROB_TOL = 1e-5  # probabilities of the same face by the same model, alone or in a batch


def astronaut_path() -> Path:
    """The public-domain photo shipped with whichever mimika is on the path."""
    import mimika
    return Path(mimika.__file__).parent / "samples" / "astronaut.jpg"


# ------------------------------------------------------------------------------------------
# good images

@dataclass
class Sample:
    name: str
    fmt: str
    data: bytes | None
    desc: str = ""
    make: object = None  # builds (data, desc) when the case runs (big model files are made one at a time)

    @property
    def ext(self) -> str:
        return EXT.get(self.fmt, "." + self.fmt)


def source_bgr() -> np.ndarray:
    """A 192x192 colour crop of the astronaut photo around her face (the face is about 100 px)."""
    import cv2
    img = cv2.imread(str(astronaut_path()))
    return np.ascontiguousarray(img[24:216, 128:320])


def _cv_encode(ext: str, img: np.ndarray, params=()) -> bytes:
    import cv2
    ok, buf = cv2.imencode(ext, img, list(params))
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {ext}")
    return buf.tobytes()


def _pil_encode(img_rgb_or_gray: np.ndarray, fmt: str, mode: str | None = None, **kw) -> bytes:
    from PIL import Image
    im = Image.fromarray(img_rgb_or_gray)
    if mode:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def good_images() -> list[Sample]:
    """The astronaut's face in every format and layout mimika should read: 8/16-bit,
    gray/colour/alpha, palette, float TIFF, progressive and EXIF-rotated JPEG, lossless WebP."""
    import cv2
    from PIL import Image
    bgr = source_bgr()
    rgb = bgr[:, :, ::-1].copy()
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    bgra = np.dstack([bgr, np.full(gray.shape, 255, np.uint8)])
    bgra[:8, :8, 3] = 0
    c16 = bgr.astype(np.uint16) * 257
    g16 = gray.astype(np.uint16) * 257
    out = [
        Sample("jpeg_colour", "jpeg", _cv_encode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])),
        Sample("jpeg_gray", "jpeg", _cv_encode(".jpg", gray)),
        Sample("jpeg_progressive", "jpeg", _cv_encode(".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])),
        Sample("jpeg_cmyk", "jpeg", _pil_encode(rgb, "JPEG", mode="CMYK")),
        Sample("png_colour", "png", _cv_encode(".png", bgr)),
        Sample("png_gray", "png", _cv_encode(".png", gray)),
        Sample("png_rgba", "png", _cv_encode(".png", bgra)),
        Sample("png_colour16", "png", _cv_encode(".png", c16)),
        Sample("png_gray16", "png", _cv_encode(".png", g16)),
        Sample("png_palette", "png", _pil_encode(rgb, "PNG", mode="P")),
        Sample("png_gray_alpha", "png", _pil_encode(gray, "PNG", mode="LA")),
        Sample("png_interlaced_gray", "png", _pil_encode(gray, "PNG", optimize=False)),
        Sample("bmp_colour", "bmp", _cv_encode(".bmp", bgr)),
        Sample("bmp_gray", "bmp", _cv_encode(".bmp", gray)),
        Sample("bmp_bgra", "bmp", _cv_encode(".bmp", bgra)),
        Sample("tiff_colour_lzw", "tiff", _cv_encode(".tif", bgr)),
        Sample("tiff_gray16", "tiff", _cv_encode(".tif", g16)),
        Sample("tiff_float32", "tiff", _cv_encode(".tif", gray.astype(np.float32) / 255)),
        Sample("tiff_raw_rgb", "tiff", _pil_encode(rgb, "TIFF")),
        Sample("tiff_rgba", "tiff", _cv_encode(".tif", bgra)),
        Sample("webp_lossy", "webp", _cv_encode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, 90])),
        Sample("webp_lossless", "webp", _cv_encode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, 101])),
        Sample("webp_alpha", "webp", _cv_encode(".webp", bgra)),
        Sample("gif_palette", "gif", _pil_encode(rgb, "GIF")),
        Sample("gif_gray", "gif", _pil_encode(gray, "GIF")),
        Sample("pgm_8bit", "pgm", _cv_encode(".pgm", gray)),
        Sample("pgm_16bit", "pgm", _cv_encode(".pgm", g16)),
        Sample("pgm_ascii", "pgm", _cv_encode(".pgm", gray, [cv2.IMWRITE_PXM_BINARY, 0])),
        Sample("ppm_colour", "pgm", _cv_encode(".ppm", bgr)),
    ]
    for orientation, turn in ((6, Image.Transpose.ROTATE_90), (3, Image.Transpose.ROTATE_180),
                              (8, Image.Transpose.ROTATE_270)):
        im = Image.fromarray(rgb).transpose(turn)  # stored turned; EXIF says how to turn it back
        exif = Image.Exif()
        exif[0x0112] = orientation
        buf = io.BytesIO()
        im.save(buf, format="JPEG", exif=exif, quality=90)
        out.append(Sample(f"jpeg_exif_orientation{orientation}", "jpeg", buf.getvalue()))
    for s in out:
        s.desc = "good"
    return out


# ------------------------------------------------------------------------------------------
# format helpers: PNG chunks, JPEG segments, TIFF IFDs

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_chunks(data: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, type) of each chunk of a PNG, as far as it parses."""
    out, i = [], 8
    while i + 12 <= len(data):
        n = struct.unpack(">I", data[i:i + 4])[0]
        end = i + 12 + n
        if end > len(data):
            break
        out.append((i, end, data[i + 4:i + 8]))
        i = end
    return out


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(start, end, marker) of each marker segment of a JPEG up to the first scan."""
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        n = struct.unpack(">H", data[i + 2:i + 4])[0]
        out.append((i, i + 2 + n, marker))
        if marker == 0xDA:
            break
        i += 2 + n
    return out


def tiff_entries(data: bytes) -> tuple[str, list[tuple[int, int, int, int]]]:
    """Byte order and (offset, tag, type, count) of the entries of a TIFF's first IFD."""
    if data[:2] not in (b"II", b"MM") or len(data) < 8:
        return "<", []
    bo = "<" if data[:2] == b"II" else ">"
    ifd = struct.unpack(bo + "I", data[4:8])[0]
    if ifd + 2 > len(data):
        return bo, []
    n = struct.unpack(bo + "H", data[ifd:ifd + 2])[0]
    out = []
    for k in range(min(n, 200)):
        off = ifd + 2 + 12 * k
        if off + 12 > len(data):
            break
        tag, typ, count = struct.unpack(bo + "HHI", data[off:off + 8])
        out.append((off, tag, typ, count))
    return bo, out


# ------------------------------------------------------------------------------------------
# byte mutators: each takes (data, rng, fmt) and returns (new data, what it did)

INTERESTING32 = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 30000, 60000,
                 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]


def _pos(n: int, rng) -> int:
    """A position, biased to the first 512 bytes where the headers are."""
    if n <= 1:
        return 0
    return int(rng.integers(0, min(n, 512))) if rng.random() < 0.5 else int(rng.integers(0, n))


def m_flip_bits(data, rng, fmt):
    b = bytearray(data)
    k = int(rng.integers(1, 17))
    for _ in range(k):
        p = _pos(len(b), rng)
        b[p] ^= 1 << int(rng.integers(0, 8))
    return bytes(b), f"flip {k} bits"


def m_random_bytes(data, rng, fmt):
    b = bytearray(data)
    p = _pos(len(b), rng)
    n = int(rng.integers(1, 33))
    b[p:p + n] = rng.integers(0, 256, min(n, len(b) - p), dtype=np.uint8).tobytes()
    return bytes(b), f"random bytes at {p}"


def m_special_value(data, rng, fmt):
    b = bytearray(data)
    p = _pos(max(len(b) - 4, 1), rng)
    v = INTERESTING32[int(rng.integers(len(INTERESTING32)))]
    b[p:p + 4] = struct.pack("<I" if rng.random() < 0.5 else ">I", v)[:max(0, len(b) - p)]
    return bytes(b), f"value {v:#x} at {p}"


def m_truncate(data, rng, fmt):
    n = int(rng.integers(0, min(len(data), 300))) if rng.random() < 0.3 else int(rng.integers(0, len(data)))
    return data[:n], f"truncate to {n} bytes"


def m_insert(data, rng, fmt):
    p = _pos(len(data), rng)
    ins = rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    return data[:p] + ins + data[p:], f"insert {len(ins)} bytes at {p}"


def m_delete(data, rng, fmt):
    p = _pos(len(data), rng)
    n = int(rng.integers(1, 65))
    return data[:p] + data[p + n:], f"delete {n} bytes at {p}"


def m_duplicate_range(data, rng, fmt):
    p = _pos(len(data), rng)
    n = int(rng.integers(1, 2049))
    q = int(rng.integers(0, len(data) + 1))
    return data[:q] + data[p:p + n] + data[q:], f"copy {n} bytes from {p} to {q}"


def m_duplicate_chunk(data, rng, fmt):
    """Duplicate a whole PNG chunk or JPEG segment (a second IHDR, SOF, DQT ...)."""
    if fmt == "png":
        parts = png_chunks(data)
    elif fmt == "jpeg":
        parts = jpeg_segments(data)
    else:
        parts = []
    if not parts:
        return m_duplicate_range(data, rng, fmt)
    s, e, kind = parts[int(rng.integers(len(parts)))]
    times = int(rng.integers(1, 4))
    return data[:e] + data[s:e] * times + data[e:], f"duplicate chunk {kind!r} x{times}"


def m_header(data, rng, fmt):
    """Rewrite a header field (dimensions, depth, channels, offsets) with a hostile value."""
    b = bytearray(data)
    v32 = INTERESTING32[int(rng.integers(len(INTERESTING32)))]
    v16 = v32 & 0xFFFF
    try:
        if fmt == "png" and len(b) > 33:
            field_ = ["width", "height", "depth", "colour", "compression", "filter", "interlace"][int(rng.integers(7))]
            ihdr = bytearray(b[16:29])
            if field_ in ("width", "height"):
                struct.pack_into(">I", ihdr, 0 if field_ == "width" else 4, v32)
            else:
                ihdr[{"depth": 8, "colour": 9, "compression": 10, "filter": 11, "interlace": 12}[field_]] = \
                    int(rng.choice([0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 255]))
            b[16:29] = ihdr
            if rng.random() < 0.8:  # a valid CRC, so the decoder believes the header
                b[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
            return bytes(b), f"PNG IHDR {field_} = {v32}"
        if fmt == "jpeg":
            segs = [s for s in jpeg_segments(data) if 0xC0 <= s[2] <= 0xCF and s[2] not in (0xC4, 0xC8, 0xCC)]
            if segs:
                s = segs[0][0]
                field_ = ["precision", "height", "width", "components"][int(rng.integers(4))]
                if field_ == "precision":
                    b[s + 4] = int(rng.choice([0, 1, 8, 12, 16, 255]))
                elif field_ in ("height", "width"):
                    struct.pack_into(">H", b, s + 5 if field_ == "height" else s + 7, v16)
                else:
                    b[s + 9] = int(rng.choice([0, 1, 2, 3, 4, 5, 255]))
                return bytes(b), f"JPEG SOF {field_} rewritten"
        if fmt == "bmp" and len(b) >= 54:
            field_, off, kind = [("file size", 2, "I"), ("pixel offset", 10, "I"), ("header size", 14, "I"),
                                 ("width", 18, "i"), ("height", 22, "i"), ("planes", 26, "H"),
                                 ("bits per pixel", 28, "H"), ("compression", 30, "I"),
                                 ("palette size", 46, "I")][int(rng.integers(9))]
            v = v16 if kind == "H" else (v32 - (1 << 32) if kind == "i" and v32 >= 1 << 31 else v32)
            if field_ == "bits per pixel":
                v = int(rng.choice([0, 1, 2, 4, 8, 15, 16, 24, 32, 64, 0xFFFF]))
            struct.pack_into("<" + kind, b, off, v)
            return bytes(b), f"BMP {field_} = {v}"
        if fmt == "tiff":
            bo, entries = tiff_entries(data)
            if entries:
                off, tag, typ, count = entries[int(rng.integers(len(entries)))]
                if rng.random() < 0.2:
                    struct.pack_into(bo + "I", b, off + 4, v32)  # the count
                    return bytes(b), f"TIFF tag {tag} count = {v32}"
                if typ == 3:
                    struct.pack_into(bo + "H", b, off + 8, v16)
                else:
                    struct.pack_into(bo + "I", b, off + 8, v32)
                return bytes(b), f"TIFF tag {tag} value = {v32}"
        if fmt == "gif" and len(b) > 13:
            off = int(rng.choice([6, 8, 10]))
            if off == 10:
                b[10] = int(rng.integers(0, 256))
                return bytes(b), "GIF flags rewritten"
            struct.pack_into("<H", b, off, v16)
            return bytes(b), f"GIF screen {'width' if off == 6 else 'height'} = {v16}"
        if fmt == "webp" and len(b) > 30:
            choice = int(rng.integers(3))
            if choice == 0:
                struct.pack_into("<I", b, 4, v32)
                return bytes(b), f"WebP RIFF size = {v32}"
            if choice == 1:
                struct.pack_into("<I", b, 16, v32)
                return bytes(b), f"WebP chunk size = {v32}"
            struct.pack_into("<H", b, 26 if b[12:16] == b"VP8 " else 21, v16)
            return bytes(b), f"WebP frame size field = {v16}"
        if fmt in ("pgm", "ppm"):
            m = re.match(rb"(P[1-7])(\s+)(\S+)(\s+)(\S+)(\s+)(\S+)(\s)", data)
            if m:
                parts = list(m.groups())
                k = int(rng.choice([2, 4, 6]))
                parts[k] = str(rng.choice(["0", "-1", "65536", "60000", "99999999999", "abc", "1e9"])).encode()
                return b"".join(parts) + data[m.end():], f"PNM header field {k // 2} = {parts[k].decode()}"
    except (struct.error, IndexError, ValueError):
        pass
    return m_special_value(data, rng, fmt)


MUTATORS = [m_flip_bits, m_random_bytes, m_special_value, m_truncate, m_insert, m_delete,
            m_duplicate_range, m_duplicate_chunk, m_header, m_header]


def mutate(sample: Sample, rng) -> tuple[bytes, str]:
    """1 to 3 random mutations of a good file."""
    data, what = sample.data, []
    for _ in range(int(rng.integers(1, 4))):
        fn = MUTATORS[int(rng.integers(len(MUTATORS)))]
        data, desc = fn(data, rng, sample.fmt)
        what.append(desc)
        if not data:
            break
    return data, "; ".join(what)


def mutated_images(goods: list[Sample], n: int, rng) -> list[Sample]:
    """n mutated files, the formats in turn so each gets its share."""
    by_fmt = {f: [g for g in goods if g.fmt == f] for f in IMAGE_FORMATS}
    out = []
    for i in range(n):
        fmt = IMAGE_FORMATS[i % len(IMAGE_FORMATS)]
        g = by_fmt[fmt][int(rng.integers(len(by_fmt[fmt])))]
        data, desc = mutate(g, rng)
        out.append(Sample(f"mut{i:05d}_{g.name}", g.fmt, data, desc))
    return out


# ------------------------------------------------------------------------------------------
# hostile crafted images: bombs, odd depths, zero sizes, formats sniffed by content

def _zlib_zeros(n: int, block: int = 1 << 20) -> bytes:
    """A zlib stream of n zero bytes, built from one compressed block repeated (fast for GBs)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    full, rest = divmod(n, block)
    unit = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH) if full else b""
    tail = c.compress(bytes(rest)) + c.flush() if rest else c.flush()
    adler = ((n % 65521) << 16) | 1  # Adler-32 of n zeros
    return b"\x78\xda" + unit * full + tail + struct.pack(">I", adler)


def png_bytes(width: int, height: int, depth: int = 8, colour: int = 0, idat: bytes | None = None,
              extra: list[bytes] = ()) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(b"\x00" * 8)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + b"".join(extra) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def png_chunk_claiming(data: bytes, kind: bytes, length: int, nth: int = 0) -> bytes:
    """The PNG `data` with the length of its nth chunk of `kind` rewritten to `length`."""
    starts = [s for s, _, k in png_chunks(data) if k == kind]
    b = bytearray(data)
    struct.pack_into(">I", b, starts[nth], length)
    return bytes(b)


def png_bomb(width: int, height: int, depth: int, colour: int) -> bytes:
    """A PNG whose IDAT really inflates to the whole width x height (rows of zeros)."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    row = 1 + (width * channels * depth + 7) // 8
    return png_bytes(width, height, depth, colour, _zlib_zeros(row * height))


def jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    b = bytearray(data)
    for s, _, marker in jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            struct.pack_into(">HH", b, s + 5, height, width)
    return bytes(b)


def tiff_bytes(width: int, height: int, pixels: bytes = b"\x00" * 64, bits: int = 8, fmt: int = 1,
               samples: int = 1, next_ifd_self: bool = False) -> bytes:
    """A little-endian TIFF with one strip; header fields as given (may lie about the data)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, bits), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, 0), (277, 3, 1, samples), (278, 4, 1, height), (279, 4, 1, len(pixels)),
               (339, 3, 1, fmt)]
    ifd_off = 8
    data_off = ifd_off + 2 + 12 * len(entries) + 4
    body = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        value = data_off if tag == 273 else value
        body += struct.pack("<HHI", tag, typ, count) + (struct.pack("<HH", value, 0) if typ == 3
                                                         else struct.pack("<I", value))
    body += struct.pack("<I", ifd_off if next_ifd_self else 0)
    return b"II*\x00" + struct.pack("<I", ifd_off) + body + pixels


def bmp_bytes(width: int, height: int, bpp: int = 24, pixels: bytes = b"\x00" * 64) -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(header) + len(pixels), 0, 0, 14 + len(header)) + header + pixels


def hostile_images(big: bool = True) -> list[Sample]:
    """Crafted files: decompression bombs (headers written directly), odd depths, NaN floats,
    zero sizes, multi-page, formats OpenCV sniffs by content. `big` adds the bombs that really
    inflate to gigabytes (bench only)."""
    import cv2
    from PIL import Image
    bgr = source_bgr()
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    small_jpeg = _cv_encode(".jpg", gray)
    small_prog = _cv_encode(".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    nan = np.full((32, 32), np.nan, np.float32)
    half_nan = gray.astype(np.float32) / 255
    half_nan[:, :96] = np.nan
    noise_png = _cv_encode(".png", np.random.default_rng(0).integers(0, 256, (420, 420, 3), dtype=np.uint8))
    out = [
        Sample("png_claims_60000x60000", "png", png_bytes(60000, 60000), "69-byte PNG claiming 60000x60000"),
        Sample("png_claims_20000x20000_rgba16", "png", png_bytes(20000, 20000, 16, 6),
               "tiny PNG claiming 20000x20000 16-bit RGBA"),
        Sample("png_bomb_30000x30000_1bit", "png", png_bomb(30000, 30000, 1, 0),
               "PNG that inflates to 30000x30000 (1-bit gray, 112 MB compressed to ~110 kB)"),
        Sample("png_idat_claims_2gb", "png", png_chunk_claiming(noise_png, b"IDAT", 0x7FFFFFFF),
               "0.5 MB PNG whose IDAT chunk claims 2 GB"),
        Sample("png_second_idat_claims_4gb", "png", png_chunk_claiming(noise_png, b"IDAT", 0xFFFFFFF0, nth=1),
               "0.5 MB PNG whose second IDAT chunk claims 4 GB"),
        Sample("png_width_0", "png", png_bytes(0, 100), "PNG IHDR width 0"),
        Sample("png_1x1", "png", _cv_encode(".png", gray[:1, :1]), "1x1 image"),
        Sample("png_1x5000", "png", _cv_encode(".png", np.zeros((1, 5000), np.uint8)), "1x5000 strip"),
        Sample("png_ztxt_bomb", "png", png_bytes(8, 8, extra=[png_chunk(b"zTXt", b"k\x00\x00" + _zlib_zeros(64 << 20))]),
               "zTXt chunk inflating to 64 MB"),
        Sample("png_big_text_chunk", "png", _cv_encode(".png", gray)[:33] + png_chunk(b"tEXt", b"k\x00" + b"a" * (8 << 20))
               + _cv_encode(".png", gray)[33:], "8 MB tEXt chunk before the pixels"),
        Sample("jpeg_claims_30000x30000", "jpeg", jpeg_with_size(small_jpeg, 30000, 30000),
               "JPEG whose SOF claims 30000x30000"),
        Sample("jpeg_progressive_claims_30000x30000", "jpeg", jpeg_with_size(small_prog, 30000, 30000),
               "progressive JPEG claiming 30000x30000"),
        Sample("jpeg_claims_65500x65500", "jpeg", jpeg_with_size(small_jpeg, 65500, 65500), "JPEG claiming 65500x65500"),
        Sample("jpeg_width_0", "jpeg", jpeg_with_size(small_jpeg, 0, 0), "JPEG SOF 0x0"),
        Sample("jpeg_header_only", "jpeg", small_jpeg[:jpeg_segments(small_jpeg)[-1][1]], "JPEG cut after its headers"),
        Sample("bmp_claims_30000x30000", "bmp", bmp_bytes(30000, 30000), "BMP header claiming 30000x30000"),
        Sample("bmp_claims_negative", "bmp", bmp_bytes(-2147483648, -2147483648), "BMP with INT_MIN sizes"),
        Sample("bmp_0x0", "bmp", bmp_bytes(0, 0), "BMP 0x0"),
        Sample("tiff_claims_30000x30000", "tiff", tiff_bytes(30000, 30000), "TIFF claiming 30000x30000"),
        Sample("tiff_ifd_loop", "tiff", tiff_bytes(8, 8, next_ifd_self=True), "TIFF whose next IFD is itself"),
        Sample("tiff_0x0", "tiff", tiff_bytes(0, 0), "TIFF 0x0"),
        Sample("tiff_float_nan", "tiff", _cv_encode(".tif", nan), "float32 TIFF, all NaN"),
        Sample("tiff_float_half_nan", "tiff", _cv_encode(".tif", half_nan), "float32 TIFF, face half NaN"),
        Sample("tiff_float_inf", "tiff", _cv_encode(".tif", np.full((32, 32), np.inf, np.float32)), "float TIFF +inf"),
        Sample("tiff_float_negative", "tiff", _cv_encode(".tif", -gray.astype(np.float32)), "float TIFF, negative"),
        Sample("tiff_float_huge", "tiff", _cv_encode(".tif", np.full((32, 32), 1e38, np.float32)), "float TIFF 1e38"),
        Sample("tiff_float64", "tiff", _cv_encode(".tif", gray.astype(np.float64) / 255), "float64 TIFF"),
        Sample("tiff_multipage", "tiff", _pil_encode(gray, "TIFF", save_all=True,
                                                     append_images=[Image.fromarray(gray[::-1])] * 2), "3-page TIFF"),
        Sample("tiff_2_channels", "tiff", tiff_bytes(8, 8, bytes(128), samples=2), "2-channel TIFF"),
        Sample("tiff_5_channels", "tiff", tiff_bytes(4, 4, bytes(80), samples=5), "5-channel TIFF"),
        Sample("tiff_1bit", "tiff", _pil_encode(gray, "TIFF", mode="1"), "1-bit TIFF"),
        Sample("tiff_int32", "tiff", tiff_bytes(4, 4, bytes(64), bits=32, fmt=2), "signed 32-bit TIFF"),
        Sample("gif_claims_65535x65535", "gif", b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00"
               + b",\x00\x00\x00\x00" + struct.pack("<HH", 65535, 65535) + b"\x00\x02\x02\x44\x01\x00;",
               "GIF claiming 65535x65535"),
        Sample("gif_0x0", "gif", b"GIF89a\x00\x00\x00\x00\x00\x00\x00;", "GIF 0x0"),
        Sample("webp_claims_16383x16383", "webp",
               b"RIFF" + struct.pack("<I", 26) + b"WEBPVP8L" + struct.pack("<I", 14) + b"\x2f"
               + struct.pack("<I", (16382) | (16382 << 14)) + bytes(9), "lossless WebP claiming 16383x16383"),
        Sample("pgm_claims_60000x60000", "pgm", b"P5\n60000 60000\n255\n" + bytes(64), "PGM claiming 60000x60000"),
        Sample("pgm_claims_30000x30000_16bit", "pgm", b"P5\n30000 30000\n65535\n" + bytes(64), "16-bit PGM 30000x30000"),
        Sample("pgm_0x0", "pgm", b"P5\n0 0\n255\n", "PGM 0x0"),
        Sample("pgm_maxval_0", "pgm", b"P5\n4 4\n0\n" + bytes(16), "PGM maxval 0"),
        Sample("pgm_negative", "pgm", b"P5\n-4 -4\n255\n" + bytes(16), "PGM negative size"),
        Sample("pfm_nan_named_pgm", "pgm", b"Pf\n4 4\n-1.0\n" + np.full(16, np.nan, "<f4").tobytes(),
               "PFM float image full of NaN, named .pgm"),
        Sample("hdr_claims_30000x30000_named_jpg", "jpeg",
               b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n" + bytes(64), "Radiance HDR header named .jpg"),
        Sample("sunraster_claims_30000x30000_named_png", "png",
               struct.pack(">8I", 0x59A66A95, 30000, 30000, 8, 64, 1, 0, 0) + bytes(64), "Sun raster named .png"),
        Sample("empty_jpg", "jpeg", b"", "empty file"),
        Sample("text_named_png", "png", b"hello, this is not an image\n", "text named .png"),
        Sample("html_named_jpg", "jpeg", b"<html><body>not an image</body></html>\n", "HTML named .jpg"),
        Sample("gzip_of_png_named_png", "png", gzip.compress(_cv_encode(".png", gray)), "gzip of a PNG named .png"),
        Sample("zip_named_webp", "webp", _zip_of({"a.txt": b"x"}), "zip archive named .webp"),
        Sample("png_signature_only", "png", b"\x89PNG\r\n\x1a\n", "PNG signature only"),
    ]
    if big:
        out += [
            Sample("png_bomb_16000x16000_rgba16", "png", png_bomb(16000, 16000, 16, 6),
                   "PNG that inflates to 16000x16000 16-bit RGBA (2 GB)"),
            Sample("png_bomb_20000x20000_rgb", "png", png_bomb(20000, 20000, 8, 2),
                   "PNG that inflates to 20000x20000 RGB (1.2 GB)"),
        ]
    return out


def _zip_of(entries: dict[str, bytes], method=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


def make_special_files(folder: Path) -> list[tuple[Path, str]]:
    """Files that are not regular files but are named like images."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    fifo = folder / "fifo.jpg"
    os.mkfifo(fifo)
    out.append((fifo, "FIFO named .jpg (nobody writes to it)"))
    d = folder / "folder.jpg"
    d.mkdir()
    out.append((d, "directory named .jpg"))
    a, b = folder / "loop_a.png", folder / "loop_b.png"
    os.symlink(b.name, a)
    os.symlink(a.name, b)
    out.append((a, "symlink loop"))
    dangling = folder / "dangling.png"
    os.symlink("does-not-exist.png", dangling)
    out.append((dangling, "dangling symlink"))
    for dev, name in (("/dev/zero", "zero.png"), ("/dev/urandom", "urandom.jpg"), ("/dev/null", "null.bmp")):
        os.symlink(dev, folder / name)
        out.append((folder / name, f"{dev} symlinked as {name}"))
    sock_path = folder / "socket.png"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock_path))
    s.close()
    out.append((sock_path, "Unix socket named .png"))
    return out


def write_samples(samples: list[Sample], folder: Path) -> list[tuple[Path, Sample]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for s in samples:
        p = folder / f"{s.name}{s.ext}"
        p.write_bytes(s.data)
        out.append((p, s))
    return out


# ------------------------------------------------------------------------------------------
# model files: .npz (zip level and content level) and .onnx (protobuf level and bytes)

def shipped_model_files() -> dict[str, Path]:
    """name.suffix -> path of the shipped model files (of the mimika on the path)."""
    import mimika
    out = {}
    for name, files in mimika.shipped_models().items():
        for suffix, path in files.items():
            out[f"{name}{suffix}"] = Path(path)
    return out


def _zip_entries(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def _npy_with_header(header: str, payload: bytes) -> bytes:
    h = header.encode("latin1")
    h += b" " * ((64 - (10 + len(h) + 1) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + payload


ANY_FILE_MUTATIONS = ("truncate", "flip", "insert", "garbage")


def any_file_mutation(data: bytes, rng, kind: str) -> tuple[bytes, str]:
    """A mutation that knows nothing of the format (one of ANY_FILE_MUTATIONS), and what it did."""
    b = bytearray(data)
    if kind == "truncate":
        n = int(rng.integers(0, len(b)))
        return bytes(b[:n]), f"truncated to {n} bytes"
    if kind == "flip":
        k = int(rng.integers(1, 9))
        for _ in range(k):
            b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        return bytes(b), f"{k} bits flipped anywhere"
    if kind == "insert":
        p = int(rng.integers(len(b)))
        return bytes(b[:p]) + rng.integers(0, 256, 16, dtype=np.uint8).tobytes() + bytes(b[p:]), \
            f"16 random bytes inserted at {p}"
    if kind == "garbage":
        return rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "4 kB of random bytes"
    raise KeyError(kind)


def _local_headers(data: bytes) -> list[int]:
    out, i = [], 0
    while True:
        i = data.find(b"PK\x03\x04", i)
        if i < 0:
            return out
        out.append(i)
        i += 4


def _central_headers(data: bytes) -> list[int]:
    out, i = [], 0
    while True:
        i = data.find(b"PK\x01\x02", i)
        if i < 0:
            return out
        out.append(i)
        i += 4


def with_bomb_entry(archive: bytes, n: int, name: bytes = b"param/extra.npy") -> bytes:
    """The zip `archive` with one more entry, a float32 .npy of n bytes of zeros deflated (about
    n / 1000 bytes in the file; its header, sizes and CRC are right, so only its size gives it away)."""
    npy_header = _npy_with_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({n // 4},), }}", b"")
    crc = zlib.crc32(npy_header)
    zeros = bytes(1 << 20)
    for _ in range(n >> 20):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(bytes(n % (1 << 20)), crc) & 0xFFFFFFFF
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = c.compress(npy_header) + c.flush(zlib.Z_FULL_FLUSH) + _zlib_zeros(n)[2:-4]
    eocd = archive.rfind(b"PK\x05\x06")
    count, cd_size, cd_off = struct.unpack("<HII", archive[eocd + 10:eocd + 20])
    usize = len(npy_header) + n
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(stream), usize,
                        len(name), 0) + name + stream
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(stream),
                          usize, len(name), 0, 0, 0, 0, 0, cd_off) + name
    return (archive[:cd_off] + local + archive[cd_off:cd_off + cd_size] + central
            + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count + 1, count + 1, cd_size + len(central),
                          cd_off + len(local), 0))


def npz_mutations(data: bytes, rng) -> dict[str, callable]:
    """Named mutations of an .npz model file; each returns (bytes, description)."""
    entries = _zip_entries(data)
    names = [n for n, _ in entries]
    meta_i = names.index("__meta__.npy")
    meta = json.loads(str(np.load(io.BytesIO(entries[meta_i][1]), allow_pickle=False)))
    weight_is = [i for i, n in enumerate(names) if n.startswith("param/")
                 and np.load(io.BytesIO(entries[i][1])).dtype.kind == "f"
                 and np.load(io.BytesIO(entries[i][1])).size > 1]

    def rebuild(new_entries, method=zipfile.ZIP_STORED):
        return _zip_of(dict(new_entries), method)

    def with_meta(doc) -> bytes:
        e = list(entries)
        text = doc if isinstance(doc, str) else json.dumps(doc)
        e[meta_i] = ("__meta__.npy", _npy(np.array(text)))
        return rebuild(e)

    def model_cfg(**changes):
        doc = json.loads(json.dumps(meta))
        doc["model"].update(changes)
        return doc

    def crop_cfg(**changes):
        doc = json.loads(json.dumps(meta))
        doc["model"]["crop"].update(changes)
        return doc

    def weight(fn, what):
        def go():
            e = list(entries)
            i = weight_is[int(rng.integers(len(weight_is)))]
            arr = np.load(io.BytesIO(e[i][1])).copy()
            arr = fn(arr)
            e[i] = (e[i][0], _npy(arr))
            return rebuild(e), f"{what} in {e[i][0]}"
        return go

    def one_value(value):
        def fn(a):
            a.flat[int(rng.integers(a.size))] = value
            return a
        return fn

    def raw(kind):
        def go():
            if kind in ANY_FILE_MUTATIONS:
                return any_file_mutation(data, rng, kind)
            b = bytearray(data)
            if kind == "flip_meta":
                start = data.find(b"mimika")
                p = start + int(rng.integers(0, 200))
                b[p] ^= 1 << int(rng.integers(8))
                return bytes(b), "a bit flipped in the JSON metadata (CRC now wrong)"
            if kind == "encrypted":
                for off in _local_headers(data):
                    b[off + 6] |= 1
                for off in _central_headers(data):
                    b[off + 8] |= 1
                return bytes(b), "encrypted flag set on every entry"
            if kind.startswith("method"):
                m = int(kind[6:])
                for off in _local_headers(data):
                    struct.pack_into("<H", b, off + 8, m)
                for off in _central_headers(data):
                    struct.pack_into("<H", b, off + 10, m)
                return bytes(b), f"compression method {m} on every entry"
            if kind == "cd_count":
                eocd = data.rfind(b"PK\x05\x06")
                struct.pack_into("<HH", b, eocd + 8, 0xFFFF, 0xFFFF)
                return bytes(b), "end record claims 65535 entries"
            if kind == "cd_offset":
                eocd = data.rfind(b"PK\x05\x06")
                struct.pack_into("<I", b, eocd + 16, 0xFFFFFFF0)
                return bytes(b), "central directory offset past the end"
            if kind == "size_lie":
                cds = _central_headers(data)
                off = cds[int(rng.integers(len(cds)))]
                struct.pack_into("<II", b, off + 20, 0xFFFFFFFF, 0xFFFFFFFF)
                return bytes(b), "an entry claims 4 GB"
            if kind == "not_zip":
                return b"\x93NUMPY" + bytes(b[6:]), "zip signature replaced by an .npy one"
            raise KeyError(kind)
        return go

    def absurd_shape(shape, descr="<f4"):
        def go():
            e = list(entries)
            i = weight_is[int(rng.integers(len(weight_is)))]
            payload = e[i][1][np.lib.format.MAGIC_LEN + 2 + struct.unpack("<H", e[i][1][8:10])[0]:]
            e[i] = (e[i][0], _npy_with_header(
                f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}", payload))
            return rebuild(e), f"{e[i][0]} header says dtype {descr} shape {shape}"
        return go

    def nested(depth, kind="list"):
        def go():
            doc = json.loads(json.dumps(meta))
            inner = ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "0" + "}" * depth)
            text = json.dumps(doc)[:-1] + f', "deep": {inner}}}'
            return with_meta(text), f"JSON nested {depth} deep ({kind})"
        return go

    def meta_doc(doc, what):
        return lambda: (with_meta(doc), what)

    def drop_entry():
        e = list(entries)
        i = weight_is[int(rng.integers(len(weight_is)))]
        name = e[i][0]
        del e[i]
        return rebuild(e), f"{name} removed"

    def swap_entries():
        e = list(entries)
        same = {}
        for i in weight_is:
            same.setdefault(np.load(io.BytesIO(e[i][1])).shape, []).append(i)
        pairs = [v for v in same.values() if len(v) > 1]
        if not pairs:
            i = weight_is[0]
            e[i] = (e[i][0], _npy(np.load(io.BytesIO(e[i][1]))[::-1].copy()))
            return rebuild(e), f"{e[i][0]} reversed"
        i, j = pairs[int(rng.integers(len(pairs)))][:2]
        e[i], e[j] = (e[i][0], e[j][1]), (e[j][0], e[i][1])
        return rebuild(e), f"{e[i][0]} and {e[j][0]} swapped"

    def transpose_weight():
        e = list(entries)
        cands = [i for i in weight_is if np.load(io.BytesIO(e[i][1])).ndim >= 2]
        i = cands[int(rng.integers(len(cands)))]
        arr = np.load(io.BytesIO(e[i][1]))
        e[i] = (e[i][0], _npy(np.ascontiguousarray(arr.T)))
        return rebuild(e), f"{e[i][0]} transposed"

    def weight_dtype(dtype):
        def go():
            e = list(entries)
            i = weight_is[int(rng.integers(len(weight_is)))]
            arr = np.load(io.BytesIO(e[i][1]))
            e[i] = (e[i][0], _npy(arr.astype(dtype)))
            return rebuild(e), f"{e[i][0]} stored as {dtype}"
        return go

    def deflated():
        return rebuild(entries, zipfile.ZIP_DEFLATED), "entries deflate-compressed (harmless)"

    def zip_bomb(n):
        return lambda: (with_bomb_entry(rebuild(entries), n), f"extra entry inflating to {n >> 20} MB")

    def unchecked(changed: bool):
        def go():
            doc = {k: v for k, v in meta.items() if k != "checksum"}
            doc["format_version"] = 1
            e = list(entries)
            what = "format version 1, no checksum"
            if changed:
                i = weight_is[int(rng.integers(len(weight_is)))]
                arr = np.load(io.BytesIO(e[i][1])).copy()
                arr.flat[int(rng.integers(arr.size))] += arr.dtype.type(0.5)
                e[i] = (e[i][0], _npy(arr))
                what += f", a weight of {e[i][0]} changed"
            e[meta_i] = ("__meta__.npy", _npy(np.array(json.dumps(doc))))
            return rebuild(e), what
        return go

    nan, inf = float("nan"), float("inf")
    return {
        "truncate": raw("truncate"), "flip_anywhere": raw("flip"), "flip_meta": raw("flip_meta"),
        "encrypted_flag": raw("encrypted"), "method_1_shrink": raw("method1"), "method_99_aes": raw("method99"),
        "method_14_lzma": raw("method14"), "method_12_bzip2": raw("method12"), "method_8_on_stored": raw("method8"),
        "cd_count": raw("cd_count"), "cd_offset": raw("cd_offset"), "entry_size_lie": raw("size_lie"),
        "not_zip": raw("not_zip"),
        "json_nested_list": nested(int(rng.choice([2000, 20000, 200000]))),
        "json_nested_dict": nested(int(rng.choice([2000, 20000, 200000])), "dict"),
        "json_invalid": meta_doc('{"format": "mimika-model", ', "truncated JSON"),
        "json_list": meta_doc([1, 2, 3], "JSON metadata is a list"),
        "json_string": meta_doc("just text", "JSON metadata is a bare string"),
        "json_no_model": meta_doc({k: v for k, v in meta.items() if k != "model"}, "no 'model' key"),
        "format_version_str": meta_doc({**meta, "format_version": "1"}, "format_version is a string"),
        "format_version_99": meta_doc({**meta, "format_version": 99}, "format_version 99"),
        "format_tag_wrong": meta_doc({**meta, "format": "other"}, "format tag 'other'"),
        "arch_int": meta_doc(model_cfg(arch=42), "arch is 42"),
        "arch_unknown": meta_doc(model_cfg(arch="resnet9000"), "unknown arch"),
        "labels_int": meta_doc(model_cfg(labels=5), "labels is 5"),
        "labels_empty": meta_doc(model_cfg(labels=[]), "labels empty"),
        "labels_numbers": meta_doc(model_cfg(labels=list(range(len(meta["model"]["labels"])))), "labels are numbers"),
        "labels_one_more": meta_doc(model_cfg(labels=meta["model"]["labels"] + ["extra"]), "one label too many"),
        "labels_one_fewer": meta_doc(model_cfg(labels=meta["model"]["labels"][:-1]), "one label too few"),
        "labels_renamed": meta_doc(model_cfg(labels=meta["model"]["labels"][::-1]), "label order reversed"),
        "labels_duplicate": meta_doc(model_cfg(labels=[meta["model"]["labels"][0]] * len(meta["model"]["labels"])),
                                     "all labels the same"),
        "crop_string": meta_doc(model_cfg(crop="big"), "crop is a string"),
        "crop_width_str": meta_doc(crop_cfg(width="96"), "crop width '96' (string)"),
        "crop_width_0": meta_doc(crop_cfg(width=0), "crop width 0"),
        "crop_width_negative": meta_doc(crop_cfg(width=-48), "crop width -48"),
        "crop_huge": meta_doc(crop_cfg(width=10 ** 6, height=10 ** 6), "crop 10^6 x 10^6"),
        "crop_margin_nan": meta_doc(json.dumps(crop_cfg(margin=nan)), "crop margin NaN"),
        "crop_extra_key": meta_doc(crop_cfg(colour="blue"), "unknown crop key"),
        "mean_nan": meta_doc(json.dumps(model_cfg(mean=nan)), "normalization mean NaN"),
        "std_zero": meta_doc(model_cfg(std=0), "normalization std 0"),
        "std_inf": meta_doc(json.dumps(model_cfg(std=inf)), "normalization std inf"),
        "mean_str": meta_doc(model_cfg(mean="x"), "mean is 'x'"),
        "tta_bogus": meta_doc(model_cfg(tta="rotate"), "tta 'rotate'"),
        "tta_int": meta_doc(model_cfg(tta=5), "tta 5"),
        "info_string": meta_doc(model_cfg(info="none"), "info is a string (harmless)"),
        "shape_terabytes": absurd_shape("(1000000, 1000000)"),
        "shape_2_62": absurd_shape(f"({2 ** 62},)"),
        "shape_negative": absurd_shape("(-1,)"),
        "shape_object": absurd_shape("(3,)", "|O"),
        "shape_bigendian_f8": absurd_shape("(2, 2)", ">f8"),
        "shape_syntax": lambda: (rebuild([(n, _npy_with_header("{'descr': '<f4', 'shape': (((", d[-64:])
                                            if n == entries[weight_is[0]][0] else d) for n, d in entries]),
                                 "unparsable .npy header"),
        "weight_nan": weight(one_value(nan), "one weight NaN"),
        "weight_inf": weight(one_value(inf), "one weight inf"),
        "weight_big": weight(one_value(60000.0), "one weight 60000"),
        "weight_changed": weight(one_value(0.5), "one weight set to 0.5"),
        "weight_scaled": weight(lambda a: a * 2, "weights doubled"),
        "weight_zero": weight(np.zeros_like, "weights zeroed"),
        "weight_noise": weight(lambda a: (a + rng.normal(0, 0.05, a.shape)).astype(a.dtype), "weights + noise"),
        "weight_int": weight_dtype("int32"),
        "weight_f64": weight_dtype("float64"),
        "weights_swapped": swap_entries,
        "weight_transposed": transpose_weight,
        "weight_missing": drop_entry,
        "deflated": deflated,
        "zip_bomb_entry": zip_bomb(256 << 20),
        "zip_bomb_entry_1200mb": zip_bomb(1200 << 20),
        "unchecked_v1": unchecked(False),
        "unchecked_v1_weight_changed": unchecked(True),
    }


def varint(v: int) -> bytes:
    """A protobuf varint."""
    out = b""
    while True:
        out += bytes([(v & 0x7F) | (0x80 if v > 0x7F else 0)])
        v >>= 7
        if not v:
            return out


def onnx_mutations(data: bytes, rng) -> dict[str, callable]:
    """Named mutations of an .onnx prediction file: protobuf-level (via the `onnx` package) and raw."""
    import onnx
    from onnx import numpy_helper

    base = onnx.load_from_string(data)
    meta_key = next((p.key for p in base.metadata_props if p.key.startswith("mimika")), "mimika_config")
    meta_value = next((p.value for p in base.metadata_props if p.key == meta_key), "{}")
    float_inits = [i for i, t in enumerate(base.graph.initializer)
                   if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
                   and int(np.prod(t.dims)) > 1]
    all_inits = [i for i, t in enumerate(base.graph.initializer) if int(np.prod(t.dims)) > 1]

    def copy():
        m = onnx.ModelProto()
        m.CopyFrom(base)
        return m

    def ser(m) -> bytes:
        return m.SerializeToString()

    def init_fn(fn, what, floats=True):
        def go():
            m = copy()
            pool = float_inits if floats and float_inits else all_inits
            i = pool[int(rng.integers(len(pool)))]
            t = m.graph.initializer[i]
            arr = numpy_helper.to_array(t).copy()
            arr = fn(arr)
            new = numpy_helper.from_array(arr, t.name)
            t.CopyFrom(new)
            return ser(m), f"{what} in initializer {t.name}"
        return go

    def one(value):
        def fn(a):
            a.flat[int(rng.integers(a.size))] = value
            return a
        return fn

    def set_meta(value, what):
        def go():
            m = copy()
            for p in m.metadata_props:
                if p.key == meta_key:
                    p.value = value
            return ser(m), what
        return go

    def cfg(**changes):
        doc = json.loads(meta_value)
        doc.update(changes)
        return json.dumps(doc)

    def crop(**changes):
        doc = json.loads(meta_value)
        doc.setdefault("crop", {}).update(changes)
        return json.dumps(doc)

    def remove_meta():
        m = copy()
        keep = [p for p in m.metadata_props if p.key != meta_key]
        del m.metadata_props[:]
        m.metadata_props.extend(keep)
        return ser(m), "mimika metadata removed"

    def op_type(name):
        def go():
            m = copy()
            n = m.graph.node[int(rng.integers(len(m.graph.node)))]
            old = n.op_type
            n.op_type = name
            return ser(m), f"node op {old} -> {name}"
        return go

    def domain():
        m = copy()
        n = m.graph.node[int(rng.integers(len(m.graph.node)))]
        n.domain = "com.example.unknown"
        return ser(m), f"node {n.op_type} in unknown domain"

    def drop_node():
        m = copy()
        k = int(rng.integers(len(m.graph.node)))
        op = m.graph.node[k].op_type
        del m.graph.node[k]
        return ser(m), f"node {k} ({op}) removed"

    def dup_node():
        m = copy()
        k = int(rng.integers(len(m.graph.node)))
        m.graph.node.append(m.graph.node[k])
        return ser(m), f"node {k} duplicated (two producers)"

    def reverse_nodes():
        m = copy()
        nodes = list(m.graph.node)[::-1]
        del m.graph.node[:]
        m.graph.node.extend(nodes)
        return ser(m), "nodes in reverse order"

    def input_dims(dims):
        def go():
            m = copy()
            shape = m.graph.input[0].type.tensor_type.shape
            for d, v in zip(shape.dim, dims):
                if v is None:
                    continue
                d.ClearField("dim_param")
                d.dim_value = v
            return ser(m), f"input shape set to {dims}"
        return go

    def input_type(t):
        def go():
            m = copy()
            m.graph.input[0].type.tensor_type.elem_type = t
            return ser(m), f"input element type {t}"
        return go

    def output_to_intermediate():
        m = copy()
        cands = [o for n in m.graph.node[:-1] for o in n.output]
        name = cands[int(rng.integers(len(cands)))]
        m.graph.output[0].name = name
        m.graph.output[0].type.tensor_type.ClearField("shape")
        return ser(m), f"output is now intermediate {name}"

    def attribute():
        m = copy()
        with_attrs = [n for n in m.graph.node if n.attribute]
        n = with_attrs[int(rng.integers(len(with_attrs)))]
        a = n.attribute[int(rng.integers(len(n.attribute)))]
        if a.ints:
            a.ints[0] = int(rng.choice([0, -1, 99999]))
        elif a.type == onnx.AttributeProto.INT:
            a.i = int(rng.choice([0, -1, 99]))
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = float("nan")
        return ser(m), f"attribute {a.name} of {n.op_type} rewritten"

    def init_dims():
        m = copy()
        i = all_inits[int(rng.integers(len(all_inits)))]
        t = m.graph.initializer[i]
        t.dims[0] = t.dims[0] + int(rng.choice([1, -1])) if t.dims[0] > 1 else 7
        return ser(m), f"initializer {t.name} dims no longer match its data"

    def init_reshaped():
        m = copy()
        i = all_inits[int(rng.integers(len(all_inits)))]
        t = m.graph.initializer[i]
        n = int(np.prod(t.dims))
        del t.dims[:]
        t.dims.extend([n])
        return ser(m), f"initializer {t.name} flattened to ({n},)"

    def external(location, length):
        def go():
            m = copy()
            i = all_inits[int(rng.integers(len(all_inits)))]
            t = m.graph.initializer[i]
            t.ClearField("raw_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            del t.external_data[:]
            for k, v in (("location", location), ("offset", "0"), ("length", str(length))):
                e = t.external_data.add()
                e.key, e.value = k, v
            return ser(m), f"initializer {t.name} read from {location}"
        return go

    def opset(v):
        def go():
            m = copy()
            m.opset_import[0].version = v
            return ser(m), f"opset {v}"
        return go

    def ir(v):
        def go():
            m = copy()
            m.ir_version = v
            return ser(m), f"IR version {v}"
        return go

    def raw(kind):
        return lambda: any_file_mutation(data, rng, kind)

    def no_checksum(changed: bool):
        def go():
            m = copy()
            keep = [p for p in m.metadata_props if p.key != "mimika_sha256"]
            del m.metadata_props[:]
            m.metadata_props.extend(keep)
            what = "checksum removed"
            if changed:
                t = m.graph.initializer[float_inits[int(rng.integers(len(float_inits)))]]
                t.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(t) * 1.5).astype(numpy_helper.to_array(t).dtype),
                                                   t.name))
                what += f", initializer {t.name} scaled by 1.5"
            return ser(m), what
        return go

    def unknown_group():
        """An unknown top-level field of the group wire type (3 .. 4) first: protobuf parsers skip it."""
        group = bytes([0x9B, 0x06, 0x08, 0xAC, 0x02, 0x22, 0x03]) + b"abc" + bytes([0x9C, 0x06])
        return group + data, "an unknown protobuf group field before the others (harmless)"

    def second_graph():
        blob = onnx.GraphProto(name="more").SerializeToString()
        return data + b"\x3a" + varint(len(blob)) + blob, "a second graph field (protobuf merges it into the first)"

    nan, inf = float("nan"), float("inf")
    return {
        "checksum_removed": no_checksum(False),
        "checksum_removed_weight_changed": no_checksum(True),
        "unknown_group": unknown_group,
        "second_graph": second_graph,
        "raw_truncate": raw("truncate"), "raw_flip": raw("flip"), "raw_insert": raw("insert"),
        "raw_garbage": raw("garbage"),
        "init_nan": init_fn(one(nan), "one value NaN"),
        "init_inf": init_fn(one(inf), "one value inf"),
        "init_changed": init_fn(one(0.25), "one value set to 0.25"),
        "init_scaled": init_fn(lambda a: (a * 2).astype(a.dtype), "values doubled"),
        "init_zero": init_fn(np.zeros_like, "values zeroed"),
        "init_int_changed": init_fn(lambda a: np.roll(a, 1), "values rolled by one", floats=False),
        "init_dims_mismatch": init_dims,
        "init_flattened": init_reshaped,
        "external_dev_zero": external("/dev/zero", 10 ** 12),
        "external_traversal": external("../../../../../../etc/hostname", 16),
        "op_unknown": op_type("NoSuchOp"),
        "op_swapped": op_type("Relu"),
        "domain_unknown": domain,
        "node_removed": drop_node,
        "node_duplicated": dup_node,
        "nodes_reversed": reverse_nodes,
        "attribute_bad": attribute,
        "input_dims_wrong": input_dims([None, 1, 32, 32]),
        "input_dims_zero": input_dims([None, 0, 0, 0]),
        "input_type_int64": input_type(onnx.TensorProto.INT64),
        "input_type_string": input_type(onnx.TensorProto.STRING),
        "output_intermediate": output_to_intermediate,
        "opset_999": opset(999),
        "opset_1": opset(1),
        "ir_999": ir(999),
        "meta_removed": remove_meta,
        "meta_invalid_json": set_meta('{"arch": ', "metadata JSON cut short"),
        "meta_nested": set_meta("[" * 100000 + "]" * 100000, "metadata JSON nested 100000 deep"),
        "meta_list": set_meta("[1, 2]", "metadata JSON is a list"),
        "meta_labels_int": set_meta(cfg(labels=3), "labels is 3"),
        "meta_labels_fewer": set_meta(cfg(labels=json.loads(meta_value).get("labels", ["a"])[:-1]), "a label too few"),
        "meta_labels_more": set_meta(cfg(labels=json.loads(meta_value).get("labels", []) + ["extra"]),
                                     "a label too many"),
        "meta_labels_reversed": set_meta(cfg(labels=json.loads(meta_value).get("labels", [])[::-1]),
                                         "labels reversed"),
        "meta_crop_wrong": set_meta(crop(width=32, height=32), "crop 32x32, network wants another"),
        "meta_crop_huge": set_meta(crop(width=10 ** 6, height=10 ** 6), "crop 10^6 x 10^6"),
        "meta_crop_str": set_meta(crop(width="48"), "crop width '48'"),
        "meta_mean_nan": set_meta(cfg(mean=nan), "mean NaN"),
        "meta_std_zero": set_meta(cfg(std=0), "std 0"),
        "meta_tta_bogus": set_meta(cfg(tta="rotate"), "tta 'rotate'"),
        "meta_arch_int": set_meta(cfg(arch=7), "arch 7"),
    }


def model_cases(files: dict[str, Path], n: int, rng, skip: tuple[str, ...] = ()) -> list[Sample]:
    """n mutated model files: every (base file, mutation kind) pair once in a seeded random order
    (as far as n goes), then random pairs."""
    makers = []
    for base, path in sorted(files.items()):
        data = path.read_bytes()
        kinds = (npz_mutations if base.endswith(".npz") else onnx_mutations)(data, rng)
        makers.append((base, {k: v for k, v in kinds.items() if k not in skip}))
    order = [(base, kind) for base, kinds in makers for kind in kinds]
    rng.shuffle(order)
    plan = order[:n]
    while len(plan) < n:
        base, kinds = makers[int(rng.integers(len(makers)))]
        names = sorted(kinds)
        plan.append((base, names[int(rng.integers(len(names)))]))
    table = dict(makers)
    return [Sample(f"model{i:04d}_{base.replace('.', '_')}_{kind}", Path(base).suffix[1:], None, f"{base}: {kind}",
                   make=table[base][kind]) for i, (base, kind) in enumerate(plan)]


# ------------------------------------------------------------------------------------------
# datasets: FER2013 / FER+ CSVs and CK+ trees, good and malformed

def face_crops(n: int, side: int, seed: int = 0) -> np.ndarray:
    """n slightly different gray crops of the astronaut's face (like a FER or CK+ frame)."""
    import cv2
    g = cv2.cvtColor(source_bgr(), cv2.COLOR_BGR2GRAY)
    face = cv2.resize(g[28:160, 30:162], (128, 128), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        M = cv2.getRotationMatrix2D((64, 64), rng.uniform(-5, 5), rng.uniform(0.95, 1.05))
        M[:, 2] += rng.uniform(-3, 3, 2)
        img = cv2.warpAffine(face, M, (128, 128), borderMode=cv2.BORDER_REPLICATE)
        img = np.clip(img * rng.uniform(0.9, 1.1), 0, 255).astype(np.uint8)
        out.append(cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA))
    return np.stack(out)


FER_HEADER = "emotion,pixels,Usage"
FERPLUS_HEADER = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"


def fer_rows(n: int = 21, seed: int = 0) -> list[list[str]]:
    faces = face_crops(n, 48, seed)
    usage = ["Training", "PublicTest", "PrivateTest"]
    return [[str(i % 7), " ".join(map(str, f.ravel())), usage[i % 3]] for i, f in enumerate(faces)]


def fer_text(rows, header: str = FER_HEADER) -> str:
    return header + "\n" + "".join(",".join(r) + "\n" for r in rows)


def ferplus_text(n: int, votes=None) -> str:
    usage = ["Training", "PublicTest", "PrivateTest"]
    lines = [FERPLUS_HEADER]
    for i in range(n):
        v = votes[i] if votes is not None else [0] * 10
        if votes is None:
            v[i % 8] = 8
            v[(i + 1) % 8] = 2
        lines.append(f"{usage[i % 3]},fer{i:07d}.png," + ",".join(map(str, v)))
    return "\n".join(lines) + "\n"


def gzip_bomb(n: int = 2 << 30, block: int = 64 << 20) -> bytes:
    """A gzip file that inflates to n bytes of a FER header and a line of zeros: concatenated
    members of one compressed block."""
    member = gzip.compress(b"0" * block, 9, mtime=0)
    head = gzip.compress((FER_HEADER + "\n0,").encode(), mtime=0)
    return head + member * (n // block)


@dataclass
class DatasetCase:
    name: str
    path: Path
    desc: str
    split: str | None = None  # the split to evaluate on
    model: str = "ferplus"


def dataset_cases(folder: Path, rng, n_random: int = 0, bomb_size: int | None = 2 << 30) -> list[DatasetCase]:
    """Malformed FER2013 / FER+ CSVs and CK+ trees (plus n_random byte-mutated CSVs), each in
    its own folder; the first cases are good ones (controls)."""
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    rows = fer_rows()
    cases: list[DatasetCase] = []

    def fer(name, text_or_bytes, desc, split=None, gz=False, extra=None):
        d = folder / name
        d.mkdir()
        data = text_or_bytes.encode() if isinstance(text_or_bytes, str) else text_or_bytes
        p = d / ("fer2013.csv.gz" if gz else "fer2013.csv")
        p.write_bytes(data)
        for fname, content in (extra or {}).items():
            (d / fname).write_bytes(content.encode() if isinstance(content, str) else content)
        cases.append(DatasetCase(name, p, desc, split))
        return p

    def row_with(i, pixels=None, emotion=None, usage=None):
        r = list(rows[i])
        if pixels is not None:
            r[1] = pixels
        if emotion is not None:
            r[0] = emotion
        if usage is not None:
            r[2] = usage
        return [r if k == i else rows[k] for k in range(len(rows))]

    px = rows[3][1].split(" ")
    fer("good_fer", fer_text(rows), "control: a good 21-row fer2013.csv")
    fer("good_fer_gz", gzip.compress(fer_text(rows).encode(), mtime=0), "control: the same, gzipped", gz=True)
    fer("fer_float_pixels", fer_text(row_with(3, " ".join(p + ".5" for p in px))), "float pixels")
    fer("fer_nan_pixel", fer_text(row_with(3, " ".join(["nan"] + px[1:]))), "a NaN pixel")
    fer("fer_inf_pixel", fer_text(row_with(3, " ".join(["inf"] + px[1:]))), "an inf pixel")
    fer("fer_negative_pixel", fer_text(row_with(3, " ".join(["-1"] + px[1:]))), "a negative pixel")
    fer("fer_pixel_1e30", fer_text(row_with(3, " ".join(["1" + "0" * 30] + px[1:]))), "a pixel 10^30")
    fer("fer_nul_pixels", fer_text(row_with(3, " ".join(["1\x00"] + px[1:]))), "a NUL byte in the pixels")
    fer("fer_nul_row", fer_text(rows).replace("\n", "\n\x00\x00\x00", 3), "NUL bytes at line starts")
    fer("fer_quoted_pixels", fer_text(row_with(3, '"' + rows[3][1] + '"')), "quoted pixels field")
    fer("fer_all_quoted", "\n".join([FER_HEADER] + [",".join(f'"{c}"' for c in r) for r in rows]) + "\n",
        "every field quoted (valid CSV)")
    fer("fer_non_numeric", fer_text(row_with(3, " ".join(["abc"] + px[1:]))), "a non-numeric pixel")
    fer("fer_hex_pixels", fer_text(row_with(3, " ".join(["0x1f"] + px[1:]))), "a hex pixel")
    fer("fer_short_row", fer_text(row_with(3, " ".join(px[:-1]))), "2303 pixels")
    fer("fer_long_row", fer_text(row_with(3, " ".join(px + ["0"]))), "2305 pixels")
    fer("fer_double_spaces", fer_text(row_with(3, "  ".join(px))), "pixels separated by two spaces")
    fer("fer_tabs", fer_text(row_with(3, "\t".join(px))), "pixels separated by tabs")
    fer("fer_emotion_7", fer_text(row_with(3, emotion="7")), "emotion 7")
    fer("fer_emotion_negative", fer_text(row_with(3, emotion="-1")), "emotion -1")
    fer("fer_emotion_huge", fer_text(row_with(3, emotion="9" * 40)), "emotion 10^40")
    fer("fer_emotion_float", fer_text(row_with(3, emotion="3.0")), "emotion 3.0")
    fer("fer_emotion_nan", fer_text(row_with(3, emotion="nan")), "emotion NaN")
    fer("fer_emotion_unicode_digit", fer_text(row_with(3, emotion="\u0663")), "emotion in Arabic-Indic digit 3")
    fer("fer_usage_unknown", fer_text(row_with(3, usage="Holdout")), "unknown Usage")
    fer("fer_missing_column", fer_text([r[:2] for r in rows]), "no Usage column")
    fer("fer_extra_column", fer_text([r + ["x"] for r in rows]), "an extra column")
    fer("fer_empty", "", "empty file")
    fer("fer_header_only", FER_HEADER + "\n", "header only")
    fer("fer_wrong_header", fer_text(rows, "label,pixels,split"), "another header")
    fer("fer_bom", "\ufeff" + fer_text(rows), "UTF-8 byte-order mark")
    fer("fer_crlf", fer_text(rows).replace("\n", "\r\n"), "CRLF line ends (valid)")
    fer("fer_cr_only", fer_text(rows).replace("\n", "\r"), "CR-only line ends")
    fer("fer_latin1", fer_text(rows).encode() + b"\xe9\xff\n", "a stray latin-1 line")
    fer("fer_binary", rng.integers(0, 256, 65536, dtype=np.uint8).tobytes(), "64 kB of random bytes")
    fer("fer_only_training", fer_text([r for r in rows if r[2] == "Training"]), "no PrivateTest rows",
        split="PrivateTest")
    fer("fer_no_rows_split_val", fer_text([r for r in rows if r[2] != "PublicTest"]), "no PublicTest rows")
    fer("fer_huge_line", FER_HEADER + "\n0," + "1" * (32 << 20) + ",Training\n", "one 32 MB token")
    fer("fer_many_columns", FER_HEADER + "\n" + "," * (4 << 20) + "\n", "a line of 4 million commas")
    fer("fer_gzip_cut", gzip.compress(fer_text(rows).encode(), mtime=0)[:-300], "gzip cut short", gz=True)
    fer("fer_gzip_header_only", gzip.compress(fer_text(rows).encode(), mtime=0)[:10], "gzip header only", gz=True)
    fer("fer_gzip_crc_wrong", gzip.compress(fer_text(rows).encode(), mtime=0)[:-8] + b"\0" * 8,
        "gzip with a wrong CRC", gz=True)
    fer("fer_gzip_trailing_garbage", gzip.compress(fer_text(rows).encode(), mtime=0) + b"garbage",
        "gzip with trailing garbage", gz=True)
    fer("fer_gzip_of_garbage", b"\x1f\x8b" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "gzip magic then random bytes", gz=True)
    fer("fer_bz2_named_gz", __import__("bz2").compress(fer_text(rows).encode()), "bzip2 named .csv.gz", gz=True)
    if bomb_size:
        fer("fer_gzip_bomb", gzip_bomb(bomb_size), f"gzip bomb inflating to {bomb_size >> 20} MiB", gz=True)

    # FER+ votes beside a good fer2013.csv
    good_fer = fer_text(rows)

    def ferplus(name, text, desc, split=None):
        d = folder / name
        d.mkdir()
        (d / "fer2013.csv").write_text(good_fer)
        p = d / "fer2013new.csv"
        p.write_bytes(text.encode() if isinstance(text, str) else text)
        cases.append(DatasetCase(name, p, desc, split))

    votes = [[0] * 10 for _ in rows]
    for i, v in enumerate(votes):
        v[i % 8], v[(i + 1) % 8] = 8, 2
    def votes_with(i, values):
        vv = [list(v) for v in votes]
        vv[i] = values
        return ferplus_text(len(rows), vv)
    ferplus("good_ferplus", ferplus_text(len(rows), votes), "control: good FER+ votes")
    ferplus("ferplus_huge_votes", votes_with(2, [10 ** 30] + [0] * 9), "a vote count of 10^30")
    ferplus("ferplus_int64_overflow", votes_with(2, [2 ** 62, 2 ** 62, 2 ** 62] + [0] * 7), "votes summing past int64")
    ferplus("ferplus_negative_votes", votes_with(2, [-5, 8] + [0] * 8), "negative votes")
    ferplus("ferplus_float_votes", votes_with(2, [1.5, 8] + [0] * 8), "float votes")
    ferplus("ferplus_nan_votes", votes_with(2, ["nan", 8] + [0] * 8), "NaN votes")
    ferplus("ferplus_all_zero", ferplus_text(len(rows), [[0] * 10 for _ in rows]), "no votes at all")
    ferplus("ferplus_fewer_rows", ferplus_text(len(rows) - 1, votes), "one row fewer than the pixels")
    ferplus("ferplus_missing_votes", ferplus_text(len(rows), votes).replace(",0,0\n", "\n", 1), "a row two votes short")
    ferplus("ferplus_wrong_header", ferplus_text(len(rows), votes).replace("neutral", "calm", 1), "header renamed")
    ferplus("ferplus_nul", ferplus_text(len(rows), votes).replace(",8,", ",8\x00,", 1), "a NUL byte")
    ferplus("ferplus_only_training", "\n".join(l for l in ferplus_text(len(rows), votes).split("\n")
                                               if not l.startswith("Private")) + "\n",
            "rows dropped (out of step)", split="PrivateTest")

    # CK+ trees
    frames = face_crops(12, 128, seed=5)

    def ck(name, desc, code="   5.0000000e+00\n", frame_hook=None, label_hook=None, n_seq=3):
        root = folder / name
        for s in range(n_seq):
            subj, seq = f"S{s + 10:03d}", "001"
            img_dir = root / "cohn-kanade-images" / subj / seq
            lab_dir = root / "Emotion" / subj / seq
            img_dir.mkdir(parents=True)
            lab_dir.mkdir(parents=True)
            for k in range(4):
                cv2.imwrite(str(img_dir / f"{subj}_{seq}_{k + 1:08d}.png"), frames[(s * 4 + k) % len(frames)])
            c = code if s == 0 else f"   {5 + 2 * (s % 2)}.0000000e+00\n"
            lab = lab_dir / f"{subj}_{seq}_{4:08d}_emotion.txt"
            lab.write_bytes(c.encode() if isinstance(c, str) else c)
        if frame_hook:
            frame_hook(root / "cohn-kanade-images" / "S010" / "001")
        if label_hook:
            label_hook(root / "Emotion" / "S010" / "001")
        cases.append(DatasetCase(name, root, desc, model="ferplus"))

    def last_frame(d: Path) -> Path:
        return sorted(d.iterdir())[-1]

    def replace_frame(fn):
        def hook(d):
            f = last_frame(d)
            f.unlink()
            fn(f)
        return hook

    ck("good_ckplus", "control: a good CK+ tree")
    ck("ck_code_nan", "emotion code NaN", code="   nan\n")
    ck("ck_code_inf", "emotion code inf", code="   inf\n")
    ck("ck_code_neg_inf", "emotion code -inf", code="-inf\n")
    ck("ck_code_1e308", "emotion code 1e308", code="1e308\n")
    ck("ck_code_1e400", "emotion code 1e400 (overflows to inf)", code="1e400\n")
    ck("ck_code_9", "emotion code 9", code="9.0\n")
    ck("ck_code_fraction", "emotion code 2.5", code="2.5\n")
    ck("ck_code_negative", "emotion code -1", code="-1\n")
    ck("ck_code_junk", "emotion file of junk", code="happy face\n")
    ck("ck_code_empty", "empty emotion file", code="")
    ck("ck_code_binary", "binary emotion file", code=rng.integers(0, 256, 256, dtype=np.uint8).tobytes())
    ck("ck_code_nul", "NUL bytes in the emotion file", code="\x00\x00\x005\x00")
    ck("ck_code_utf16", "UTF-16 emotion file", code="5.0\n".encode("utf-16"))
    ck("ck_code_huge", "a 16 MB emotion file", code="5" + " " * (16 << 20))
    ck("ck_two_codes_disagree", "two label files that disagree",
       label_hook=lambda d: (d / "S010_001_00000003_emotion.txt").write_text("7.0\n"))
    ck("ck_label_dir_is_file", "an emotion file that is a folder",
       label_hook=lambda d: (sorted(d.iterdir())[0].unlink(), (d / "S010_001_00000004_emotion.txt").mkdir()))
    ck("ck_fifo_frame", "a FIFO among the frames", frame_hook=replace_frame(lambda f: os.mkfifo(f)))
    ck("ck_fifo_label", "a FIFO as the emotion file",
       label_hook=lambda d: (sorted(d.iterdir())[0].unlink(), os.mkfifo(d / "S010_001_00000004_emotion.txt")))
    ck("ck_huge_header_frame", "a PNG claiming 60000x60000 among the frames",
       frame_hook=replace_frame(lambda f: f.write_bytes(png_bytes(60000, 60000))))
    ck("ck_jpeg_bomb_frame", "a JPEG claiming 30000x30000 among the frames (named .png)",
       frame_hook=replace_frame(lambda f: f.write_bytes(jpeg_with_size(_cv_encode(".jpg", frames[0]), 30000, 30000))))
    ck("ck_dir_frame", "a folder named like a frame", frame_hook=replace_frame(lambda f: f.mkdir()))
    ck("ck_symlink_loop_frame", "a symlink loop among the frames",
       frame_hook=replace_frame(lambda f: (os.symlink(f.name + ".b", f), os.symlink(f.name, str(f) + ".b"))))
    ck("ck_dev_zero_frame", "/dev/zero linked as a frame", frame_hook=replace_frame(lambda f: os.symlink("/dev/zero", f)))
    ck("ck_empty_frame", "an empty frame", frame_hook=replace_frame(lambda f: f.write_bytes(b"")))
    ck("ck_corrupt_frame", "a truncated frame",
       frame_hook=replace_frame(lambda f: f.write_bytes(_cv_encode(".png", frames[0])[:200])))
    ck("ck_nan_tiff_frame", "a NaN float TIFF named .png",
       frame_hook=replace_frame(lambda f: f.write_bytes(_cv_encode(".tif", np.full((128, 128), np.nan, np.float32)))))
    ck("ck_no_frames", "a labelled sequence without frames",
       frame_hook=lambda d: [f.unlink() for f in list(d.iterdir())])
    ck("ck_all_frames_bad", "every frame unreadable",
       frame_hook=lambda d: [f.write_bytes(b"junk") for f in d.iterdir()], n_seq=1)
    ck("ck_no_labels", "no emotion files", label_hook=lambda d: [f.unlink() for f in d.iterdir()], n_seq=1)
    empty = folder / "ck_empty_trees"
    (empty / "cohn-kanade-images").mkdir(parents=True)
    (empty / "Emotion").mkdir()
    cases.append(DatasetCase("ck_empty_trees", empty, "empty CK+ trees"))

    # random byte mutations of good files
    good_csv = fer_text(rows).encode()
    good_votes = ferplus_text(len(rows), votes).encode()
    for i in range(n_random):
        kind = ["fer", "fer_gz", "ferplus", "ck_label"][i % 4]
        rs = Sample("x", "csv", gzip.compress(good_csv, mtime=0) if kind == "fer_gz" else
                    good_votes if kind == "ferplus" else b"   5.0000000e+00\n" if kind == "ck_label" else good_csv)
        data, desc = mutate(rs, rng)
        name = f"rand{i:04d}_{kind}"
        if kind in ("fer", "fer_gz"):
            fer(name, data, f"random mutation of a good {kind}: {desc}", gz=kind == "fer_gz")
        elif kind == "ferplus":
            ferplus(name, data, f"random mutation of good FER+ votes: {desc}")
        else:
            ck(name, f"random mutation of a CK+ emotion file: {desc}", code=data)
    return cases


# ------------------------------------------------------------------------------------------
# the worker: runs cases in a child process, one JSON line per request and per answer

def _vm_kb(key: str = "VmHWM") -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _classify_exception(e: BaseException) -> dict:
    import mimika
    tb = traceback.extract_tb(e.__traceback__)
    where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno} {tb[-1].name}" if tb else ""
    text = str(e)
    first = (text.splitlines() or [""])[0][:300]
    if isinstance(e, mimika.MimikaError):
        return {"status": "clean", "detail": text, "where": where}
    name = f"{type(e).__module__}.{type(e).__name__}"
    memory = isinstance(e, MemoryError) or (
        type(e).__name__ == "error" and any(s in text for s in ("Insufficient memory", "Failed to allocate",
                                                                  "OutOfMemory", "bad_alloc")))
    return {"status": "memory" if memory else "uncaught", "detail": f"{name}: {first}", "where": where}


def _faces(result) -> list:
    return [[[int(v) for v in f.box], list(f.scores.keys()), [float(p) for p in f.scores.values()]]
            for f in result.faces]


def _result_dict(r) -> dict:
    return {"file": str(r.file), "error": r.error, "faces": _faces(r)}


def _load_predictor(path):
    import mimika
    fn = getattr(mimika, "load_predictor", None)
    if fn is None:
        from importlib import import_module
        fn = import_module("mimika.network.predictor").load_predictor
    return fn(path)


def _op_init(req, state):
    import mimika
    state["recognizer"] = mimika.Recognizer(req.get("model"))
    return {}


def _op_files(req, state):
    rec = state["recognizer"]
    results = []
    try:
        for r in rec.get_files(req["paths"]):
            results.append(_result_dict(r))
    except BaseException as e:  # noqa: BLE001 - classified, with the results that came before
        out = _classify_exception(e)
        out["results"] = results
        return out
    return {"results": results}


def _op_recognize(req, state):
    import mimika
    faces = mimika.recognize(req["path"])
    return {"results": [{"file": req["path"], "error": None,
                         "faces": [[[int(v) for v in f.box], list(f.scores), list(map(float, f.scores.values()))]
                                   for f in faces]}]}


def _op_model(req, state):
    """Load a model file, predict the given crops, then recognize the given images with it."""
    import mimika
    out = {"stage": "load"}
    model = _load_predictor(req["path"])
    out["stage"] = "predict"
    crops = np.load(req["crops"])
    p = model.predict_proba(crops)
    out["labels"] = list(model.labels)
    out["probs"] = np.asarray(p, dtype=float).tolist()
    out["stage"] = "recognize"
    rec = mimika.Recognizer(model)
    out["results"] = [_result_dict(r) for r in rec.get_files(req.get("images", []))]
    out["stage"] = "done"
    return out


def _op_model_info(req, state):
    model = _load_predictor(req["path"])
    return {"crop": [int(model.config.crop.width), int(model.config.crop.height)], "labels": list(model.labels)}


def _op_dataset(req, state):
    import mimika
    spec = mimika.CropSpec(*req.get("size", (48, 48)))
    data = mimika.load_dataset(req["path"], spec, **req.get("kwargs", {}))
    if req.get("split"):
        data = data.split(req["split"])
    faces = np.asarray(data.faces)
    return {"n": int(len(data)), "labels": list(data.labels), "faces_dtype": str(faces.dtype),
            "faces_shape": list(faces.shape)}


OPS = {"init": _op_init, "files": _op_files, "recognize": _op_recognize, "model": _op_model, "model_info": _op_model_info,
       "dataset": _op_dataset}


def worker_main() -> None:
    """Serve requests from stdin; answers go to the original stdout, anything printed to stderr."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    limit = int(os.environ.get("FUZZ_MEM_LIMIT", "0"))
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    state: dict = {}
    proto.write(json.dumps({"status": "ready", "pid": os.getpid()}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        _reset_peak()
        t0 = time.perf_counter()
        try:
            out = OPS[req["op"]](req, state)
            out.setdefault("status", "ok")
        except BaseException as e:  # noqa: BLE001 - the point is to classify everything
            out = _classify_exception(e)
        out["seconds"] = round(time.perf_counter() - t0, 4)
        hwm = _vm_kb()
        out["peak_mb"] = round(hwm / 1024, 1) if hwm else None
        try:
            proto.write(json.dumps(out) + "\n")
        except (TypeError, ValueError) as e:
            proto.write(json.dumps({"status": "uncaught", "detail": f"unserializable answer: {e}"}) + "\n")


class Worker:
    """A child process that runs cases; restarted after a crash or a hang (replaying `init`)."""

    def __init__(self, mem_limit: int = 4 * GiB, env: dict | None = None, init: dict | None = None,
                 log: Path | None = None, start_timeout: float = 120):
        self.mem_limit, self.init, self.start_timeout = mem_limit, init, start_timeout
        self.env = {**os.environ, **(env or {}), "FUZZ_MEM_LIMIT": str(mem_limit)}
        self.log = log or Path(tempfile.mkstemp(prefix="fuzz-worker-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self.buf = b""
        self.restarts = 0

    def _start(self) -> None:
        self.buf = b""
        err = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, str(HERE), "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=err, env=self.env, cwd=os.getcwd(),
                                     preexec_fn=_die_with_parent)
        err.close()
        ready = self._read(self.start_timeout)
        if not ready or ready.get("status") != "ready":
            self.close()
            raise RuntimeError(f"fuzz worker did not start (see {self.log})")
        if self.init:
            ans = self._ask(self.init, self.start_timeout)
            if ans.get("status") != "ok":
                raise RuntimeError(f"fuzz worker init failed: {ans}")

    def _read(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return {"status": "eof"}
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def _ask(self, req: dict, timeout: float) -> dict:
        try:
            self.proc.stdin.write((json.dumps(req) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._died()
        ans = self._read(timeout)
        if ans is None:
            self.kill()
            return {"status": "hang", "detail": f"no answer within {timeout:g} s"}
        if ans.get("status") == "eof":
            return self._died()
        return ans

    def _died(self) -> dict:
        rc = self.proc.wait()
        self.proc = None
        tail = ""
        try:
            tail = " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])[-300:]
        except OSError:
            pass
        if rc < 0:
            return {"status": "crash", "detail": f"killed by signal {signal.Signals(-rc).name}: {tail}"}
        return {"status": "crash", "detail": f"worker exited with status {rc}: {tail}"}

    def call(self, req: dict, timeout: float = 60) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.restarts += 1
            self._start()
        return self._ask(req, timeout)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.restarts += 1

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------------------------------
# outcomes

@dataclass
class Outcome:
    case: str
    status: str
    detail: str = ""
    fmt: str = ""
    desc: str = ""
    peak_mb: float | None = None
    seconds: float | None = None
    where: str = ""
    unclear: bool = False  # a clean error that is not one line naming the file

    def line(self) -> str:
        return f"{self.status:8s} {self.case} [{self.desc}] {self.detail} {self.where}".rstrip()


@dataclass
class Tally:
    """What happened in one category of cases."""

    category: str
    outcomes: list[Outcome] = field(default_factory=list)
    good_checked: int = 0
    lost: list[str] = field(default_factory=list)  # good files whose result a batch lost or changed
    extra: dict = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def failures(self, statuses=FAILURES) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in statuses]

    def peak(self) -> tuple[float | None, str]:
        known = [o for o in self.outcomes if o.peak_mb is not None]
        top = max(known, key=lambda o: o.peak_mb) if known else None
        batch = self.extra.get("batch_peak_mb")
        if batch and (top is None or batch > top.peak_mb):
            return batch, "(a batch)"
        return (top.peak_mb, top.case) if top else (None, "")

    def row(self) -> dict:
        peak, where = self.peak()
        r = {"category": self.category, "tried": len(self.outcomes)}
        r.update({s: self.count(s) for s in STATUSES})
        r.update({"unclear": sum(o.unclear for o in self.outcomes), "lost": len(self.lost),
                  "good_checked": self.good_checked, "peak_mb": peak, "peak_case": where})
        r.update(self.extra)
        return r

    def to_json(self, examples: int = 20) -> dict:
        """The summary, every failing case, and a few examples of clean errors and of unclear ones."""
        by_status: dict[str, list] = {}
        for o in self.outcomes:
            if o.status in FAILURES or (o.status == "clean" and len(by_status.get("clean", [])) < examples):
                by_status.setdefault(o.status, []).append(o.__dict__)
        unclear = [o.__dict__ for o in self.outcomes if o.unclear][:examples]
        return {"summary": self.row(), "cases": by_status, "unclear_examples": unclear, "lost": self.lost}


COLUMNS = [("tried", "tried"), ("ok", "ok"), ("clean", "clean err"), ("uncaught", "traceback"),
           ("crash", "crash"), ("hang", "hang"), ("memory", "mem limit"), ("nan", "NaN"),
           ("changed", "changed"), ("lost", "lost"), ("unclear", "unclear"), ("peak_mb", "peak MiB")]


def table(rows: list[dict]) -> str:
    head = ["category"] + [c[1] for c in COLUMNS]
    lines = [head]
    for r in rows:
        cells = [r["category"]]
        for key, _ in COLUMNS:
            v = r.get(key)
            cells.append("-" if v is None else f"{v:.0f}" if isinstance(v, float) else str(v))
        lines.append(cells)
    widths = [max(len(l[i]) for l in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(l, widths))) for l in lines]
    out.insert(1, "-" * len(out[0]))
    return "\n".join(out)


# ------------------------------------------------------------------------------------------
# the checks

def _same_faces(a: list, b: list, tol: float = PROB_TOL) -> bool:
    if len(a) != len(b):
        return False
    for (box1, lab1, p1), (box2, lab2, p2) in zip(a, b):
        if box1 != box2:
            return False
        d1, d2 = dict(zip(lab1, p1)), dict(zip(lab2, p2))
        if set(d1) != set(d2) or any(abs(d1[k] - d2[k]) > tol for k in d1):
            return False
    return True


def _bad_probs(faces: list) -> bool:
    for _, _, p in faces:
        arr = np.asarray(p, dtype=float)
        if not np.isfinite(arr).all() or (arr < 0).any() or (arr > 1).any() or abs(arr.sum() - 1) > 1e-3:
            return True
    return False


def _clear_error(error: str, path) -> bool:
    """One line that names the file."""
    return "\n" not in error.strip() and (Path(str(path)).name in error)


def classify_result(res: dict, path, case: str, sample_fmt="", desc="") -> Outcome:
    if res.get("error"):
        return Outcome(case, "clean", res["error"][:300], sample_fmt, desc, unclear=not _clear_error(res["error"], path))
    if _bad_probs(res.get("faces", [])):
        return Outcome(case, "nan", "NaN or invalid probabilities", sample_fmt, desc)
    return Outcome(case, "ok", f"{len(res.get('faces', []))} faces", sample_fmt, desc)


def reference_results(worker: Worker, paths: list[Path], timeout: float = 60) -> dict[str, list]:
    """Each good file's faces, alone."""
    ref = {}
    for p in paths:
        ans = worker.call({"op": "files", "paths": [str(p)]}, timeout)
        res = (ans.get("results") or [{}])[0]
        if ans.get("status") != "ok" or res.get("error"):
            raise RuntimeError(f"good file {p} did not give a result alone: {ans}")
        ref[str(p)] = res["faces"]
    return ref


def run_image_batches(worker: Worker, bad: list[tuple[Path, Sample]], good: list[Path], tally: Tally, rng,
                      batch_size: int = 50, good_per_batch: int = 12, timeout: float = 60,
                      single_timeout: float = 30, deadline: float | None = None,
                      reference: dict | None = None) -> None:
    """Bad files in batches through `Recognizer.get_files`, with good files mixed in: each bad
    file classified, each good file's result compared with its result alone.

    A batch that fails is followed by one good file in the same process (does the failure
    leave the recognizer broken? counted as `poisoned`), then by a fresh process in which
    the files without a result run one by one to find the culprits."""
    ref = reference if reference is not None else reference_results(worker, good)
    per = max(1, batch_size - good_per_batch)
    tally.extra.setdefault("batches", 0)
    tally.extra.setdefault("batches_failed", 0)
    tally.extra.setdefault("poisoned", 0)
    for start in range(0, len(bad), per):
        if deadline and time.monotonic() > deadline:
            tally.extra["stopped_early"] = f"time limit after {len(tally.outcomes)} cases"
            break
        chunk = bad[start:start + per]
        bad_paths = {str(p) for p, _ in chunk}
        goods = [good[int(i)] for i in rng.choice(len(good), min(good_per_batch, len(good)), replace=False)]
        paths = [str(p) for p, _ in chunk] + [str(g) for g in goods]
        paths = [paths[i] for i in rng.permutation(len(paths))]
        ans = worker.call({"op": "files", "paths": paths}, timeout)
        tally.extra["batches"] += 1
        if ans.get("peak_mb"):
            tally.extra["batch_peak_mb"] = max(tally.extra.get("batch_peak_mb", 0), ans["peak_mb"])
        results = ans.get("results") or []
        by_index = {i: r for i, r in enumerate(results) if i < len(paths) and r.get("file") == paths[i]}
        tally.good_checked += len(goods)
        for i, p in enumerate(paths):
            if p not in bad_paths:
                r = by_index.get(i)
                if r is None or r.get("error") or not _same_faces(r["faces"], ref[p]):
                    why = "missing" if r is None else ("error: " + r["error"] if r.get("error") else "changed")
                    tally.lost.append(f"{Path(p).name}: {why} (batch {ans.get('status')}: "
                                      f"{ans.get('detail', '')[:100]})")
        if ans.get("status") != "ok":
            tally.extra["batches_failed"] += 1
            if worker.proc is not None:
                probe = worker.call({"op": "files", "paths": [str(good[0])]}, single_timeout)
                res = (probe.get("results") or [{}])[0]
                if probe.get("status") != "ok" or res.get("error") or not _same_faces(res.get("faces", []),
                                                                                       ref[str(good[0])]):
                    tally.extra["poisoned"] += 1
                    worker.kill()  # a fresh process to find the culprits
        pos = {p: i for i, p in enumerate(paths)}
        for path, sample in chunk:
            i = pos[str(path)]
            if i in by_index:
                tally.outcomes.append(classify_result(by_index[i], path, sample.name, sample.fmt, sample.desc))
                continue
            one = worker.call({"op": "files", "paths": [str(path)]}, single_timeout)
            if one.get("status") == "ok" and one.get("results"):
                o = classify_result(one["results"][0], path, sample.name, sample.fmt, sample.desc)
            else:
                o = Outcome(sample.name, one.get("status", "crash"), one.get("detail", ""), sample.fmt, sample.desc,
                            where=one.get("where", ""))
                if o.status == "memory":
                    worker.kill()  # a fresh process for the next one
            o.peak_mb = one.get("peak_mb")
            tally.outcomes.append(o)


def run_single_files(worker: Worker, files: list[tuple[Path, Sample]], tally: Tally, op: str = "files",
                     timeout: float = 30) -> None:
    """Each file alone (hostile or special files), through get_files or recognize."""
    for path, sample in files:
        if op == "files":
            ans = worker.call({"op": "files", "paths": [str(path)]}, timeout)
        else:
            ans = worker.call({"op": "recognize", "path": str(path)}, timeout)
        if ans.get("status") == "ok" and ans.get("results"):
            o = classify_result(ans["results"][0], path, sample.name, sample.fmt, sample.desc)
        elif ans.get("status") == "ok":
            o = Outcome(sample.name, "ok", "no result", sample.fmt, sample.desc)
        else:
            o = Outcome(sample.name, ans["status"], ans.get("detail", "")[:300], sample.fmt, sample.desc,
                        where=ans.get("where", ""))
            if o.status == "clean":
                o.unclear = not _clear_error(ans.get("detail", ""), path)
            elif o.status == "memory":
                worker.kill()  # OpenCV can be left unusable by a failed allocation: a fresh process
        o.peak_mb, o.seconds = ans.get("peak_mb"), ans.get("seconds")
        tally.outcomes.append(o)


def run_model_files(worker: Worker, cases: list[Sample], folder: Path, tally: Tally, images: list[Path],
                    timeout: float = 60, deadline: float | None = None) -> None:
    """Each mutated model file: loaded, asked for the probabilities of fixed face crops, then used
    to recognize a few good images; compared with its unmutated original."""
    folder.mkdir(parents=True, exist_ok=True)
    originals = shipped_model_files()
    crops_of: dict[str, str] = {}
    ref: dict[str, dict] = {}
    for base in sorted({c.desc.split(":")[0] for c in cases}):
        info = worker.call({"op": "model_info", "path": str(originals[base])}, timeout)
        side = info["crop"][1]
        crops = folder / f"crops{side}.npy"
        if not crops.exists():
            np.save(crops, face_crops(6, side, seed=11)[:, :, :info["crop"][0]])
        crops_of[base] = str(crops)
        ans = worker.call({"op": "model", "path": str(originals[base]), "crops": str(crops),
                           "images": [str(p) for p in images]}, timeout)
        if ans.get("status") != "ok":
            raise RuntimeError(f"the unmutated model {base} fails: {ans}")
        ref[base] = ans
    for c in cases:
        if deadline and time.monotonic() > deadline:
            tally.extra["stopped_early"] = f"time limit after {len(tally.outcomes)} cases"
            break
        base = c.desc.split(":")[0]
        path = folder / f"{c.name}.{c.fmt}"
        if c.data is None:
            data, what = c.make()
            c.desc = f"{base}: {what}"
        path.write_bytes(data if c.data is None else c.data)
        ans = worker.call({"op": "model", "path": str(path), "crops": crops_of[base],
                           "images": [str(p) for p in images]}, timeout)
        path.unlink()
        st = ans.get("status")
        if st == "memory" and "cv2" in ans.get("detail", ""):
            worker.kill()  # OpenCV can be left unusable by a failed allocation: a fresh process
        o = Outcome(c.name, st, ans.get("detail", "")[:300], c.fmt, c.desc, ans.get("peak_mb"), ans.get("seconds"),
                    where=ans.get("where", ""))
        if st == "clean":
            o.unclear = not _clear_error(ans.get("detail", ""), path)
        if st == "ok":
            probs = np.asarray(ans["probs"], dtype=float)
            r0 = ref[base]
            faces_bad = any(_bad_probs(r["faces"]) for r in ans["results"])
            if (probs.ndim != 2 or not np.isfinite(probs).all() or (probs < 0).any()
                    or np.abs(probs.sum(axis=1) - 1).max() > 1e-3 or faces_bad):
                o.status, o.detail = "nan", "NaN, infinite or invalid probabilities"
            elif (ans["labels"] != r0["labels"] or probs.shape != np.asarray(r0["probs"]).shape
                  or np.abs(probs - np.asarray(r0["probs"])).max() > PROB_TOL
                  or any(r.get("error") or not _same_faces(r["faces"], q["faces"])
                         for r, q in zip(ans["results"], r0["results"]))):
                diff = (np.abs(probs - np.asarray(r0["probs"])).max()
                        if probs.shape == np.asarray(r0["probs"]).shape else float("nan"))
                o.status, o.detail = "changed", f"answers differ from the original (max |dp| {diff:.3g})"
        tally.outcomes.append(o)


def run_dataset_api(worker: Worker, cases: list[DatasetCase], tally: Tally, timeout: float = 60) -> None:
    """Each dataset through `mimika.load_dataset` (and the asked split)."""
    for c in cases:
        ans = worker.call({"op": "dataset", "path": str(c.path), "split": c.split,
                           "kwargs": {"use_cache": False}}, timeout)
        if ans.get("status") == "memory":
            worker.kill()
        o = Outcome(c.name, ans.get("status"), ans.get("detail", "")[:300], "dataset", c.desc, ans.get("peak_mb"),
                    ans.get("seconds"), where=ans.get("where", ""))
        if o.status == "ok":
            o.detail = f"{ans['n']} faces, {ans['faces_dtype']}"
            if ans["faces_dtype"] != "uint8":
                o.status, o.detail = "nan", f"faces of type {ans['faces_dtype']}"
        if o.status == "clean":  # one line naming the dataset or a file in it
            o.unclear = "\n" in ans.get("detail", "").strip() or c.name not in ans.get("detail", "")
        tally.outcomes.append(o)


# ------------------------------------------------------------------------------------------
# the CLI

def cli_command() -> list[str]:
    """How to run the `mimika` command with this interpreter: `python -m mimika` where the
    mimika on the path has a `__main__` (not one found elsewhere), else through `mimika.cli.main`."""
    import mimika
    if (Path(mimika.__file__).parent / "__main__.py").is_file():
        return [sys.executable, "-m", "mimika"]
    return [sys.executable, "-c", "import sys; from mimika.cli import main; sys.exit(main())"]


def _die_with_parent() -> None:
    """Children get SIGKILL when the harness dies, so a hung case never outlives it (Linux)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _limits(mem_limit: int, fsize: int | None = None):
    def apply():
        os.setsid()
        _die_with_parent()
        resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    return apply


#: Runs the command given after the path of a file it writes the command's peak memory into. A child
#: forked from a large process counts that process's resident memory as its own (Linux keeps the
#: high-water mark across fork and exec), so wait4 in the harness would report the harness's size:
#: this small launcher forks the command itself, and reports what the command alone used.
_LAUNCHER = """
import os, signal, sys
pid = os.fork()
if pid == 0:
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: it dies with the launcher
    except (OSError, AttributeError):
        pass
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    except OSError as e:
        os.write(2, f"{sys.argv[2]}: {e}\\n".encode())
    os._exit(127)
signal.signal(signal.SIGINT, signal.SIG_IGN)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def run_process(cmd: list[str], timeout: float, mem_limit: int = 4 * GiB, env: dict | None = None,
                cwd=None, fsize: int | None = None) -> dict:
    """Run a command with an address-space limit and a time limit; its exit status, output
    and peak memory (its own, from wait4 in `_LAUNCHER`; None for a command killed at its time
    limit, which the launcher does not outlive)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".peak") as peak:
        t0 = time.monotonic()
        p = subprocess.Popen([sys.executable, "-c", _LAUNCHER, peak.name, *cmd], stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, cwd=cwd,
                             preexec_fn=_limits(mem_limit, fsize))
        hung = False
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > timeout:
                hung = True
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.01)
        p.returncode = os.waitstatus_to_exitcode(status)
        own = peak.read().strip()
        out.seek(0)
        err.seek(0)
        return {"rc": p.returncode, "hang": hung, "stdout": out.read().decode("utf-8", "replace"),
                "stderr": err.read().decode("utf-8", "replace"),
                "peak_mb": round(int(own) / 1024, 1) if own else None,
                "seconds": round(time.monotonic() - t0, 2)}


def classify_cli(run: dict, case: str, name_in_error: str | None = None, fmt: str = "", desc: str = "") -> Outcome:
    err = run["stderr"]
    lines = [l for l in err.splitlines() if l.strip()]
    o = Outcome(case, "ok", "", fmt, desc, run["peak_mb"], run["seconds"])
    if run["hang"]:
        o.status, o.detail = "hang", f"killed after {run['seconds']} s"
    elif run["rc"] < 0:
        o.status, o.detail = "crash", f"signal {signal.Signals(-run['rc']).name}; " + " | ".join(lines[-2:])[:200]
    elif "Traceback (most recent call last)" in err:
        last = lines[-1] if lines else ""
        mem = "MemoryError" in last or "Insufficient memory" in err or "Failed to allocate" in err
        o.status, o.detail = ("memory" if mem else "uncaught"), last[:300]
        frames = [l.strip() for l in lines if l.strip().startswith("File ")]
        o.where = frames[-1][:200] if frames else ""
    elif run["rc"] != 0:
        o.status = "clean"
        o.detail = (lines[-1] if lines else f"exit {run['rc']}, nothing on stderr")[:300]
        o.unclear = not lines or (name_in_error is not None and not any(name_in_error in l for l in lines))
    else:
        o.detail = (run["stdout"].strip().splitlines() or [""])[0][:200]
    return o


def run_cli_images(files: list[tuple[Path, Sample]], tally: Tally, timeout: float = 60, mem_limit: int = 4 * GiB,
                   deadline: float | None = None) -> None:
    """`mimika predict FILE`, one process per file."""
    cli = cli_command()
    tally.extra["command"] = " ".join(cli[1:] if cli[1] == "-m" else ["-c", "'...cli.main()'"])
    for path, sample in files:
        if deadline and time.monotonic() > deadline:
            tally.extra["stopped_early"] = f"time limit after {len(tally.outcomes)} cases"
            break
        run = run_process(cli + ["predict", str(path)], timeout, mem_limit)
        o = classify_cli(run, sample.name, path.name, sample.fmt, sample.desc)
        if o.status == "ok" and "nan" in run["stdout"].lower():
            o.status, o.detail = "nan", "NaN in the printed scores"
        tally.outcomes.append(o)


def run_dataset_cli(cases: list[DatasetCase], tally: Tally, workdir: Path, commands=("evaluate", "train"),
                    timeout: float = 120, mem_limit: int = 4 * GiB, deadline: float | None = None) -> None:
    """`mimika evaluate` and `mimika train` on each dataset (a fresh prepared-faces cache each)."""
    cli = cli_command()
    for c in cases:
        for command in commands:
            if deadline and time.monotonic() > deadline:
                tally.extra["stopped_early"] = f"time limit after {len(tally.outcomes)} runs"
                return
            out = workdir / f"{c.name}-{command}"
            out.mkdir(parents=True, exist_ok=True)
            if command == "evaluate":
                args = ["evaluate", "--model", c.model, "--data", str(c.path)] + (["--split", c.split] if c.split else [])
            else:
                args = ["train", "--data", str(c.path), "--arch", "seed", "--epochs", "1", "--batch-size", "8",
                        "--out", str(out / "model.npz")]
            run = run_process(cli + args, timeout, mem_limit, env={"MIMIKA_CACHE": str(out / "cache")}, cwd=out)
            o = classify_cli(run, f"{c.name} ({command})", None, command, c.desc)
            if o.status == "ok" and command == "evaluate" and "nan" in run["stdout"].lower():
                o.status, o.detail = "nan", "NaN in the report"
            tally.outcomes.append(o)
            shutil.rmtree(out, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# training: SIGKILL at random moments, resume, compare with an uninterrupted run; full disk

CKPT, MODEL = "run.ckpt.npz", "model.npz"


def write_face_folders(root: Path, n: int = 24, seed: int = 0) -> Path:
    """A learnable two-class set as class folders: the face upright (happiness) and upside down
    (surprise), subject ids in the file names."""
    import cv2
    faces = face_crops(2 * n, 128, seed)
    for i, f in enumerate(faces):
        label = "happiness" if i < n else "surprise"
        d = root / label
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"S{i % 6:03d}_001_{i:08d}.png"), f if i < n else f[::-1])
    return root


def train_child_main(data: str, run: str, epochs: str) -> None:
    """One training process (resumes from the checkpoint in `run` when there is one)."""
    import mimika
    spec = mimika.create_model("seed", seed=0).config.crop
    faces = mimika.load_dataset(data, spec, crop="whole")
    model = mimika.create_model("seed", labels=faces.labels, seed=0)
    ckpt = Path(run) / CKPT
    print("START", flush=True)
    mimika.train(model, faces, None, mimika.TrainOptions(epochs=int(epochs), batch_size=8, seed=0),
                 out=Path(run) / MODEL, checkpoint=ckpt, resume=ckpt if ckpt.exists() else None,
                 log=lambda s: print(s, flush=True))
    print("DONE", flush=True)


def _train_cmd(data: Path, run: Path, epochs: int) -> list[str]:
    return [sys.executable, str(HERE), "--train", str(data), str(run), str(epochs)]


def npz_loads(path: Path) -> str | None:
    """None if every array of the .npz reads back, else why not."""
    try:
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                z[k]
        return None
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"


def same_weights(a: Path, b: Path) -> bool:
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        keys = [k for k in za.files if k != "__meta__"]
        return sorted(keys) == sorted(k for k in zb.files if k != "__meta__") and all(
            np.array_equal(za[k], zb[k]) for k in keys)


@dataclass
class KillReport:
    runs: int = 0
    kills: int = 0
    kills_during_write: int = 0
    resumed_ok: int = 0
    resume_failed: list = field(default_factory=list)
    unreadable_checkpoints: list = field(default_factory=list)
    weights_differ: list = field(default_factory=list)
    temp_files_from_kills: list = field(default_factory=list)  # temporary files a kill left behind
    temp_left_at_end: list = field(default_factory=list)
    seconds: float = 0.0

    def problems(self) -> list[str]:
        return ([f"resume failed: {x}" for x in self.resume_failed]
                + [f"checkpoint unreadable: {x}" for x in self.unreadable_checkpoints]
                + [f"final weights differ: {x}" for x in self.weights_differ]
                + [f"left behind after the last run: {x}" for x in self.temp_left_at_end])


def _extra_files(run: Path) -> list[str]:
    """Files besides the checkpoint, the model and the history written beside it (MODEL.history.*)."""
    stem = Path(MODEL).with_suffix("").name
    expected = {CKPT, MODEL, f"{stem}.history.json", f"{stem}.history.png"}
    return sorted(p.name for p in run.iterdir() if p.name not in expected)


def sigkill_training(workdir: Path, rng, runs: int = 1, kills_per_run: int = 3, epochs: int = 6,
                     time_limit: float = 300, modes=("during_write", "random", "after_write"),
                     n_faces: int = 24) -> KillReport:
    """Train, SIGKILL the process at random moments (some while a checkpoint is being written),
    resume each time, and compare the final weights with an uninterrupted run's."""
    rep = KillReport()
    t_start = time.monotonic()
    data = write_face_folders(workdir / "faces", n_faces)
    env = {**os.environ, "MIMIKA_CACHE": str(workdir / "cache")}
    ref = workdir / "reference"
    ref.mkdir()
    p = subprocess.Popen(_train_cmd(data, ref, epochs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         text=True, preexec_fn=_die_with_parent)
    _wait_for_start(p, 600)
    t0 = time.monotonic()
    out, err = p.communicate(timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"the uninterrupted training run failed:\n{err[-2000:]}")
    t_epoch = (time.monotonic() - t0) / epochs
    for k in range(runs):
        run = workdir / f"run{k}"
        run.mkdir()
        rep.runs += 1
        kills = 0
        for attempt in range(kills_per_run + 4):
            if time.monotonic() - t_start > time_limit:
                break
            mode = modes[(kills + k) % len(modes)] if kills < kills_per_run else "none"
            had_ckpt = (run / CKPT).exists()
            p = subprocess.Popen(_train_cmd(data, run, epochs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env=env, text=True, preexec_fn=_die_with_parent)
            killed, during_write = _kill_at(p, run, mode, rng, t_epoch)
            out, err = p.communicate()
            if killed:
                kills += 1
                rep.kills += 1
                rep.kills_during_write += during_write
                rep.temp_files_from_kills += [f"run{k}/{n}" for n in _extra_files(run)
                                              if f"run{k}/{n}" not in rep.temp_files_from_kills]
                if (run / CKPT).exists():
                    why = npz_loads(run / CKPT)
                    if why:
                        rep.unreadable_checkpoints.append(f"run{k} after kill {kills}: {why}")
                continue
            if p.returncode != 0:
                rep.resume_failed.append(f"run{k}: exit {p.returncode}: {(err.strip().splitlines() or [''])[-1][:200]}")
                break
            if had_ckpt:
                rep.resumed_ok += 1
            if not same_weights(run / MODEL, ref / MODEL):
                rep.weights_differ.append(f"run{k} ({kills} kills)")
            rep.temp_left_at_end += [f"run{k}/{n}" for n in _extra_files(run)]
            break
        else:
            rep.resume_failed.append(f"run{k}: did not finish in {kills_per_run + 4} starts")
    rep.seconds = round(time.monotonic() - t_start, 1)
    return rep


def _writing_into(pid: int, folder: Path) -> bool:
    """Whether the process has a file in `folder` open for writing (also an unnamed O_TMPFILE)."""
    prefix = str(folder.resolve()) + os.sep
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith(prefix):
                flags = re.search(r"flags:\s+(\d+)", Path(f"/proc/{pid}/fdinfo/{fd}").read_text())
                if flags and int(flags.group(1), 8) & 3:  # O_WRONLY or O_RDWR
                    return True
        except OSError:
            continue
    return False


def _wait_for_start(p: subprocess.Popen, timeout: float) -> bool:
    """Wait until the training process says START (imports done, data loaded)."""
    deadline, seen = time.monotonic() + timeout, b""
    fd = p.stdout.fileno()
    while b"START" not in seen and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                return False
            seen += chunk
    return b"START" in seen


def _kill_at(p: subprocess.Popen, run: Path, mode: str, rng, t_epoch: float) -> tuple[bool, bool]:
    """SIGKILL the training process once it trains: at a random moment of its next epoch,
    while a checkpoint (or the model) is being written (a new temporary file beside it, or a
    file there open for writing), or right after a checkpoint appeared. Returns (killed, a
    write was under way)."""
    if mode == "none" or not _wait_for_start(p, 600):
        return False, False
    deadline = time.monotonic() + 20 * t_epoch + 60
    before = set(_extra_files(run))
    mtime = (run / CKPT).stat().st_mtime_ns if (run / CKPT).exists() else None
    if mode == "random":
        end = time.monotonic() + rng.uniform(0, 0.9 * t_epoch)
        while time.monotonic() < end and p.poll() is None:
            time.sleep(0.002)
    elif mode == "during_write":
        while p.poll() is None and time.monotonic() < deadline:
            if set(_extra_files(run)) - before or _writing_into(p.pid, run):
                time.sleep(rng.uniform(0, 0.002))  # a write can take only milliseconds (tmpfs)
                break
            time.sleep(0.0005)
    elif mode == "after_write":
        while p.poll() is None and time.monotonic() < deadline:
            if (run / CKPT).exists() and (run / CKPT).stat().st_mtime_ns != mtime:
                break
            time.sleep(0.001)
    if p.poll() is not None:
        return False, False
    writing = bool(set(_extra_files(run)) - before) or _writing_into(p.pid, run)
    p.send_signal(signal.SIGKILL)
    p.wait()
    return True, writing


def _mount_namespace_cmd() -> list[str] | None:
    """A command prefix that runs its command in a private mount namespace (to mount a tiny
    tmpfs without touching the machine), or None where that is not allowed."""
    if not shutil.which("unshare") or not shutil.which("mount"):
        return None
    for prefix in (["unshare", "--mount", "--propagation", "private"],
                   ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private"]):
        try:
            r = subprocess.run(prefix + ["sh", "-c", "mount -t tmpfs -o size=64k fuzztest /mnt 2>/dev/null || "
                                         "mount -t tmpfs -o size=64k fuzztest \"$(mktemp -d)\""],
                               capture_output=True, timeout=30)
            if r.returncode == 0:
                return prefix
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def full_disk(workdir: Path, method: str = "auto", n_faces: int = 24) -> list[dict]:
    """Train until a checkpoint exists, then again with no room for the next checkpoint (and,
    with a tmpfs, for the model): the CLI must end with one clear line, the previous checkpoint
    must be left intact and no temporary file behind. `method`: "tmpfs" (a full file system in a
    private mount namespace), "fsize" (RLIMIT_FSIZE: writes past a size fail), or "auto"."""
    cli = cli_command()
    data = write_face_folders(workdir / "faces", n_faces)
    env = {"MIMIKA_CACHE": str(workdir / "cache")}
    base = ["train", "--data", str(data), "--arch", "seed", "--batch-size", "8"]
    prefix = _mount_namespace_cmd() if method in ("auto", "tmpfs") else None
    used = "tmpfs" if prefix else "fsize"
    results = []
    for target in ("checkpoint", "model") if prefix else ("checkpoint",):
        d = workdir / f"disk-{target}"
        d.mkdir()
        first = run_process(cli + base + ["--epochs", "1", "--checkpoint", str(d / CKPT), "--out", str(d / MODEL)],
                            300, env=env)
        if first["rc"] != 0:
            raise RuntimeError(f"training before the full-disk case failed: {first['stderr'][-1000:]}")
        before = (d / CKPT).read_bytes()
        listing = set(os.listdir(d))
        size = len(before)
        if prefix:
            full = d / "full"
            full.mkdir()
            ckpt_dir = full if target == "checkpoint" else d
            out_dir = full
            # room for the old checkpoint but not a second one; for the model: room for nothing
            room = size + size // 2 if target == "checkpoint" else 64 * 1024
            args = base + ["--epochs", "2", "--resume", str(ckpt_dir / CKPT), "--checkpoint", str(ckpt_dir / CKPT),
                           "--out", str(out_dir / MODEL)]
            script = (f"mount -t tmpfs -o size={room} fuzzfull {full} && "
                      + (f"cp {d / CKPT} {full / CKPT} && " if target == "checkpoint" else "")
                      + "\"$@\"; rc=$?; "
                      + (f"cp {full / CKPT} {d / 'after.npz'} 2>/dev/null; " if target == "checkpoint" else "")
                      + f"ls -A {full} > {d / 'listing.txt'}; exit $rc")
            run = run_process(prefix + ["sh", "-c", script, "sh"] + cli + args, 300, env=env)
            after = (d / "after.npz").read_bytes() if target == "checkpoint" and (d / "after.npz").exists() \
                else (d / CKPT).read_bytes()
            left = [n for n in (d / "listing.txt").read_text().split() if n not in (CKPT, MODEL)] \
                if (d / "listing.txt").exists() else ["(no listing)"]
        else:
            args = base + ["--epochs", "2", "--resume", str(d / CKPT), "--checkpoint", str(d / CKPT),
                           "--out", str(d / MODEL)]
            run = run_process(cli + args, 300, env=env, fsize=size // 2)
            after = (d / CKPT).read_bytes()
            left = sorted(set(os.listdir(d)) - listing - {CKPT, MODEL})
        o = classify_cli(run, f"full disk while writing the {target}", None, used, "")
        lines = [l for l in run["stderr"].splitlines() if l.strip()]
        first = next((i for i, l in enumerate(lines) if re.search(r"error|traceback|space|too large", l, re.I)),
                     len(lines))
        results.append({"case": f"full disk while writing the {target} ({used})", "status": o.status,
                        "rc": run["rc"], "last_line": o.detail, "stderr_error_lines": len(lines) - first,
                        "previous_checkpoint_intact": after == before if target == "checkpoint" else None,
                        "left_behind": left})
    return results


# ------------------------------------------------------------------------------------------

if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker_main()
    elif sys.argv[1:2] == ["--train"]:
        train_child_main(*sys.argv[2:5])
    else:
        sys.exit("usage: fuzzing.py --worker | --train DATA RUN EPOCHS (used by tests/test_fuzz.py and bench/fuzz.py)")
