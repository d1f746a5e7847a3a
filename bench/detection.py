"""Face-detection recall, false detections and speed on photos with known face boxes.

    python bench/detection.py [--data ../shared/data/facedet] [--repeats 5]

Recall counts the annotated faces (not marked ignore) at least --min-gt pixels on their short
side; a detection matches a face when each box contains the other's centre (robust to the sets'
different box styles: FDDB ellipses, VOC head boxes). False detections match no face at all
(ignored and small faces included). Time: median over repeats of detecting on every photo, and
on one 640x480 photo (the astronaut, scaled onto a 640x480 canvas).
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
    ap.add_argument("--min-gt", type=int, default=24)
    a = ap.parse_args()
    sets = load_sets(Path(a.data))
    photo = photo_640x480()
    n_photos = sum(len(v) for v in sets.values())
    print(f"{n_photos} photos; recall over faces >= {a.min_gt} px; times are medians of {a.repeats} runs\n")
    head = f"{'detector':<12}" + "".join(f"{name[:14]:>16}" for name in sets) + \
        f"{'recall':>8}{'>=48px':>8}{'false':>7}{'ms/photo':>10}{'ms 640x480':>12}{'speed-up':>10}"
    print(head)
    base_ms = None
    for name, det in PRESETS.items():
        cells, tot_n, tot_hit, tot_fp, big_n, big_hit = [], 0, 0, 0, 0, 0
        for set_name, photos in sets.items():
            n = hit = fp = 0
            for gray, gts in photos:
                found = det(gray)
                c, h, f = score(found, gts, a.min_gt)
                n, hit, fp = n + c, hit + h, fp + f
                c48, h48, _ = score(found, gts, 48)
                big_n, big_hit = big_n + c48, big_hit + h48
            cells.append(f"{hit:>3}/{n:<3} fp {fp:<3}")
            tot_n, tot_hit, tot_fp = tot_n + n, tot_hit + hit, tot_fp + fp
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
              f"{tot_hit / tot_n:>8.3f}{big_hit / big_n:>8.3f}{tot_fp:>7d}{ms:>10.1f}{one:>12.2f}{base_ms / one:>9.2f}x")
    print("\npresets (mimika.detection.PRESETS):")
    for name, det in PRESETS.items():
        print(f"  {name:<10} {det}")


if __name__ == "__main__":
    main()
