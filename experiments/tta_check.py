"""Experiment T2 (issue #11): which test-time augmentation, chosen on validation data only.

    python experiments/tta_check.py [--model ferplus] [--data ../shared/data/fer2013/fer2013new.csv]

Prints PublicTest accuracy and balanced accuracy with each of the model's test-time augmentations
(none, flip, shift: through the same `prediction_logits` prediction uses) and with two other view
sets looked at beside them, which mimika does not offer: zoom (flip plus the face scaled by 1.08
and 0.93, each mirrored: 6 views) and rotate (flip plus +-8 degrees, each mirrored: 6 views).
experiments/experiments.md records the decision.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from mimika.common.metrics import report
from mimika.network.config import TTA_MODES, with_settings
from mimika.network.predictor import load_predictor
from mimika.prepare.datasets import load_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def warped(faces: np.ndarray, scale: float = 1.0, degrees: float = 0.0) -> np.ndarray:
    h, w = faces.shape[1:]
    m = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, scale)
    return np.stack([cv2.warpAffine(f, m, (w, h), borderMode=cv2.BORDER_REPLICATE) for f in faces])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ferplus")
    ap.add_argument("--data", default=str(SHARED / "fer2013" / "fer2013new.csv"))
    a = ap.parse_args()
    model = load_predictor(a.model)
    val = load_dataset(a.data, model.config.crop).relabel(model.labels).split("PublicTest")

    def scored(name: str, z: np.ndarray) -> None:
        r = report(val.y, z.argmax(1), model.labels)
        print(f"| {name} | {r['accuracy']:.4f} | {r['balanced_accuracy']:.4f} |", flush=True)

    print(f"{a.model}, PublicTest ({len(val)} faces)\n| views | accuracy | balanced accuracy |\n|---|---|---|")
    for mode in TTA_MODES:
        m = with_settings(model, tta=mode)
        scored(mode or "none", m.config.prediction_logits(m.logits, val.faces))
    plain = with_settings(model, tta="")

    def mean_logits(views: list[np.ndarray]) -> np.ndarray:
        both = views + [v[:, :, ::-1] for v in views]
        return np.mean([plain.config.prediction_logits(plain.logits, np.ascontiguousarray(v)) for v in both], axis=0)

    scored("zoom (not offered)", mean_logits([val.faces, warped(val.faces, 1.08), warped(val.faces, 0.93)]))
    scored("rotate (not offered)", mean_logits([val.faces, warped(val.faces, degrees=8), warped(val.faces, degrees=-8)]))


if __name__ == "__main__":
    main()
