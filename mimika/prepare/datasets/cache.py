"""On-disk cache of prepared face sets, so detection, cropping and CSV parsing run once.

The key covers the data (each file's path, size and modification time) and the preparation
settings (crop size, margin, crop mode, detector), so a change to either makes a new entry.
Entries are pickle-free containers (`mimika/container.py`) written atomically in $MIMIKA_CACHE (default
~/.cache/mimika).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ...common.container import read_container, write_container
from .faceset import FaceSet

CACHE_VERSION = 3  # 2: the detector that cropped the faces is kept; 3: CK+ has its fixed split, the CNN reads colour
FORMAT = "mimika-faces"  # a cache entry is not a model file, and cannot be loaded as one


def cache_dir() -> Path:
    return Path(os.environ.get("MIMIKA_CACHE") or Path.home() / ".cache" / "mimika")


def files_signature(paths: list[Path]) -> str:
    h = hashlib.sha1()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _save(path: Path, data: FaceSet) -> None:
    arrays = {"faces": data.faces, "y": data.y, "subjects": data.subjects.astype(str),
              "sources": np.array(data.sources, dtype=str)}
    if data.splits is not None:
        arrays["splits"] = data.splits.astype(str)
    if data.soft is not None:
        arrays["soft"] = data.soft
    write_container(path, FORMAT, {"faceset": {"labels": data.labels, "skipped": data.skipped, "notes": data.notes,
                                               "detector": data.detector}}, arrays)


def _load(path: Path) -> FaceSet:
    meta, a = read_container(path, FORMAT, "face cache")
    m = meta["faceset"]
    return FaceSet(a["faces"], a["y"], m["labels"], a["subjects"], a["sources"].tolist(), m["skipped"],
                   m["notes"], a.get("splits"), a.get("soft"), m.get("detector", ""))


def cached(key: dict, build: Callable[[], FaceSet], log: Callable[[str], None] | None = None) -> FaceSet:
    """The face set for `key` from the cache, or built and stored there."""
    if os.environ.get("MIMIKA_NO_CACHE"):
        return build()
    digest = hashlib.sha1(json.dumps({"v": CACHE_VERSION, **key}, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir() / f"faces-{digest}.npz"
    if path.is_file():
        try:
            data = _load(path)
            if log:
                log(f"using prepared faces from the cache ({path})")
            return data
        except Exception:  # a damaged cache entry is rebuilt, never trusted
            path.unlink(missing_ok=True)
    data = build()
    try:
        _save(path, data)
    except OSError as e:
        if log:
            log(f"could not write the cache ({e}); continuing without it")
    return data
