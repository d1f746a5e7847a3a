"""Is a candidate model better than the shipped one on validation data, beyond noise? (issue #11)

    python scripts/compare_models.py CANDIDATE [--against ferplus] [--taus 0 0.2 0.4 0.6]
        [--data ../shared/data/fer2013/fer2013new.csv] [--split PublicTest]
    python scripts/compare_models.py CANDIDATE --split PrivateTest --taus 0              # after a decision
    python scripts/compare_models.py CANDIDATE --data ../shared/data/ckplus --taus 0     # after a decision
    python scripts/compare_models.py CANDIDATE --data ../shared/data/ckplus --prior balanced

Both models read the same PublicTest faces with their own test-time views. For each tau (the
logit adjustment of experiments/logit_adjustment.py: logits minus tau x log of each class's share of
the Training faces; 0 is the training prior) it prints each model's accuracy and balanced accuracy,
the faces only one of them gets right, and the exact two-sided McNemar p-value of that split: a
candidate is better only where it wins at p < 0.05, so a gain of a few faces is not mistaken for
one. experiments/experiments.md records the decisions. The same comparison on a test set (`--split
PrivateTest`, or CK+'s peaks, whole frames through the CNN detector with a neutral answer counted
wrong) is for the replacement gate of issue #11, measured once after a decision. `--prior balanced`
compares each model's answers under its own balanced prior (the balance `mimika calibrate` stored in
it) instead of the training prior.
"""

import argparse
from pathlib import Path

import numpy as np

from mimika.common.metrics import mcnemar_cells, report
from mimika.network.config import with_settings
from mimika.network.predictor import load_predictor
from mimika.prepare.datasets import load_dataset
from mimika.prepare.detection import PRESETS
from mimika.training.calibration import class_prior, prediction_logits

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("candidate")
    ap.add_argument("--against", default="ferplus")
    ap.add_argument("--data", default=str(SHARED / "fer2013" / "fer2013new.csv"))
    ap.add_argument("--taus", type=float, nargs="+", help="logit adjustments to compare at (default: 0 0.2 "
                    "0.4 0.6; 0 alone with --prior balanced)")
    ap.add_argument("--split", default="PublicTest", help="the split of a FER set to compare on (a folder "
                    "such as CK+ is read whole, through the CNN detector)")
    ap.add_argument("--prior", choices=["training", "balanced"], default="training",
                    help="each model's own prior: balanced answers use the balance stored in the file")
    a = ap.parse_args()
    if a.taus is None:
        a.taus = [0.0] if a.prior == "balanced" else [0, 0.2, 0.4, 0.6]
    if a.prior == "balanced" and any(a.taus):
        raise SystemExit("--prior balanced is each model's own adjustment: use it with --taus 0")
    models = [with_settings(load_predictor(a.candidate), prior=a.prior),
              with_settings(load_predictor(a.against), prior=a.prior)]
    labels = models[0].labels
    if models[1].labels != labels:
        raise SystemExit(f"{a.candidate} and {a.against} answer different labels: nothing to compare")
    folder = Path(a.data).is_dir()
    if any(a.taus) and folder:  # said before the folder's faces are found
        raise SystemExit("logit adjustment needs the training shares of a FER set: use --taus 0 on a folder")
    data = load_dataset(a.data, models[0].config.crop, detector=PRESETS["cnn"] if folder else None).relabel(labels)
    val = data if folder else data.split(a.split)
    log_prior = np.log(class_prior(data.split("Training").y, len(labels))) if any(a.taus) else 0.0
    offsets = [m.config.logit_offset() for m in models]  # None under the training prior
    logits = [prediction_logits(m, val.faces) + (0.0 if o is None else o) for m, o in zip(models, offsets)]
    where = f"{Path(a.data).name}, all" if folder else a.split
    print(f"{where}, {len(val)} faces, {a.prior} prior: candidate {a.candidate} against {a.against}")
    print("| tau | accuracy | balanced accuracy | faces only the candidate / only the other gets right | McNemar p |")
    print("|---|---|---|---|---|")
    for tau in a.taus:
        right, reps = [], []
        for z in logits:
            pred = (z - tau * log_prior).argmax(1)
            right.append(pred == val.y)
            reps.append(report(val.y, pred, labels))
        acc = " vs ".join(f"{r['accuracy']:.4f}" for r in reps)
        bal = " vs ".join(f"{r['balanced_accuracy']:.4f}" for r in reps)
        print(f"| {tau:g} | {acc} | {bal} | {mcnemar_cells(right[0], right[1])} |", flush=True)


if __name__ == "__main__":
    main()
