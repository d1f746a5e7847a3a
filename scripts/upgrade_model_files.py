"""Bring model files to the current format: `.npz` model files get the checksum of their weights
(container format 2), `.onnx` files the SHA-256 of their graph in the metadata. The weights and
the graph are not touched, so every prediction stays bit for bit what it was (checked here).

    python scripts/upgrade_model_files.py [FILE ...]      (default: the shipped models)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

from mimika.config import MODEL_FORMAT, shipped_models
from mimika.container import read_container, write_container
from mimika.fileio import write_bytes
from mimika.runtime import CHECKSUM_KEY, OnnxModel, graph_checksum


def upgrade_npz(path: Path) -> str:
    meta, arrays = read_container(path, MODEL_FORMAT)
    if meta.get("format_version", 0) >= 2:
        return "already current"
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version", "checksum")}
    write_container(path, MODEL_FORMAT, meta, arrays)
    again_meta, again = read_container(path, MODEL_FORMAT)
    assert again.keys() == arrays.keys() and all(np.array_equal(again[k], arrays[k]) for k in arrays)
    return "checksum added"


def upgrade_onnx(path: Path) -> str:
    data = path.read_bytes()
    proto = onnx.load_from_string(data)
    if any(p.key == CHECKSUM_KEY for p in proto.metadata_props):
        return "already current"
    before = OnnxModel(path)
    c = before.config.crop
    crops = np.random.default_rng(0).integers(0, 256, (8, c.height, c.width), dtype=np.uint8)
    expected = before.predict_proba(crops)
    entry = proto.metadata_props.add()
    entry.key, entry.value = CHECKSUM_KEY, graph_checksum(data)
    write_bytes(path, proto.SerializeToString())
    assert np.array_equal(OnnxModel(path).predict_proba(crops), expected)
    return "graph checksum added"


def main() -> None:
    files = [Path(a) for a in sys.argv[1:]] or sorted(p for f in shipped_models().values() for p in f.values())
    for path in files:
        print(f"{path}: {upgrade_npz(path) if path.suffix == '.npz' else upgrade_onnx(path)}")


if __name__ == "__main__":
    main()
