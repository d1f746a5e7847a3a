"""What aligning faces by their landmarks does to classification.

    python experiments/alignment_effect.py [--model ferplus] [--n 1000] [--angles 0 15 30 45]

1. FER+ PublicTest faces (the validation split; nothing is chosen here, this only reports),
   each enlarged 3x, padded, and rotated by a known angle, then found by the CNN detector and
   cropped three ways: the Haar cascade's box (`haar-thorough`, where it finds the face), the CNN's
   box, and the CNN's landmark-aligned crop. Accuracy over the faces each way found, and the share
   found.
2. CK+ camera frames (the 327 labelled peak frames, 7 emotions; a model with a neutral class counts
   "neutral" as an error there), cropped the same three ways: a cross-domain report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from mimika.network.predictor import load_predictor
from mimika.prepare.crop import crop_face
from mimika.prepare.datasets import load_dataset
from mimika.prepare.detection import get_detector

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def canvas(face: np.ndarray, degrees: float) -> np.ndarray:
    big = cv2.resize(face, (144, 144), interpolation=cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(big, 72, 72, 72, 72, cv2.BORDER_REPLICATE)
    M = cv2.getRotationMatrix2D((144, 144), degrees, 1.0)
    return cv2.warpAffine(img, M, (288, 288), borderMode=cv2.BORDER_REPLICATE)


def crops(images, spec, haar, cnn):
    """Per image: (haar box crop or None, cnn box crop or None, cnn aligned crop or None)."""
    out = []
    for img in images:
        h = haar(img)
        c = cnn.detect(img)
        hb = max(h, key=lambda b: b[2]) if h else None
        d = max(c, key=lambda d: d.box[2]) if c else None
        out.append((None if hb is None else crop_face(img, hb, spec),
                    None if d is None else crop_face(img, d.box, spec),
                    None if d is None else crop_face(img, d.box, spec, d.landmarks)))
    return out


def scores(model, triples, y) -> str:
    cells = []
    for k in range(3):
        idx = [i for i, t in enumerate(triples) if t[k] is not None]
        if not idx:
            cells.append(f"{'-':>15}")
            continue
        p = model.predict_proba(np.stack([triples[i][k] for i in idx])).argmax(1)
        acc = float((p == y[idx]).mean())
        cells.append(f"{acc:7.3f} ({len(idx) / len(triples):4.0%})")
    return "".join(f"{c:>17}" for c in cells)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ferplus")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--angles", type=float, nargs="+", default=[0, 15, 30, 45])
    a = ap.parse_args()
    model = load_predictor(a.model)
    spec = model.config.crop
    haar, cnn = get_detector("haar-thorough"), get_detector("cnn")
    head = f"{'':<22}{'Haar box':>17}{'CNN box':>17}{'CNN aligned':>17}"
    print(f"model {a.model}; accuracy over the faces found (share found)\n")
    fer = load_dataset(SHARED / "fer2013" / "fer2013new.csv", spec.__class__(48, 48)).split("PublicTest")
    idx = np.random.default_rng(0).choice(len(fer), min(a.n, len(fer)), replace=False)
    fer = fer.subset(np.sort(idx)).relabel(model.labels)
    print(f"1. FER+ PublicTest, {len(fer)} faces, rotated\n{head}")
    for deg in a.angles:
        print(f"{'rotated ' + format(deg, 'g') + ' degrees':<22}"
              + scores(model, crops([canvas(f, deg) for f in fer.faces], spec, haar, cnn), fer.y))
    ck = load_dataset(SHARED / "ckplus", spec, crop="whole")  # the frames as they are; detected below
    labels = model.labels
    keep = [i for i, n in enumerate(ck.labels[j] for j in ck.y) if n in labels]
    y = np.array([labels.index(ck.labels[ck.y[i]]) for i in keep])
    frames = [cv2.imread(s, cv2.IMREAD_GRAYSCALE) for s in np.array(ck.sources)[keep]]
    print(f"\n2. CK+ peak frames, {len(frames)} faces (7 emotions)\n{head}")
    print(f"{'as they are':<22}" + scores(model, crops(frames, spec, haar, cnn), y))


if __name__ == "__main__":
    main()
