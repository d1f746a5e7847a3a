"""Experiment (issue #11): post-hoc logit adjustment for the rare classes, on validation data only.

    python experiments/logit_adjustment.py [--model ferplus] [--taus 0 0.2 0.4 0.6]

Each class's logit is lowered by tau * log(its share of the Training faces), which trades accuracy
on frequent classes for recall on rare ones (Menon et al., 2021). Prints PublicTest accuracy and
balanced accuracy per tau; a tau would be kept only if PublicTest accuracy stays at the model's
own (the benchmark must not get worse). experiments/experiments.md records the outcome.
"""

import argparse
from pathlib import Path

import numpy as np

from mimika.common.metrics import report
from mimika.network.predictor import load_predictor
from mimika.prepare.datasets import load_dataset
from mimika.training.calibration import class_prior, prediction_logits, probabilities

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ferplus")
    ap.add_argument("--data", default=str(SHARED / "fer2013" / "fer2013new.csv"))
    ap.add_argument("--taus", type=float, nargs="+", default=[0, 0.2, 0.4, 0.6])
    a = ap.parse_args()
    model = load_predictor(a.model)
    data = load_dataset(a.data, model.config.crop).relabel(model.labels)
    log_prior = np.log(class_prior(data.split("Training").y, len(model.labels)))
    val = data.split("PublicTest")
    z = prediction_logits(model, val.faces)
    print("| tau | PublicTest accuracy | balanced accuracy |\n|---|---|---|")
    for tau in a.taus:
        probs = probabilities(z, model.config.temperature, -tau * log_prior)
        rep = report(val.y, probs.argmax(1), model.labels, probs)
        print(f"| {tau:g} | {rep['accuracy']:.4f} | {rep['balanced_accuracy']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
