"""Input preparation, step 1: read an image and make it 8-bit grayscale.

A source is a file path, "-" (standard input), bytes (an encoded file's contents), a numpy array
(gray, RGB, or BGR with color="bgr"; any integer or float depth) or a PIL image. Every failure is a
`MimikaError` whose message starts with the source's name ("<stdin>", "<bytes>", "<array>",
"<PIL image>" or the path) and says the problem in one line.

Files come from anywhere (phones, the web, fuzzers), so reading is defensive, in four steps, each
a module that says how and why:

- `source`: what a caller hands in, and its name; only regular files are opened, non-blocking,
  within the file limit.
- `probe`: Pillow reads the header (format, size, pages, EXIF orientation) before anything is
  decoded, so the pixel limit refuses a decompression bomb from its header.
- `decode`: OpenCV decodes at the stored depth, turns the image upright, and gives gray (and a
  colour copy for the CNN detector); a huge photo is shrunk while it is decoded.
- `capture`: the decoders' stderr and warnings are captured per decode, under a lock.

`config` holds the settings and limits they share (`settings`, `limits()`, `set_verbose`).
"""

from __future__ import annotations

from .capture import decoding as _decoding  # noqa: F401  (bench/large_image.py times it)
from .config import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS, ReadSettings, limits, set_verbose, settings
from .decode import MAX_SIDE, LoadedImage, load_gray, load_image, read_color, read_image, to_gray
from .probe import pillow as _pillow  # noqa: F401  (bench/large_image.py times Pillow's import)
from .probe import read_header as _probe  # noqa: F401  (and the probe)
from .source import IMAGE_SUFFIXES, ImageLike, check_regular_file, list_files, list_images

__all__ = [
    "DEFAULT_MAX_FILE_BYTES", "DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "MAX_SIDE", "ImageLike", "LoadedImage",
    "ReadSettings", "check_regular_file", "limits", "list_files", "list_images", "load_gray", "load_image",
    "read_color", "read_image", "set_verbose", "settings", "to_gray",
]
