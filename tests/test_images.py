"""Reading images from anywhere (issue 9): EXIF orientation, every kind of source, every format a
folder scan finds, decompression bombs and huge photos, decoder errors and warnings, special
files. Every image is made from the astronaut photo."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from mimika import MimikaError
from mimika.prepare import images, video

# ---------------------------------------------------------------------------------------------
# helpers


def gray_of(bgr: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(w: int, h: int, idat: bytes = zlib.compress(b"")) -> bytes:
    """A tiny PNG whose header says w x h (RGB, 8 bits)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_claiming(bgr: np.ndarray, w: int, h: int) -> bytes:
    """A real small JPEG whose frame header (SOF0) is patched to say w x h."""
    data = bytearray(cv2.imencode(".jpg", bgr)[1].tobytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, h, w)
    return bytes(data)


def corrupt_jpeg(path: Path) -> bytes:
    """The astronaut JPEG cut at 3/4 and closed: libjpeg decodes it, warning on stderr."""
    data = path.read_bytes()
    return data[: len(data) * 3 // 4] + b"\xff\xd9"


# Orientation o says how to turn the stored pixels to stand upright; Pillow's exif_transpose does
# that turn. Storing upright.transpose(INVERSE[o]) with tag o must therefore read as `upright`.
T = Image.Transpose
INVERSE = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
           6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}


def with_orientation(upright: Image.Image, orientation: int, fmt: str = "JPEG") -> bytes:
    """The image stored turned, with the EXIF (TIFF: the tag) that says how to turn it back."""
    stored = upright if INVERSE[orientation] is None else upright.transpose(INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    kw = {"tiffinfo": {274: orientation}} if fmt == "TIFF" else {"exif": exif.tobytes()}
    stored.save(buf, fmt, **kw, **({"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


@pytest.fixture
def upright(astronaut_bgr) -> Image.Image:
    """Not square, so that a wrong turn also changes the shape."""
    return Image.fromarray(astronaut_bgr[:384, :, ::-1].copy())


@pytest.fixture
def reset_settings(monkeypatch):
    for name in ("max_pixels", "max_file_bytes", "verbose"):
        monkeypatch.setattr(images.settings, name, getattr(images.settings, name))
    monkeypatch.delenv("MIMIKA_MAX_PIXELS", raising=False)
    monkeypatch.delenv("MIMIKA_MAX_FILE_BYTES", raising=False)


def run_limited(code: str, mem_mib: int = 1024, timeout: float = 60) -> dict:
    """Run code in a child whose address space may grow by `mem_mib` only after its imports (a
    regression then fails there instead of eating the machine); `report(**kw)` returns its data."""
    prelude = textwrap.dedent(f"""
        import json, resource, sys
        import cv2, numpy as np
        from mimika import MimikaError, images
        cv2.setNumThreads(1)
        def status(key):
            return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":")) / 1024
        resource.setrlimit(resource.RLIMIT_AS, ((int(status("VmPeak")) + {mem_mib}) << 20,) * 2)
        def report(**kw):
            print("REPORT " + json.dumps(kw))
    """)
    env = dict(os.environ, MALLOC_ARENA_MAX="2")
    proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    return json.loads(lines[-1][len("REPORT "):])


# ---------------------------------------------------------------------------------------------
# 7. orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_read_upright(tmp_path, upright, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(with_orientation(upright, orientation))
    expect = np.asarray(upright.convert("L"))
    gray = images.load_gray(path)
    assert gray.shape == expect.shape
    assert diff(gray, expect) < 3
    if orientation != 1:  # the stored pixels are far from upright: the test can tell
        stored = np.asarray(Image.open(path).convert("L"))
        assert stored.shape != expect.shape or diff(stored, expect) > 20
    assert diff(gray, np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("L"))) < 2  # as Pillow
    loaded = images.load_image(path)
    assert loaded.size == upright.size and loaded.scale == 1.0 and loaded.source == str(path)
    assert diff(gray_of(images.read_color(path)), expect) < 3
    shrunk = images.load_image(path, max_side=256)  # the reduced decode turns as well
    assert shrunk.gray.shape == (192, 256) and shrunk.size == upright.size and shrunk.scale == 2.0
    assert diff(shrunk.gray, cv2.resize(expect, (256, 192), interpolation=cv2.INTER_AREA)) < 3


@pytest.mark.parametrize("orientation", (1, 3, 6, 8))
def test_the_colour_copy_for_the_detector_is_the_gray_images_twin(tmp_path, upright, orientation):
    """keep_color: a BGR copy beside the gray image, upright and shrunk as it is (the reduced JPEG
    decode too), the gray image unchanged; none for a gray source."""
    data = with_orientation(upright, orientation)
    expect = np.asarray(upright)[:, :, ::-1]
    for max_side in (None, 256):
        plain = images.load_image(data, max_side=max_side)
        both = images.load_image(data, max_side=max_side, keep_color=True)
        assert plain.color is None and plain.for_detector is plain.gray
        assert np.array_equal(both.gray, plain.gray) and both.scale == plain.scale and both.size == plain.size
        assert both.color.shape == (*both.gray.shape, 3) and both.color.dtype == np.uint8
        assert both.for_detector is both.color
        want = expect if max_side is None else cv2.resize(expect, (256, 192), interpolation=cv2.INTER_AREA)
        assert diff(both.color, want) < 3
        assert diff(both.color[:, :, 0], want[:, :, 2]) > 10  # BGR, not RGB
    gray_file = io.BytesIO()
    upright.convert("L").save(gray_file, "PNG")
    assert images.load_image(gray_file.getvalue(), keep_color=True).color is None
    rgb, rgba = np.asarray(upright), np.asarray(upright.convert("RGBA"))
    from_arrays = [images.load_image(a, color=c, keep_color=True).color
                   for a, c in ((rgb, "rgb"), (rgb[:, :, ::-1], "bgr"), (rgba, "rgb"))]
    assert all(np.array_equal(a, expect) for a in from_arrays)
    assert images.load_image(rgb[:, :, 0], keep_color=True).color is None


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_exif_orientation_in_other_formats(upright, fmt):
    upright = upright.resize((128, 96), Image.Resampling.BOX)  # lossless WebP is slow to write
    expect = np.asarray(upright.convert("L"))
    for orientation in range(1, 9):
        data = with_orientation(upright, orientation, fmt)
        assert diff(images.load_gray(data), expect) < 1, orientation
        shrunk = images.load_image(data, max_side=64).gray
        assert diff(shrunk, cv2.resize(expect, (64, 48), interpolation=cv2.INTER_AREA)) < 2


def test_16_bit_reads_as_before_and_turns(tmp_path, astronaut_bgr):
    bgr16 = astronaut_bgr.astype(np.uint16) * 257 + 100  # low bytes that >> 8 must drop
    for suffix in (".png", ".tiff"):
        cv2.imwrite(str(tmp_path / f"a{suffix}"), bgr16)
        assert images.read_image(tmp_path / f"a{suffix}").dtype == np.uint16
        assert np.array_equal(images.load_gray(tmp_path / f"a{suffix}"), gray_of((bgr16 >> 8).astype(np.uint8)))
    gray16 = gray_of(astronaut_bgr)[:384].astype(np.uint16) * 257
    Image.fromarray(np.rot90(gray16).copy()).save(tmp_path / "turned.tif", tiffinfo={274: 6})  # 16-bit, turned
    assert np.array_equal(images.read_image(tmp_path / "turned.tif"), gray16)


# ---------------------------------------------------------------------------------------------
# 8. inputs


def test_every_source_gives_the_same_gray(tmp_path, astronaut_bgr, monkeypatch):
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), astronaut_bgr)
    expect = images.load_gray(path)
    data = path.read_bytes()
    assert np.array_equal(images.load_gray(str(path)), expect)
    assert np.array_equal(images.load_gray(astronaut_bgr, color="bgr"), expect)
    assert np.array_equal(images.load_gray(astronaut_bgr[:, :, ::-1]), expect)  # RGB, the default for arrays
    assert np.array_equal(images.to_gray(astronaut_bgr, color="bgr"), expect)
    assert np.array_equal(images.read_color(astronaut_bgr, color="bgr"), astronaut_bgr)
    assert np.array_equal(images.load_gray(Image.open(path)), expect)
    palette = Image.open(path).convert("P")
    assert np.array_equal(images.load_gray(palette), images.load_gray(palette.convert("RGB")))
    for blob in (data, bytearray(data), memoryview(data)):
        assert np.array_equal(images.load_gray(blob), expect)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    loaded = images.load_image("-")
    assert np.array_equal(loaded.gray, expect) and loaded.source == "<stdin>"
    assert images.load_image(data).source == "<bytes>" and images.load_image(Image.open(path)).source == "<PIL image>"
    assert images.load_image(astronaut_bgr, color="bgr").source == "<array>"


def test_pil_image_is_turned_like_the_file(tmp_path, upright):
    path = tmp_path / "o6.jpg"
    path.write_bytes(with_orientation(upright, 6))
    assert diff(images.load_gray(Image.open(path)), images.load_gray(path)) < 2


@pytest.mark.parametrize("thing, starts", [
    ([1, 2, 3], "<list>: not an image"),
    (7, "<int>: not an image"),
    (None, "<NoneType>: not an image"),
    (np.zeros((2, 8, 8, 3), np.uint8), "<array>: expected an H x W"),
    (np.zeros((8, 8, 2), np.uint8), "<array>: expected an H x W"),
    (b"", "<bytes>: empty"),
    (b"GIF89a" + bytes(20), "<bytes>: not a readable image"),
])
def test_anything_else_is_refused_in_one_line(thing, starts):
    with pytest.raises(MimikaError) as e:
        images.load_gray(thing)
    assert str(e.value).startswith(starts) and "\n" not in str(e.value)


def test_color_must_be_rgb_or_bgr(astronaut_bgr):
    with pytest.raises(MimikaError, match="color must be 'rgb' or 'bgr'"):
        images.load_gray(astronaut_bgr, color="hsv")


def test_stdin_terminal_and_empty(monkeypatch):
    class Tty(io.BytesIO):
        def isatty(self):
            return True
    monkeypatch.setattr(sys, "stdin", Tty(b"x"))
    with pytest.raises(MimikaError, match="<stdin>: is a terminal"):
        images.load_gray("-")
    monkeypatch.setattr(sys, "stdin", io.BytesIO(b""))
    with pytest.raises(MimikaError, match="<stdin>: empty"):
        images.load_gray("-")


def write_as(path: Path, bgr: np.ndarray) -> None:
    """The image in the format its suffix names: OpenCV's writer, or Pillow's where OpenCV has none."""
    suffix = path.suffix.lower()
    pillow = {".jfif": ("JPEG", {}), ".j2k": ("JPEG2000", {"no_jp2": True})}
    if suffix in pillow:
        fmt, kw = pillow[suffix]
        Image.fromarray(bgr[:, :, ::-1]).save(path, fmt, **kw)
        return
    img = bgr
    if suffix in (".pbm", ".pgm"):
        img = gray_of(bgr)
    if suffix in (".hdr", ".pfm"):
        img = bgr.astype(np.float32) / 255
    ok, buf = cv2.imencode(".png" if suffix == ".apng" else suffix, img)
    assert ok, suffix
    path.write_bytes(buf.tobytes())


def test_every_format_read_is_found_in_folders(tmp_path, astronaut_bgr, capfd):
    small = cv2.resize(astronaut_bgr, (128, 128), interpolation=cv2.INTER_AREA)
    expect = gray_of(small)
    (tmp_path / "sub").mkdir()
    for suffix in sorted(images.IMAGE_SUFFIXES):  # suffixes in any case
        write_as(tmp_path / "sub" / f"a{suffix.upper() if suffix == '.gif' else suffix}", small)
    (tmp_path / "notes.txt").write_text("not an image")
    found = images.list_images(tmp_path)
    assert len(found) == len(images.IMAGE_SUFFIXES) and any(p.suffix == ".GIF" for p in found)
    for p in found:
        gray = images.load_gray(p)
        assert gray.shape == (128, 128), p
        if p.suffix != ".pbm":  # 1 bit per pixel
            assert diff(gray, expect) < 8, p
    assert capfd.readouterr().err == ""  # OpenCV's log line about JPEG 2000 colour spaces stays off


def test_multi_page_tiff_reads_the_first_page_and_says_so(tmp_path, astronaut_bgr):
    first = Image.fromarray(astronaut_bgr[:, :, ::-1].copy())
    others = [first.transpose(T.FLIP_TOP_BOTTOM), first.transpose(T.ROTATE_90)]
    first.save(tmp_path / "pages.tif", save_all=True, append_images=others)
    loaded = images.load_image(tmp_path / "pages.tif")
    assert np.array_equal(loaded.gray, gray_of(astronaut_bgr))
    assert loaded.notes == ["3 pages; read the first"]
    first.save(tmp_path / "frames.gif", save_all=True, append_images=others)
    assert images.load_image(tmp_path / "frames.gif").notes == ["3 frames; read the first"]
    assert images.load_image(astronaut_bgr).notes == []


# ---------------------------------------------------------------------------------------------
# 13. bombs, huge images and files


def test_bombs_and_huge_files_are_refused_before_decoding(tmp_path, astronaut_bgr):
    (tmp_path / "bomb.png").write_bytes(png_claiming(60000, 60000))
    (tmp_path / "bomb.jpg").write_bytes(jpeg_claiming(astronaut_bgr, 30000, 30000))
    (tmp_path / "bomb.pam").write_bytes(b"P7\nWIDTH 30000\nHEIGHT 30000\nDEPTH 3\nMAXVAL 255\nENDHDR\n" + bytes(64))
    (tmp_path / "bomb.pfm").write_bytes(b"PF\n30000 30000\n-1.0\n" + bytes(64))
    (tmp_path / "bomb.hdr").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n" + bytes(64))
    with open(tmp_path / "huge.jpg", "wb") as f:
        f.truncate(20 << 30)  # sparse: 20 GB that take no disk
    got = run_limited(f"""
        import time
        out = {{}}
        for name in ("bomb.png", "bomb.jpg", "bomb.pam", "bomb.pfm", "bomb.hdr", "huge.jpg"):
            before, t = status("VmHWM"), time.perf_counter()
            try:
                images.load_gray({str(tmp_path)!r} + "/" + name)
                out[name] = "read"
            except MimikaError as e:
                out[name] = [str(e), time.perf_counter() - t, status("VmHWM") - before]
        report(**out)
    """)
    assert len(png_claiming(60000, 60000)) < 70
    for name, what in (("bomb.png", "image too large (60000 x 60000"), ("bomb.jpg", "image too large (30000 x 30000"),
                       ("bomb.pam", "image too large (30000 x 30000"), ("bomb.pfm", "image too large (30000 x 30000"),
                       ("bomb.hdr", "image too large (30000 x 30000"), ("huge.jpg", "file too large")):
        message, seconds, mib = got[name]
        assert message.startswith(f"{tmp_path / name}: {what}") and "MIMIKA_MAX" in message
        assert seconds < 2 and mib < 20, (name, seconds, mib)


def test_limits_are_configurable(tmp_path, astronaut_path, monkeypatch, reset_settings):
    monkeypatch.setenv("MIMIKA_MAX_PIXELS", "100000")
    with pytest.raises(MimikaError, match=r"512 x 512 = 262,144 pixels; the limit is 100,000, MIMIKA_MAX_PIXELS"):
        images.load_gray(astronaut_path)
    images.settings.max_pixels = 512 * 512  # the Python setting wins over the environment
    assert images.load_gray(astronaut_path).shape == (512, 512)
    monkeypatch.setenv("MIMIKA_MAX_FILE_BYTES", "1000")
    with pytest.raises(MimikaError, match="file too large"):
        images.load_gray(astronaut_path)
    assert images.limits() == (512 * 512, 1000)
    monkeypatch.setenv("MIMIKA_MAX_FILE_BYTES", "lots")
    with pytest.raises(MimikaError, match="MIMIKA_MAX_FILE_BYTES: expected a positive whole number"):
        images.load_gray(astronaut_path)


def test_a_large_photo_is_read_with_bounded_memory(tmp_path, astronaut_bgr):
    """8000 x 8000, JPEG and PNG: load_image keeps the peak far below the 192 MB color image."""
    canvas = np.full((8000, 8000, 3), 128, np.uint8)
    canvas[3000:3512, 3000:3512] = astronaut_bgr
    cv2.imwrite(str(tmp_path / "big.jpg"), canvas, [cv2.IMWRITE_JPEG_QUALITY, 80])
    co = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)  # OpenCV's PNG writer takes 2 s here
    idat = b"".join([co.compress(b"\x00" + row.tobytes()) for row in canvas[:, :, ::-1]] + [co.flush()])
    (tmp_path / "big.png").write_bytes(png_claiming(8000, 8000, idat))
    del canvas
    got = run_limited(f"""
        out = {{}}
        base = status("VmHWM")
        for name in ("big.jpg", "big.png"):
            img = images.load_image({str(tmp_path)!r} + "/" + name)
            a, b = round(3000 / img.scale), round(3512 / img.scale)
            face = img.gray[a:b, a:b]
            out[name] = [img.gray.shape, img.scale, img.size, status("VmHWM") - base, float(face.mean())]
            del img
            img = images.load_image({str(tmp_path)!r} + "/" + name, keep_color=True)  # the detector's copy
            out[name + " colour"] = [None if img.color is None else list(img.color.shape), status("VmHWM") - base]
            del img
        report(**out)
    """)
    # JPEG: decoded by libjpeg at half size, 2 x 15 MiB (OpenCV's decode holds twice the image);
    # PNG: decoded to one channel, 2 x 61 MiB. The color image alone would be 183 MiB, 366 decoding.
    for name, side, most_mib in (("big.jpg", 4000, 60), ("big.png", 4096, 175)):
        shape, scale, size, mib, face_mean = got[name]
        assert shape == [side, side] and scale == 8000 / side and size == [8000, 8000], name
        assert abs(face_mean - gray_of(astronaut_bgr).mean()) < 3, name  # the photo is where it was
        assert mib < most_mib, (name, mib)
    # the colour copy: libjpeg's reduced colour decode, 2 x 46 MiB besides the gray; none for the PNG
    assert got["big.jpg colour"][0] == [4000, 4000, 3] and got["big.jpg colour"][1] < 150
    assert got["big.png colour"][0] is None


def test_load_image_shrinks_and_says_by_how_much(tmp_path, astronaut_bgr):
    cv2.imwrite(str(tmp_path / "a.jpg"), astronaut_bgr)
    cv2.imwrite(str(tmp_path / "a.png"), astronaut_bgr)
    full = gray_of(astronaut_bgr)
    for source in (tmp_path / "a.jpg", tmp_path / "a.png", astronaut_bgr[:, :, ::-1]):
        for max_side in (128, 200, 512, 4096):
            loaded = images.load_image(source, max_side=max_side)
            side = min(512, max_side)
            assert loaded.gray.shape == (side, side) and loaded.scale == max(1.0, 512 / max_side)
            assert loaded.size == (512, 512)
            assert diff(loaded.gray, cv2.resize(full, (side, side), interpolation=cv2.INTER_AREA)) < 3


# ---------------------------------------------------------------------------------------------
# 14. decoder errors and messages


def test_opencv_errors_become_one_line(tmp_path, reset_settings):
    (tmp_path / "bomb.png").write_bytes(png_claiming(60000, 60000))
    images.settings.max_pixels = 10 ** 10  # past ours: OpenCV's own limit raises cv2.error
    with pytest.raises(MimikaError) as e:
        images.load_gray(tmp_path / "bomb.png")
    assert str(e.value).startswith(f"{tmp_path / 'bomb.png'}: not a readable image (OpenCV:")
    assert "CV_IO_MAX_IMAGE_PIXELS" in str(e.value) and "\n" not in str(e.value)


def test_nan_zero_size_and_broken_data(tmp_path, astronaut_bgr):
    for bad in (np.nan, np.inf):
        f = (gray_of(astronaut_bgr) / 255).astype(np.float32)
        f[10, 10] = bad
        cv2.imwrite(str(tmp_path / "f.tiff"), f)
        with pytest.raises(MimikaError, match="f.tiff: image has NaN or infinite values"):
            images.load_gray(tmp_path / "f.tiff")
    bmp = bytearray(cv2.imencode(".bmp", astronaut_bgr[:4, :4])[1].tobytes())
    struct.pack_into("<i", bmp, 18, 0)  # width 0
    (tmp_path / "zero.bmp").write_bytes(bmp)
    with pytest.raises(MimikaError, match="zero.bmp: "):
        images.load_gray(tmp_path / "zero.bmp")
    (tmp_path / "zero.png").write_bytes(png_claiming(0, 10))
    with pytest.raises(MimikaError, match="zero.png: "):
        images.load_gray(tmp_path / "zero.png")
    ok_png = cv2.imencode(".png", astronaut_bgr)[1].tobytes()
    idat = ok_png.find(b"IDAT")
    broken = ok_png[:idat + 4] + bytes(200) + ok_png[idat + 204:]  # pixel data zeroed: libpng complains
    (tmp_path / "broken.png").write_bytes(broken)
    with pytest.raises(MimikaError) as e:
        images.load_gray(tmp_path / "broken.png")
    assert str(e.value).startswith(f"{tmp_path / 'broken.png'}: not a readable image (decoder: libpng")


def test_decoder_warnings_stay_off_the_terminal_unless_verbose(astronaut_path, capfd, reset_settings):
    data = corrupt_jpeg(astronaut_path)
    loaded = images.load_image(data)
    assert loaded.gray.shape == (512, 512)
    assert any("Corrupt JPEG data" in m for m in loaded.decoder_messages)
    assert capfd.readouterr().err == ""
    images.set_verbose(True)
    images.load_image(data)
    assert "Corrupt JPEG data" in capfd.readouterr().err


def test_decoding_from_many_threads(astronaut_path, capfd):
    data, good = corrupt_jpeg(astronaut_path), astronaut_path.read_bytes()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: images.load_image(data if i % 2 else good), range(40)))
    assert all(r.gray.shape == (512, 512) for r in results)
    assert all(bool(r.decoder_messages) == (i % 2 == 1) for i, r in enumerate(results))
    os.write(2, b"fd 2 is back\n")
    assert capfd.readouterr().err == "fd 2 is back\n"


# ---------------------------------------------------------------------------------------------
# 15. special files


def refused_in_time(fn, path: Path, match: str) -> None:
    """fn(path) must raise MimikaError matching `match` within 5 s; a reader stuck on a FIFO is
    released by opening its other end."""
    out: list = []

    def run():
        try:
            fn(path)
            out.append("read")
        except Exception as e:  # noqa: BLE001 - reported below
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    if t.is_alive():
        with open(path, "wb"):
            pass
        t.join(5)
        pytest.fail(f"{fn.__name__}({path.name}) blocked")
    assert isinstance(out[0], MimikaError) and match in str(out[0]), out[0]
    assert str(out[0]).startswith(str(path))


@pytest.fixture
def special(tmp_path) -> Path:
    d = tmp_path / "special"
    d.mkdir()
    for suffix in (".jpg", ".mp4"):
        os.mkfifo(d / f"fifo{suffix}")
        os.symlink("/dev/zero", d / f"zero{suffix}")
        (d / f"folder{suffix}").mkdir()
        os.symlink(f"loop2{suffix}", d / f"loop1{suffix}")
        os.symlink(f"loop1{suffix}", d / f"loop2{suffix}")
        os.symlink(f"missing{suffix}", d / f"dangling{suffix}")
    os.symlink(d, d / "folder.jpg" / "back")  # a folder loop
    return d


@pytest.mark.parametrize("name, match", [
    ("fifo", "is a FIFO"), ("zero", "is a character device"), ("folder", "is a folder"),
    ("loop1", "symbolic link loop"), ("dangling", "broken symbolic link"),
])
def test_special_files_are_refused_without_blocking(special, name, match):
    refused_in_time(images.load_gray, special / f"{name}.jpg", match)
    refused_in_time(video.open_video, special / f"{name}.mp4", match)


def test_folder_scans_skip_special_files_and_end(special, astronaut_bgr):
    cv2.imwrite(str(special / "folder.jpg" / "real.jpg"), astronaut_bgr)
    (special / "clip.mp4").write_bytes(b"not really")
    os.symlink(special / "clip.mp4", special / "link.mp4")
    t = time.perf_counter()
    assert images.list_images(special) == [special / "folder.jpg" / "real.jpg"]
    assert video.list_videos(special) == [special / "clip.mp4", special / "link.mp4"]
    assert time.perf_counter() - t < 2
