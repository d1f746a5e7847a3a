"""Does training with some CK+ people help on the others? (issue #11, joint training)

    python experiments/heldout_people.py CANDIDATE --against ferplus runs/e3-control/model.npz
        [--data ../shared/data/ckplus]

CANDIDATE was trained with `--data ... --data ckplus --val-subjects F`: it records the CK+
subjects it held out. Every model reads those subjects' frames (whole frames through the CNN
detector and its aligned crop, as `mimika predict` reads a photo) in the three views of the
cross-domain protocol: the labelled peaks with a neutral answer counted wrong, the peaks answered
among their 7 emotions, and the peaks with the neutral first frames (8 classes). Each baseline's
line ends with the faces only the candidate / only the baseline gets right and the exact McNemar
p-value of that split. Held-out subjects are never trained on; with no --keep-best they choose
nothing either.
"""

import argparse
from pathlib import Path

import numpy as np

from mimika.common.metrics import mcnemar_cells
from mimika.network.predictor import load_predictor
from mimika.prepare.datasets import evaluation_set, load_dataset
from mimika.prepare.detection import PRESETS
from mimika.reports.evaluation import among, recall_line, report

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def views(y: np.ndarray, neutral: int) -> dict[str, tuple[np.ndarray, bool]]:
    """Protocol view -> (which faces, answers among the data's classes only)."""
    peaks = y != neutral
    return {"peaks, neutral counted wrong": (peaks, False), "peaks, answers among the 7": (peaks, True),
            "peaks + neutral first frames, 8 classes": (np.ones_like(peaks), False)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("candidate")
    ap.add_argument("--against", nargs="+", default=["ferplus"])
    ap.add_argument("--data", default=str(SHARED / "ckplus"))
    a = ap.parse_args()
    cand = load_predictor(a.candidate)
    models = [cand] + [load_predictor(m) for m in a.against]
    names = [a.candidate] + a.against
    labels = cand.labels
    if any(m.labels != labels for m in models):
        raise SystemExit("the models answer different labels: nothing to compare")
    data = load_dataset(a.data, cand.config.crop, detector=PRESETS["cnn"], with_neutral=True)
    data = evaluation_set(data, "heldout", cand.config.info, a.candidate).relabel(labels)
    probs = [m.predict_proba(data.faces) for m in models]
    subjects = len(set(data.subjects.tolist()))
    print(f"CK+ subjects held out by {a.candidate}: {subjects} people, {len(data)} frames")
    print("| view | model | n | accuracy | balanced accuracy | recall per class | only candidate / only this | McNemar p |")
    print("|---|---|---|---|---|---|---|---|")
    for view, (mask, restricted) in views(data.y, labels.index("neutral")).items():
        y = data.y[mask]
        right = []
        for name, p in zip(names, probs):
            p = among(p[mask], np.unique(y)) if restricted else p[mask]
            pred = p.argmax(1)
            right.append(pred == y)
            rep = report(y, pred, labels)
            versus = "- | -" if len(right) == 1 else mcnemar_cells(right[0], right[-1])
            print(f"| {view} | {name} | {len(y)} | {rep['accuracy']:.3f} | {rep['balanced_accuracy']:.3f} | "
                  f"{recall_line(rep)} | {versus} |", flush=True)


if __name__ == "__main__":
    main()
