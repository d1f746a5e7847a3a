"""Model files: weights and their configuration in one `.npz`, readable without pickle.

Layout: `__meta__` holds a JSON document (format tag, model config, any training state);
every other entry is a plain numeric array. Files are written to a temporary name and renamed,
so an interrupted save never leaves a half-written model behind.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import MimikaError
from .fileio import write_bytes

FORMAT = "mimika-model"
FORMAT_VERSION = 1


def write_npz(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Atomically write `meta` and `arrays` to `path`."""
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta}
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(json.dumps(doc)), **arrays)
    return write_bytes(path, buf.getvalue())


def read_npz(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """`(meta, arrays)` of a mimika model file; a MimikaError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise MimikaError(f"{path}: no such model file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # an .npz is a zip archive; np.load would try pickle on anything else
            raise MimikaError(f"{path}: not a mimika model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise MimikaError(f"{path}: not a mimika model file (no __meta__ entry)")
            meta = json.loads(str(z["__meta__"]))
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
    except MimikaError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        raise MimikaError(f"{path}: not a mimika model file or corrupt ({type(e).__name__}: {e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise MimikaError(f"{path}: not a mimika model file (format tag missing)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise MimikaError(f"{path}: model format {meta['format_version']} is newer than this mimika reads")
    return meta, arrays
