"""Pickle-free containers: a JSON document and named numeric arrays in one `.npz` (a zip of `.npy`
files), readable by plain NumPy, with nothing in it that can execute code when loaded.

Layout: `__meta__` holds the JSON document: a format tag naming what the file is (a model file is
"mimika-model", a cache of prepared faces "mimika-faces": one never passes as the other), the
format version, the caller's fields, and the SHA-256 of all of them and of the arrays. Every other entry is a plain
numeric array. Reading checks each entry's header against its size before allocating anything,
and the checksum after, so a damaged or hostile file is refused with one line instead of being
used to give other answers. Files are written atomically.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..common.errors import MimikaError
from ..common.fileio import write_bytes

FORMAT_VERSION = 2  # 2: document and arrays checksummed; 1 (no checksum) is still read
MAX_META_BYTES = 16 << 20
MAX_ENTRY_BYTES = 4 << 30
_NUMERIC_KINDS = "biufcU"  # bool, ints, floats, complex, fixed-width unicode (subject ids); never objects


def content_checksum(doc: dict, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the JSON document (its "checksum" field left out; keys sorted) and each array's
    name, dtype, shape and bytes, in name order: a changed label list is as damaged as a changed weight."""
    h = hashlib.sha256(json.dumps({k: v for k, v in doc.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_container(path: str | os.PathLike, kind: str, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Atomically write `meta` (JSON-ready) and `arrays` as a `kind` container."""
    doc = {"format": kind, "format_version": FORMAT_VERSION, **meta}
    doc["checksum"] = content_checksum(doc, arrays)
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(json.dumps(doc)), **arrays)
    return write_bytes(path, buf.getvalue())


def read_container(path: str | os.PathLike, kind: str, what: str = "model file"
                   ) -> tuple[dict, dict[str, np.ndarray]]:
    """`(meta, arrays)` of a `kind` container; a MimikaError naming the file for anything else."""
    path = Path(path)
    if not path.is_file():
        raise MimikaError(f"{path}: no such {what}")
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # not a zip: np.load would try pickle on it
                raise MimikaError(f"{path}: not a mimika {what} (not an .npz archive)")
        with zipfile.ZipFile(path) as z:
            entries = {info.filename: info for info in z.infolist()}
            if "__meta__.npy" not in entries:
                raise MimikaError(f"{path}: not a mimika {what} (no __meta__ entry)")
            meta = json.loads(str(_read_entry(z, entries["__meta__.npy"], MAX_META_BYTES)))
            if not isinstance(meta, dict) or meta.get("format") != kind:
                found = meta.get("format") if isinstance(meta, dict) else None
                raise MimikaError(f"{path}: not a mimika {what} (format {found!r}, expected {kind!r})")
            version = meta.get("format_version", 0)
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise MimikaError(f"{path}: format version {version!r} is newer than this mimika reads")
            arrays = {name[:-4]: _read_entry(z, info, MAX_ENTRY_BYTES)
                      for name, info in entries.items() if name != "__meta__.npy" and name.endswith(".npy")}
    except MimikaError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError, KeyError,
            TypeError, RuntimeError, NotImplementedError, RecursionError, MemoryError, UnicodeDecodeError,
            SyntaxError, tokenize.TokenError) as e:
        # RuntimeError: an encrypted entry; NotImplementedError: an unsupported compression method;
        # RecursionError: JSON nested thousands deep; SyntaxError, TokenError: an unparsable .npy header
        raise MimikaError(f"{path}: not a mimika {what} or damaged ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:160] if str(e) else 'unreadable'})") from None
    if version >= 2 and meta.get("checksum") != content_checksum(meta, arrays):
        raise MimikaError(f"{path}: damaged {what} (its contents do not match the checksum stored with them)")
    return meta, arrays


def _read_entry(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> np.ndarray:
    """One `.npy` entry, its header checked against its size before any allocation."""
    if info.file_size > limit:
        raise ValueError(f"entry {info.filename} declares {info.file_size} bytes, more than {limit}")
    with z.open(info) as f:
        version = np.lib.format.read_magic(f)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f"entry {info.filename}: unsupported .npy version {version}")
        shape, fortran, dtype = readers[version](f)
        if dtype.hasobject or dtype.kind not in _NUMERIC_KINDS:
            raise ValueError(f"entry {info.filename}: {dtype} arrays are not allowed")
        count = int(np.prod(shape, dtype=object))
        header = f.tell()
        if count * dtype.itemsize != info.file_size - header:
            raise ValueError(f"entry {info.filename}: its header claims shape {shape} of {dtype}, "
                             f"which does not fit its {info.file_size - header} bytes")
        data = f.read(count * dtype.itemsize)  # the zip layer checks the entry's CRC at its end
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"entry {info.filename} is truncated")
    array = np.frombuffer(data, dtype=dtype)
    return (array.reshape(shape[::-1]).T if fortran else array.reshape(shape)).copy()
