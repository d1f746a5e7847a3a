"""How expression accuracy falls with the size of the face in the photo: the evidence behind the
default detector's smallest face (40 px).

    python experiments/accuracy_by_face_size.py [--model ferplus] [--data ../shared/data/fer2013/fer2013new.csv]
                                            [--split PublicTest] [--sizes 48 40 36 30 24 20]

Each face of the split is shrunk to S x S pixels (as a face S pixels wide in a photo would be)
and enlarged back to the model's input, then classified. PublicTest by default: a design choice
is made on the validation split, never on PrivateTest.
"""

import argparse

import cv2
import numpy as np

from mimika import load_dataset, load_predictor
from mimika.reports.evaluation import evaluate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="ferplus")
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013new.csv")
    ap.add_argument("--split", default="PublicTest")
    ap.add_argument("--sizes", type=int, nargs="+", default=[48, 40, 36, 30, 24, 20])
    a = ap.parse_args()
    model = load_predictor(a.model)
    c = model.config.crop
    data = load_dataset(a.data, c).split(a.split)
    print(f"{a.model} on {a.data} {a.split} ({len(data)} faces)\n\n| face size (px) | accuracy |\n|---|---|")
    for s in a.sizes:
        shrunk = data.subset(np.arange(len(data)))
        shrunk.faces = np.stack([cv2.resize(cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA),
                                            (c.width, c.height), interpolation=cv2.INTER_LINEAR)
                                 for f in data.faces])
        print(f"| {s} | {evaluate(model, shrunk)['accuracy']:.4f} |")


if __name__ == "__main__":
    main()
