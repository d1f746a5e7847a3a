"""Is what a balanced multi-source run costs FER+ in its prior or in its features? (experiments.md E34)

    python experiments/drawn_prior_check.py RUN/model.npz [--balances 0 0.25 0.5 0.75 1]

Reads the four sources' validation parts as scripts/sources_table.py does, and answers with the
logits moved from the class shares the run drew towards the shares of the faces it held:
logits + b log(natural / drawn). Prints accuracy / balanced accuracy per source and the mean balanced
accuracy for each b. Validation only: it chooses nothing by itself.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from sources_table import SOURCES, read_part  # noqa: E402

from mimika.common.metrics import balanced_accuracy  # noqa: E402
from mimika.network.config import probabilities  # noqa: E402
from mimika.network.predictor import load_predictor  # noqa: E402
from mimika.prepare.datasets import joined, load_dataset  # noqa: E402
from mimika.prepare.detection import PRESETS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--balances", type=float, nargs="+", default=[0, 0.25, 0.5, 0.75, 1])
    a = ap.parse_args()
    m = load_predictor(a.model)
    drawn = np.maximum(np.asarray(m.config.info["training"]["class_shares"]), 1e-6)
    parts = {s: read_part(s, "val", m.config.crop, a.data).relabel(m.labels) for s in SOURCES}
    held = joined([load_dataset(a.data / path, m.config.crop, crop=crop, detector=PRESETS["cnn"],
                                with_neutral=s == "ckplus").split("Training")
                   for s, (path, crop, _) in SOURCES.items()]).relabel(m.labels)
    natural = np.maximum(np.bincount(held.y, minlength=len(m.labels)), 1) / len(held)
    z = {s: m.config.prediction_logits(m.logits, p.faces) for s, p in parts.items()}
    print("drawn shares  ", " ".join(f"{n[:2]} {v:.3f}" for n, v in zip(m.labels, drawn)))
    print("natural shares", " ".join(f"{n[:2]} {v:.3f}" for n, v in zip(m.labels, natural)))
    for b in a.balances:
        offset, bal, cells = b * np.log(natural / drawn), [], []
        for s, p in parts.items():
            pred = probabilities(z[s], 1.0, offset).argmax(1)
            bal.append(balanced_accuracy(p.y, pred, len(m.labels)))
            cells.append(f"{s} {(pred == p.y).mean():.3f} / {bal[-1]:.3f}")
        print(f"b {b:g}: " + ", ".join(cells) + f"; mean balanced {np.mean(bal):.3f}")


if __name__ == "__main__":
    main()
