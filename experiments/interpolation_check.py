"""Weights between `ferplus` and a model fine-tuned from it on many sources (WiSE-FT): does a
point between them keep FER+ while keeping the other sources? (experiments.md E37)

    python experiments/interpolation_check.py START.npz TUNED.npz [--weights 0.25 0.5 0.75] [--save DIR]

Reads the four sources' validation parts as scripts/sources_table.py does (float weights, the
models' own TTA, temperature 1) and prints accuracy / balanced accuracy per source and their mean
balanced accuracy for each weight of the tuned model. Validation only; --save writes each mix.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from sources_table import SOURCES, read_part, score  # noqa: E402

from mimika.network.model import Model  # noqa: E402
from mimika.training.averaging import interpolate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("start")
    ap.add_argument("tuned")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    ap.add_argument("--save", type=Path, help="write each mix as DIR/mix-WEIGHT.npz")
    a = ap.parse_args()
    start, tuned = Model.load(a.start), Model.load(a.tuned)
    parts = {s: read_part(s, "val", tuned.config.crop, a.data) for s in SOURCES}
    for w in a.weights:
        mix = interpolate(start, tuned, w)
        reps = {s: score(mix, p) for s, p in parts.items()}
        cells = ", ".join(f"{s} {r['accuracy']:.3f} / {r['balanced_accuracy']:.3f}" for s, r in reps.items())
        mean = statistics.mean(r["balanced_accuracy"] for r in reps.values())
        print(f"weight {w:g}: {cells}; mean balanced {mean:.3f}", flush=True)
        if a.save:
            mix.save(a.save / f"mix-{w:g}.npz", dtype=tuned.stored_dtype)


if __name__ == "__main__":
    main()
