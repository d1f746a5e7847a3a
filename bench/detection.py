"""Face-detection recall, false detections and speed on photos with known face boxes.

    python bench/detection.py [--data ../shared/data/facedet] [--repeats 5]

Recall counts the annotated faces (not marked ignore) at least 24, 40 and 48 pixels on their
short side (each preset is meant for faces from its min_size up); a detection matches a face when each box contains the other's centre (robust to the sets'
different box styles: FDDB ellipses, VOC head boxes). False detections match no face at all
(ignored and small faces included). Time: median over repeats of detecting on every photo, and
on one 640x480 photo (the astronaut, scaled onto a 640x480 canvas). For comparison, the last row
runs the settings of the `fer` package (OpenCV's cascade, step 1.1, 5 neighbours, faces >= 50 px).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from mimika.detection import PRESETS, HaarDetector
from mimika.images import load_gray

HERE = Path(__file__).resolve().parent


def photo_640x480() -> np.ndarray:
    img = load_gray(HERE.parent / "mimika" / "samples" / "astronaut.jpg")
    canvas = np.full((480, 640), int(np.median(img)), np.uint8)
    canvas[:, 80:560] = cv2.resize(img, (480, 480), interpolation=cv2.INTER_AREA)
    return canvas


def load_sets(root: Path) -> dict[str, list[tuple[np.ndarray, list[tuple[float, float, float, float, bool]]]]]:
    sets = {}
    for boxes in sorted(root.glob("*/boxes.csv")):
        per_image = defaultdict(list)
        for r in csv.DictReader(boxes.open()):
            per_image[r["image"]].append((float(r["left"]), float(r["top"]), float(r["width"]),
                                          float(r["height"]), r["ignore"] == "1"))
        sets[boxes.parent.name] = [(load_gray(boxes.parent / img), gts) for img, gts in sorted(per_image.items())]
    return sets


def contains(box, x, y) -> bool:
    bx, by, bw, bh = box[:4]
    return bx <= x <= bx + bw and by <= y <= by + bh


def score(found, gts, min_gt: int) -> tuple[int, int, int]:
    """(faces counted, faces found, false detections) for one photo; greedy one-to-one matching."""
    centre = lambda b: (b[0] + b[2] / 2, b[1] + b[3] / 2)
    used, hits = set(), 0
    counted = [i for i, g in enumerate(gts) if not g[4] and min(g[2], g[3]) >= min_gt]
    order = counted + [i for i in range(len(gts)) if i not in counted]
    matched_det = set()
    for i in order:
        for j, d in enumerate(found):
            if j in matched_det:
                continue
            if contains(gts[i], *centre(d)) and contains(d, *centre(gts[i])):
                matched_det.add(j)
                hits += i in counted
                break
    return len(counted), hits, len(found) - len(matched_det)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "data" / "facedet"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-gt", type=int, nargs="+", default=[24, 40, 48])
    a = ap.parse_args()
    sets = load_sets(Path(a.data))
    photo = photo_640x480()
    n_photos = sum(len(v) for v in sets.values())
    first = a.min_gt[0]
    print(f"{n_photos} photos; per set: faces >= {first} px found / counted, false detections; "
          f"times are medians of {a.repeats} runs\n")
    head = f"{'detector':<12}" + "".join(f"{name[:14]:>16}" for name in sets) + \
        "".join(f"{'>=' + str(m) + 'px':>8}" for m in a.min_gt) + \
        f"{'false':>7}{'ms/photo':>10}{'ms 640x480':>12}{'speed-up':>10}"
    print(head)
    base_ms = None
    detectors = dict(PRESETS, **{"fer": HaarDetector(1.1, 5, 50)})
    for name, det in detectors.items():
        cells, tot_fp = [], 0
        hits, counts = dict.fromkeys(a.min_gt, 0), dict.fromkeys(a.min_gt, 0)
        for set_name, photos in sets.items():
            n = hit = fp = 0
            for gray, gts in photos:
                found = det(gray)
                for m in a.min_gt:
                    c, h, f = score(found, gts, m)
                    counts[m], hits[m] = counts[m] + c, hits[m] + h
                    if m == first:
                        n, hit, fp = n + c, hit + h, fp + f
            cells.append(f"{hit:>3}/{n:<3} fp {fp:<3}")
            tot_fp += fp
        all_ms, one_ms = [], []
        for _ in range(a.repeats):
            t = time.perf_counter()
            for photos in sets.values():
                for gray, _ in photos:
                    det(gray)
            all_ms.append((time.perf_counter() - t) * 1000 / n_photos)
            t = time.perf_counter()
            for _ in range(5):
                det(photo)
            one_ms.append((time.perf_counter() - t) * 1000 / 5)
        ms, one = statistics.median(all_ms), statistics.median(one_ms)
        base_ms = base_ms or one
        print(f"{name:<12}" + "".join(f"{c:>16}" for c in cells) +
              "".join(f"{hits[m] / counts[m]:>8.3f}" for m in a.min_gt) +
              f"{tot_fp:>7d}{ms:>10.1f}{one:>12.2f}{base_ms / one:>9.2f}x")
    print("\nfaces counted: " + ", ".join(f">= {m} px: {counts[m]}" for m in a.min_gt))
    print("presets (mimika.detection.PRESETS; fer: the fer package's settings):")
    for name, det in detectors.items():
        print(f"  {name:<10} {det}")


if __name__ == "__main__":
    main()
