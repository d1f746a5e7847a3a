"""How a detector frames faces, compared with the crops of a pre-cropped training set.

    python scripts/calibrate_margin.py ../shared/data/fer2013/fer2013.csv.gz [--n 1500] [--detector NAME ...]

A model trained on pre-cropped faces sees, at recognition time, the detector's box widened by the
model's crop margin, or (with landmarks) the face warped onto a template of where its eyes, nose
and mouth sit in a training crop. This runs each detector on a sample of the set's Training faces
(each upscaled 3x and padded, so the whole face is findable) and prints:
- the median box side and centre offset relative to the original crop, and the margin that makes
  the two framings match: margin = (1 / side - 1) / 2 (do the presets frame faces alike?);
- for a detector with landmarks, their median positions in the crop (0..1), made left-right
  symmetric with the eyes level: the template of `crop.ALIGN_TEMPLATE`.
"""

import argparse

import cv2
import numpy as np

from mimika import CropSpec
from mimika.prepare.datasets import load_dataset
from mimika.prepare.detection import PRESETS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--detector", nargs="+", default=["cnn"], help="preset names")
    a = ap.parse_args()
    data = load_dataset(a.data, CropSpec(48, 48))
    if data.splits is not None:
        data = data.split("Training")  # no test face is used to choose anything
    idx = np.random.default_rng(0).choice(len(data), min(a.n, len(data)), replace=False)
    for name in a.detector:
        print(f"detector {name}: {PRESETS[name]}")
        measure(data, idx, PRESETS[name])


def measure(data, idx, det) -> None:
    sides, dx, dy, marks = [], [], [], []
    for i in idx:
        face = cv2.resize(data.faces[i], (144, 144), interpolation=cv2.INTER_LINEAR)
        img = cv2.copyMakeBorder(face, 48, 48, 48, 48, cv2.BORDER_REPLICATE)
        found = det.detect(img)
        if not found:
            continue
        d = max(found, key=lambda d: d.box[2] * d.box[3])
        x, y, w, h = d.box
        sides.append(w / 144)
        dx.append((x + w / 2 - 48) / 144 - 0.5)
        dy.append((y + h / 2 - 48) / 144 - 0.5)
        if d.landmarks is not None:
            marks.append((np.array(d.landmarks) - 48) / 144)
    side = float(np.median(sides))
    print(f"{len(sides)} of {len(idx)} faces detected")
    print(f"box side / crop side: median {side:.3f} (quartiles {np.percentile(sides, 25):.3f}, "
          f"{np.percentile(sides, 75):.3f}); centre offset x {np.median(dx):+.3f}, y {np.median(dy):+.3f}")
    print(f"margin that matches the crop: {(1 / side - 1) / 2:+.3f}")
    if marks:
        med = np.median(np.stack(marks), axis=0)  # right eye, left eye, nose, right mouth, left mouth
        mirror = med[[1, 0, 2, 4, 3]] * [-1, 1] + [1, 0]  # the mirror image's landmarks, relabelled
        sym = (med + mirror) / 2
        sym[[0, 1], 1] = sym[[0, 1], 1].mean()  # eyes level
        sym[[3, 4], 1] = sym[[3, 4], 1].mean()
        print("landmark template (x, y in the crop, 0..1): "
              + ", ".join(f"({x:.4f}, {y:.4f})" for x, y in sym))
    print()


if __name__ == "__main__":
    main()
