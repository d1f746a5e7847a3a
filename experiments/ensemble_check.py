"""Experiments (issue #11, E2 and E5): does an average of models gain FER+ validation accuracy?

    python experiments/ensemble_check.py [--weights 0 0.2 0.35 0.5]          # E2: ferplus with fer2013
    python experiments/ensemble_check.py --members ferplus runs/a.npz ...     # E5: FER+ models, equal weights

The FER2013 model reads CK+ better than the FER+ model; before anything is distilled from the
pair, this checks on FER+ PublicTest (validation) how much of the benchmark a weighted average of
their probabilities keeps (fer2013 has no contempt: its share of that class is 0). A weight is
worth pursuing only if PublicTest accuracy stays at `ferplus`'s own. Prints accuracy and balanced
accuracy per weight of `fer2013`. With `--members`, the equal-weight average of FER+ models (each
with its own test-time augmentation and temperature) and every member alone: a teacher worth
distilling must beat its best member.
"""

import argparse
from pathlib import Path

import numpy as np

from mimika.common.metrics import report
from mimika.network.predictor import load_predictor
from mimika.prepare.datasets import load_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(SHARED / "fer2013" / "fer2013new.csv"))
    ap.add_argument("--weights", type=float, nargs="+", default=[0, 0.2, 0.35, 0.5])
    ap.add_argument("--members", nargs="+", help="FER+ model files or names to average with equal weights")
    a = ap.parse_args()
    if a.members:
        return average_of(a.members, a.data)
    main_model, other = load_predictor("ferplus"), load_predictor("fer2013")
    val = load_dataset(a.data, main_model.config.crop).relabel(main_model.labels).split("PublicTest")
    p_main = main_model.predict_proba(val.faces)
    p_other = np.zeros_like(p_main)
    q = other.predict_proba(val.faces)
    for j, name in enumerate(other.labels):
        p_other[:, main_model.labels.index(name)] = q[:, j]
    print("| weight of fer2013 | PublicTest accuracy | balanced accuracy |\n|---|---|---|")
    for w in a.weights:
        p = (1 - w) * p_main + w * p_other
        rep = report(val.y, p.argmax(1), main_model.labels, p)
        print(f"| {w:g} | {rep['accuracy']:.4f} | {rep['balanced_accuracy']:.4f} |", flush=True)


def average_of(members: list[str], data: str) -> None:
    models = [load_predictor(m) for m in members]
    val = load_dataset(data, models[0].config.crop).relabel(models[0].labels).split("PublicTest")
    probs = [m.predict_proba(val.faces) for m in models]
    print("| models | PublicTest accuracy | balanced accuracy |\n|---|---|---|")
    for name, p in [*zip(members, probs), (" + ".join(members), sum(probs) / len(probs))]:
        rep = report(val.y, p.argmax(1), models[0].labels, p)
        print(f"| {name} | {rep['accuracy']:.4f} | {rep['balanced_accuracy']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
