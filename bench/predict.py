"""Prediction speed and memory: the figures of issue 5, as medians over repeated runs.

    python bench/predict.py [--repeats 7] [--install-size] [--model NAME]

1. whole process `mimika predict photo.jpg` (start, load, detect, classify, print): wall time
   and peak memory (max RSS), default model (ONNX Runtime) vs the same model through PyTorch;
2. per photo once loaded (detect + classify), for each detector preset;
3. classification alone, a batch of face crops, faces/s: the shipped INT8 file, the same weights
   exported as float ONNX, and PyTorch (with the model's test-time augmentation, and without);
4. with --install-size: the size of a fresh virtual environment holding `pip install .`.
The photo is the bundled astronaut scaled onto a 640x480 canvas, in colour: one face.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from detection import photo_640x480_colour  # noqa: E402

import mimika  # noqa: E402
from mimika.network.config import DEFAULT_MODEL, shipped_models  # noqa: E402
from mimika.prepare.detection import DEFAULT_DETECTOR, PRESETS  # noqa: E402


def run_process(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"{' '.join(args)} failed ({status})")
    return wall, usage.ru_maxrss / 1024


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--install-size", action="store_true")
    ap.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(shipped_models()),
                    help="the shipped model measured (default: the default model)")
    a = ap.parse_args()
    files = shipped_models()[a.model]
    tmp = Path(tempfile.mkdtemp())
    photo = photo_640x480_colour()
    photo_path = tmp / "photo.jpg"
    cv2.imwrite(str(photo_path), photo)
    exe = Path(sys.executable).with_name("mimika")  # the command of the environment running this bench
    if not exe.is_file():
        exe = shutil.which("mimika")
    if not exe:
        raise SystemExit("no `mimika` command: pip install -e . first")
    exe = str(exe)
    default = " (the default)" if a.model == DEFAULT_MODEL else ""
    print(f"model: {a.model}{default}; photo 640x480, one face; medians of {a.repeats} runs\n")

    print("1. whole process: mimika predict photo.jpg")
    rows = {}
    for label, extra in [("ONNX Runtime", ["--model", a.model]), ("PyTorch (.npz)", ["--model", str(files[".npz"])])]:
        runs = [run_process([exe, "predict", str(photo_path), *extra]) for _ in range(a.repeats)]
        rows[label] = (statistics.median(r[0] for r in runs), max(r[1] for r in runs))
        print(f"   {label:<24} {rows[label][0]:6.3f} s   peak memory {rows[label][1]:6.1f} MiB")
    (t_onnx, m_onnx), (t_torch, m_torch) = rows.values()
    print(f"   ratio PyTorch/ONNX: time {t_torch / t_onnx:.2f}x, memory {m_torch / m_onnx:.2f}x\n")

    print("2. per photo once loaded (detect + classify)")
    rec = mimika.Recognizer(a.model)
    for name in PRESETS:
        rec.detector = PRESETS[name]
        seen = rec.load(photo, "bgr").for_detector  # colour for the CNN presets, gray for Haar
        total = median_time(lambda: rec.get(photo, color="bgr"), a.repeats * 3)
        detect = median_time(lambda: rec.detector(seen), a.repeats * 3)
        print(f"   detector {name:<9} {total * 1000:7.2f} ms  (detection {detect * 1000:6.2f} ms in "
              f"{'colour' if seen.ndim == 3 else 'gray'}, {len(rec.get(photo, color='bgr'))} face)")
    rec.detector = PRESETS[DEFAULT_DETECTOR]
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    face = mimika.crop_face(gray, rec.detector(gray)[0], rec.model.config.crop)
    crops = np.repeat(face[None], a.batch, axis=0)

    print(f"\n3. classification alone, batches of {a.batch} face crops (model {a.model}, "
          f"test-time augmentation {rec.model.config.tta or 'none'})")
    backends = [("ONNX Runtime, shipped file", rec.model)]
    try:
        from mimika.network.export import export_onnx
        torch_model = mimika.Model.load(files[".npz"])
        backends += [("ONNX Runtime, float export", mimika.OnnxModel(export_onnx(torch_model, tmp / "float.onnx"))),
                     ("PyTorch", torch_model)]
    except ImportError:
        print("   (PyTorch not installed: shipped file only)")
    precision = rec.model.config.precision
    rates = {}
    for label, model in backends:
        tta = model.config.tta
        row = []
        for mode in (tta, ""):
            model.config.tta = mode
            row.append(a.batch / median_time(lambda: model.predict_proba(crops), a.repeats))
        model.config.tta = tta
        rates[label] = row[0]
        print(f"   {label:<28} {row[0]:7.0f} faces/s   (without test-time augmentation {row[1]:6.0f})"
              + (f"  [{precision}]" if label.endswith("shipped file") else ""))
    first = rates["ONNX Runtime, shipped file"]
    for label, r in list(rates.items())[1:]:
        print(f"   shipped file / {label}: {first / r:.2f}x")

    if a.install_size:
        print("\n4. installed size for prediction (fresh virtual environment, pip install .)")
        venv = tmp / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(HERE.parent)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink())
        print(f"   {size / 1e6:.0f} MB")
        r = subprocess.run([str(venv / "bin" / "mimika"), "predict", str(photo_path), "--json"],
                           capture_output=True, text=True)
        has_torch = any((venv / "lib").glob("python*/site-packages/torch"))
        print(f"   mimika predict in it: exit {r.returncode}; PyTorch installed: {has_torch}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
