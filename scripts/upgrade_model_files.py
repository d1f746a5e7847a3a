"""Bring model files to the current format: `.npz` model files get the checksum of their contents
(container format 2), `.onnx` files the SHA-256 of their graph and config in the metadata. The
weights, the graph and the config are not touched, so every prediction stays bit for bit what it
was (checked here).

    python scripts/upgrade_model_files.py [FILE ...]      (default: the shipped models)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx

from mimika.common.container import content_checksum, read_container, write_container
from mimika.common.fileio import write_bytes
from mimika.network.config import METADATA_KEY, MODEL_FORMAT, shipped_models
from mimika.network.predictor import CHECKSUM_KEY, OnnxModel, model_checksum


def upgrade_npz(path: Path) -> str:
    import json
    with np.load(path, allow_pickle=False) as z:  # read without the checksum check: it is what gets rewritten
        meta = json.loads(str(z["__meta__"]))
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
    if meta.get("format") != MODEL_FORMAT:
        raise SystemExit(f"{path}: not a mimika model file")
    if meta.get("format_version", 0) >= 2 and meta.get("checksum") == content_checksum(meta, arrays):
        return "already current"
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version", "checksum")}
    write_container(path, MODEL_FORMAT, meta, arrays)
    _, again = read_container(path, MODEL_FORMAT)
    assert again.keys() == arrays.keys() and all(np.array_equal(again[k], arrays[k]) for k in arrays)
    return "checksum written"


def upgrade_onnx(path: Path) -> str:
    data = path.read_bytes()
    proto = onnx.load_from_string(data)
    config = next(p.value for p in proto.metadata_props if p.key == METADATA_KEY)
    want = model_checksum(data, config)
    if any(p.key == CHECKSUM_KEY and p.value == want for p in proto.metadata_props):
        return "already current"
    unchecked = not any(p.key == CHECKSUM_KEY for p in proto.metadata_props)
    before = OnnxModel(path, allow_unchecked=True) if unchecked else None  # what it answers now, to compare
    kept = [p for p in proto.metadata_props if not p.key.startswith("mimika_") or p.key == METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = CHECKSUM_KEY, want
    write_bytes(path, proto.SerializeToString())
    after = OnnxModel(path)
    c = after.config.crop
    crops = np.random.default_rng(0).integers(0, 256, (8, c.height, c.width), dtype=np.uint8)
    if before is not None:
        assert np.array_equal(after.predict_proba(crops), before.predict_proba(crops))
    return "checksum written"


def main() -> None:
    files = [Path(a) for a in sys.argv[1:]] or sorted(p for f in shipped_models().values() for p in f.values())
    for path in files:
        print(f"{path}: {upgrade_npz(path) if path.suffix == '.npz' else upgrade_onnx(path)}")


if __name__ == "__main__":
    main()
