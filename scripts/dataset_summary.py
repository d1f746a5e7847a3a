"""Load every data set under ../shared/data as mimika reads it: load time (uncached, then from
the cache), faces, subjects, splits and class counts, to compare with the data's README.

    python scripts/dataset_summary.py [--data ../shared/data]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from mimika import CropSpec
from mimika.prepare.datasets import load_dataset

ROOT = Path(__file__).resolve().parents[1]
SETS = [  # path under --data, crop spec (the model input it is prepared for)
    ("fer2013/fer2013.csv.gz", CropSpec(48, 48)),
    ("fer2013/fer2013new.csv", CropSpec(48, 48)),
    ("ckplus", CropSpec(96, 96)),
    ("ckplus48", CropSpec(48, 48)),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    a = ap.parse_args()
    os.environ["MIMIKA_CACHE"] = tempfile.mkdtemp()  # start from an empty cache
    for rel, spec in SETS:
        path = Path(a.data) / rel
        t = time.perf_counter()
        data = load_dataset(path, spec)
        first = time.perf_counter() - t
        t = time.perf_counter()
        load_dataset(path, spec)
        second = time.perf_counter() - t
        subjects = len(set(data.subjects.tolist()) - {""})
        print(f"{rel}: {len(data)} faces {data.faces.shape[1]}x{data.faces.shape[2]}, "
              f"{subjects or 'no'} subject ids; load {first:.1f} s, from the cache {second:.2f} s")
        for note in data.notes:
            print(f"  note: {note}")
        if data.splits is not None:
            for split in ("Training", "PublicTest", "PrivateTest"):
                part = data.split(split)
                print(f"  {split:<11} {len(part):6d}  " + ", ".join(f"{k} {v}" for k, v in part.class_counts().items()))
        else:
            print("  " + ", ".join(f"{k} {v}" for k, v in data.class_counts().items()))


if __name__ == "__main__":
    main()
