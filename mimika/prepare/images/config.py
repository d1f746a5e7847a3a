"""The reader's settings and limits, shared by every step: how many pixels an image may have and
how many bytes a file, from Python (`settings`), the environment, or the defaults.

- The file limit, 1 GiB (DEFAULT_MAX_FILE_BYTES; $MIMIKA_MAX_FILE_BYTES or
  `settings.max_file_bytes`): the largest uncompressed image within the pixel limit (16-bit RGBA).
  A larger file is refused unread.
- The pixel limit, checked on the header before anything is decoded: DEFAULT_MAX_PIXELS
  ($MIMIKA_MAX_PIXELS or `settings.max_pixels`), above 100 MP medium-format and 108 MP phone
  photos (raise it for 200 MP ones), far below a decompression bomb (a 65-byte PNG can claim
  60000 x 60000 = 3.6 gigapixels). Memory at the limit: up to 8 bytes a pixel (16-bit RGBA) for a
  full-size decode, and OpenCV holds the image twice while decoding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...common.errors import MimikaError

DEFAULT_MAX_PIXELS = 1 << 27  # 134 megapixels (2**27), e.g. 11585 x 11585
DEFAULT_MAX_FILE_BYTES = 1 << 30


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


def check_pixels(name: str, w: int, h: int) -> None:
    """Refuse a zero-sized image, or one over the pixel limit in force, by its size alone."""
    if w <= 0 or h <= 0:
        raise MimikaError(f"{name}: zero-sized image ({w} x {h})")
    max_pixels = limits()[0]
    if w * h > max_pixels:
        raise MimikaError(f"{name}: image too large ({w} x {h} = {w * h:,} pixels; the limit is {max_pixels:,}, "
                          f"MIMIKA_MAX_PIXELS)")

