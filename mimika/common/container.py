"""Pickle-free containers: a JSON document and named numeric arrays in one `.npz` (a zip of `.npy`
files), readable by plain NumPy, with nothing in it that can execute code when loaded.

Layout: `__meta__` holds the JSON document: a format tag naming what the file is (a model file is
"mimika-model", a cache of prepared faces "mimika-faces": one never passes as the other), the
format version, the caller's fields, and the SHA-256 of all of them and of the arrays. Every other entry is a plain
numeric array. Reading checks each entry's header against its size, and the sizes the entries
declare against the archive's own (a compressed entry may not inflate more than MAX_INFLATION
times), before allocating anything, and the checksum after, so a damaged or hostile file is
refused with one line instead of being used to give other answers. A file without a checksum
(format version 1, or an ONNX export without one) is refused too unless the caller asks for it
(`allow_unchecked=True`, $MIMIKA_ALLOW_UNCHECKED=1, the CLI's --allow-unchecked), and then a
warning says it was loaded unchecked. Files are written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..common.errors import MimikaError
from ..common.fileio import write_bytes

FORMAT_VERSION = 2  # 2: document and arrays checksummed; 1 (no checksum) is read only when asked for
MAX_META_BYTES = 16 << 20
MAX_ENTRY_BYTES = 4 << 30
MAX_INFLATION = 32  # deflated numbers inflate 1-3x (float weights) to ~20x (padded text); a zip bomb ~1000x
INFLATION_SLACK = 16 << 20  # bytes all entries together may inflate beyond that (tiny, very regular arrays)
READ_CHUNK = 16 << 20
UNCHECKED_ENV = "MIMIKA_ALLOW_UNCHECKED"
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


class UncheckedFileWarning(UserWarning):
    """A model file without a checksum was loaded, as the caller asked: its weights are unverified."""


def unchecked_allowed(allow: bool | None = None) -> bool:
    """Whether a file that carries no checksum may be loaded: `allow` when given, else
    $MIMIKA_ALLOW_UNCHECKED (1 or 0; unset: no)."""
    if allow is not None:
        return bool(allow)
    text = os.environ.get(UNCHECKED_ENV, "").strip().lower()
    if text in ("", "0", "no", "false"):
        return False
    if text in ("1", "yes", "true"):
        return True
    raise MimikaError(f"{UNCHECKED_ENV}: expected 1 or 0, got {text!r}")


@contextlib.contextmanager
def allowing_unchecked(allow: bool = True):
    """Within the block, with `allow`, files without a checksum load as $MIMIKA_ALLOW_UNCHECKED=1
    makes them (the processes it starts inherit it): the CLI's --allow-unchecked."""
    before = os.environ.get(UNCHECKED_ENV)
    if allow:
        os.environ[UNCHECKED_ENV] = "1"
    try:
        yield
    finally:
        if allow:
            if before is None:
                os.environ.pop(UNCHECKED_ENV, None)
            else:
                os.environ[UNCHECKED_ENV] = before


def check_unchecked(path: str | os.PathLike, what: str, allow: bool | None = None) -> None:
    """For a file that carries no checksum: refuse it in one line, unless the caller asked for it
    by name (then warn that it was loaded unchecked)."""
    if not unchecked_allowed(allow):
        raise MimikaError(f"{path}: {what} without a checksum, so changed weights would go unnoticed: refused "
                          f"(if you trust it, load it with --allow-unchecked, {UNCHECKED_ENV}=1 or allow_unchecked=True)")
    warnings.warn(f"{path}: {what} without a checksum, loaded unchecked as asked", UncheckedFileWarning, stacklevel=3)


def write_container(path: str | os.PathLike, kind: str, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Atomically write `meta` (JSON-ready) and `arrays` as a `kind` container."""
    doc = {"format": kind, "format_version": FORMAT_VERSION, **meta}
    doc["checksum"] = content_checksum(doc, arrays)
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(json.dumps(doc)), **arrays)
    return write_bytes(path, buf.getvalue())


def read_container(path: str | os.PathLike, kind: str, what: str = "model file", allow_unchecked: bool | None = None
                   ) -> tuple[dict, dict[str, np.ndarray]]:
    """`(meta, arrays)` of a `kind` container; a MimikaError naming the file for anything else.
    `allow_unchecked`: read a file without a checksum (None: $MIMIKA_ALLOW_UNCHECKED)."""
    path = Path(path)
    if not path.is_file():
        raise MimikaError(f"{path}: no such {what}")
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # not a zip: np.load would try pickle on it
                raise MimikaError(f"{path}: not a mimika {what} (not an .npz archive)")
        with zipfile.ZipFile(path) as z:
            entries = {info.filename: info for info in z.infolist()}
            _check_sizes(entries.values(), path.stat().st_size)
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
    if version < 2:
        check_unchecked(path, f"a {what} of format version {version}", allow_unchecked)
    elif meta.get("checksum") != content_checksum(meta, arrays):
        raise MimikaError(f"{path}: damaged {what} (its contents do not match the checksum stored with them)")
    return meta, arrays


def _check_sizes(entries, archive_bytes: int) -> None:
    """The sizes the entries declare, against the archive's: a stored entry holds its bytes in the
    archive; deflated ones inflate at most MAX_INFLATION-fold (plus INFLATION_SLACK in all), so a
    small file cannot make the reader allocate gigabytes."""
    beyond = 0
    for info in entries:
        if info.compress_size > archive_bytes:
            raise ValueError(f"entry {info.filename} declares {info.compress_size} bytes in a {archive_bytes}-byte file")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise ValueError(f"stored entry {info.filename} declares {info.file_size} bytes but holds "
                                 f"{info.compress_size}")
        else:
            beyond += max(0, info.file_size - MAX_INFLATION * info.compress_size)
        if beyond > INFLATION_SLACK:
            raise ValueError(f"entry {info.filename} would inflate {info.compress_size} bytes to {info.file_size} "
                             "(a decompression bomb, not numbers)")


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
        array = np.empty(count, dtype)  # filled in place: the entry is in memory once, not twice
        data = memoryview(array.view(np.uint8))
        done = 0
        while done < len(data):  # the zip layer checks the entry's CRC at its end
            part = f.read(min(READ_CHUNK, len(data) - done))
            if not part:
                raise ValueError(f"entry {info.filename} is truncated")
            data[done:done + len(part)] = part
            done += len(part)
    return array.reshape(shape[::-1]).T.copy() if fortran else array.reshape(shape)
