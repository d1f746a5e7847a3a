"""Evidence for issue #11, after every choice: how far the class prior trades FER+ for CK+.

    python experiments/prior_frontier.py
    python experiments/prior_frontier.py --models ferplus runs/e8-wide/ship/ferplus.onnx runs/e10-wide-seed1/ship/ferplus.onnx

The issue asks one default model, trained without CK+, to read CK+'s peaks at >= 0.75 (a neutral
answer counted wrong) and FER+ PrivateTest at >= 0.880. Each model's answers move between its
training prior (balance 0) and past its balanced one as the balance b grows (logits minus b x
log(training class share), `--prior balanced` at the b `calibrate` fitted). This prints, for each
model and for the average of their calibrated logits, the test figures along b (FER+ PrivateTest
accuracy and balanced accuracy, CK+ peaks' accuracy), and the best CK+
figure among the b that keep FER+ PrivateTest at >= 0.880. It reads both test sets at every b, so
it chooses nothing: it shows whether any setting of these models could meet both musts.
`--lower neutral --balances 0 0.5 1 1.5 2 2.5 3`: the other family, only that class's calibrated
logit lowered by b (whether fewer neutral answers alone would lift CK+'s peaks).
"""

import argparse
from pathlib import Path

import numpy as np

from mimika.common.metrics import report
from mimika.network.predictor import load_predictor
from mimika.prepare.datasets import load_dataset
from mimika.prepare.detection import PRESETS
from mimika.training.calibration import prediction_logits, probabilities

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FER_MUST, CK_MUST = 0.880, 0.75


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["ferplus", "runs/e8-wide/ship/ferplus.onnx"])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--balances", type=float, nargs="+", default=[round(0.05 * i, 2) for i in range(21)])
    ap.add_argument("--lower", metavar="CLASS", help="lower only this class's logit by b instead")
    a = ap.parse_args()
    models = [load_predictor(m) for m in a.models]
    labels, spec = models[0].labels, models[0].config.crop
    if any(m.labels != labels or m.config.crop != spec for m in models):
        raise SystemExit("the models must share labels and input")
    fer = load_dataset(a.data / "fer2013" / "fer2013new.csv", spec).relabel(labels).split("PrivateTest")
    peaks = load_dataset(a.data / "ckplus", spec, detector=PRESETS["cnn"]).relabel(labels)
    # each model's logits divided by its own temperature: the calibrated scores an average can mix
    scores = {name: [prediction_logits(m, s.faces) / m.config.temperature for s in (fer, peaks)]
              for name, m in zip(a.models, models)}
    if len(models) > 1:
        scores["average"] = [np.mean([v[i] for v in scores.values()], axis=0) for i in range(2)]
    # the logits move by -b x direction: the log training shares (the balanced prior's family) or one class
    direction = np.log(np.asarray(models[0].config.class_prior, np.float64))
    if a.lower is not None:
        if a.lower not in labels:
            raise SystemExit(f"--lower {a.lower}: the models answer {', '.join(labels)}")
        direction = np.eye(len(labels))[labels.index(a.lower)]
    print(f"FER+ PrivateTest {len(fer)} faces, CK+ peaks {len(peaks)} (neutral counted wrong); "
          f"balance fitted by calibrate: " + ", ".join(f"{n} {m.config.balance:g}" for n, m in zip(a.models, models)))
    print("| model | " + " | ".join(f"b {b:g}" for b in a.balances) + " |")
    print("|---|" + "---|" * len(a.balances))
    for name, (z_fer, z_ck) in scores.items():
        cells, best = [], None
        for b in a.balances:
            rep = report(fer.y, probabilities(z_fer, 1.0, -b * direction).argmax(1), labels)
            acc_fer = rep["accuracy"]
            acc_ck = float((probabilities(z_ck, 1.0, -b * direction).argmax(1) == peaks.y).mean())
            cells.append(f"{acc_fer:.4f} / {rep['balanced_accuracy']:.3f} / {acc_ck:.3f}")
            if acc_fer >= FER_MUST and (best is None or acc_ck > best[1]):
                best = (b, acc_ck, acc_fer)
        print(f"| {name} (FER+, its balanced accuracy, CK+) | " + " | ".join(cells) + " |")
        verdict = (f"best CK+ with FER+ >= {FER_MUST}: {best[1]:.3f} at b {best[0]:g} (FER+ {best[2]:.4f})"
                   if best else f"no b keeps FER+ at >= {FER_MUST}")
        print(f"  {name}: {verdict}; CK+ must {CK_MUST}", flush=True)


if __name__ == "__main__":
    main()
