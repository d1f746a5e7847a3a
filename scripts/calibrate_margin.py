"""How a detector's face box compares with the framing of a pre-cropped training set.

    python scripts/calibrate_margin.py ../shared/data/fer2013/fer2013.csv.gz [--n 1500] [--detector NAME ...]

A model trained on pre-cropped faces sees, at recognition time, the detector's box widened by
the model's crop margin. This runs the default detector on a sample of the set's faces (each
upscaled 3x and padded, so the whole face is findable) and prints the median box side and
centre offset relative to the original crop, and the margin that makes the two framings match:
margin = (1 / side - 1) / 2. Several detectors can be compared (do they frame faces alike?).
"""

import argparse

import cv2
import numpy as np

from mimika import CropSpec
from mimika.datasets import load_dataset
from mimika.detection import PRESETS, largest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--detector", nargs="+", default=["default"], help="preset names")
    a = ap.parse_args()
    data = load_dataset(a.data, CropSpec(48, 48))
    idx = np.random.default_rng(0).choice(len(data), min(a.n, len(data)), replace=False)
    for name in a.detector:
        print(f"detector {name}: {PRESETS[name]}")
        measure(data, idx, PRESETS[name])


def measure(data, idx, det) -> None:
    sides, dx, dy = [], [], []
    for i in idx:
        face = cv2.resize(data.faces[i], (144, 144), interpolation=cv2.INTER_LINEAR)
        img = cv2.copyMakeBorder(face, 48, 48, 48, 48, cv2.BORDER_REPLICATE)
        box = largest(det(img))
        if box is None:
            continue
        x, y, w, h = box
        sides.append(w / 144)
        dx.append((x + w / 2 - 48) / 144 - 0.5)
        dy.append((y + h / 2 - 48) / 144 - 0.5)
    side = float(np.median(sides))
    print(f"{len(sides)} of {len(idx)} faces detected")
    print(f"box side / crop side: median {side:.3f} (quartiles {np.percentile(sides, 25):.3f}, "
          f"{np.percentile(sides, 75):.3f}); centre offset x {np.median(dx):+.3f}, y {np.median(dy):+.3f}")
    print(f"margin that matches the crop: {(1 / side - 1) / 2:+.3f}\n")


if __name__ == "__main__":
    main()
