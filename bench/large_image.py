"""Huge photos: memory and time of reading and recognizing an 8000 x 8000 image (issue 9, item 13).

    python bench/large_image.py [--repeats 3] [--sides 2048,3072,4096] [--sections 1234]
    PYTHONPATH=/path/to/older/checkout python bench/large_image.py   # the same figures for older code

The photos are the bundled astronaut enlarged to 8000 x 8000 (bicubic), as JPEG (quality 90) and
PNG. Every figure comes from a fresh child process (peak memory = its ru_maxrss or VmHWM):
1. whole process `mimika predict BIG`: wall time (median) and peak memory;
2. a long-lived Recognizer: resident memory after a small photo, after one huge image, and after
   a small photo again; through `Recognizer.get(path)` (as the recognizer reads today) and, when
   `images.load_image` exists, through `classify(load_image(path, max_side=S).gray)` for each S
   (what the default max_side is chosen from), with the time of that one huge image;
3. the reader alone: peak memory added by `load_gray` and `load_image` on the big files;
4. reading a 640 x 480 JPEG file: OpenCV's imread + gray alone vs `load_gray` (file checks,
   header probe, stderr capture), and the capture and the probe alone, in microseconds (medians,
   measured in turns); and the one-time import of Pillow.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "mimika" / "samples" / "astronaut.jpg"

CHILD_PRELUDE = """
import json, sys, time, gc
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":")) / 1024
def report(**kw):
    print("REPORT " + json.dumps(kw))
"""


def child(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(code)],
                          capture_output=True, text=True)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"child failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def run_process(args: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit status of one child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sides", default="2048,3072,4096")
    ap.add_argument("--sections", default="1234")
    a = ap.parse_args()
    sides = [int(s) for s in a.sides.split(",")]
    tmp = Path(tempfile.mkdtemp())
    files = {"JPEG": tmp / "big.jpg", "PNG": tmp / "big.png"}
    if set(a.sections) & set("123"):
        big = cv2.resize(cv2.imread(str(SAMPLE)), (8000, 8000), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(files["JPEG"]), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
        cv2.imwrite(str(files["PNG"]), big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        del big
    info = child("import mimika, mimika.prepare.images as m; report(path=mimika.__file__, new=hasattr(m, 'load_image'))")
    new = info["new"]
    exe = Path(sys.executable).with_name("mimika")
    exe = str(exe) if exe.is_file() else shutil.which("mimika")
    print(f"mimika from {Path(info['path']).parent}; 8000 x 8000 astronaut: "
          + ", ".join(f"{k} {f.stat().st_size / 1e6:.1f} MB" for k, f in files.items() if f.exists()))
    print(f"medians of {a.repeats} runs\n")

    if "1" in a.sections:
        whole_process(files, exe, a.repeats)
    if "2" in a.sections:
        long_lived(files, new, sides, a.repeats)
    if "3" in a.sections:
        reader_alone(files, new)
    if "4" in a.sections:
        per_image(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def whole_process(files: dict[str, Path], exe: str, repeats: int) -> None:
    print("1. whole process: mimika predict BIG")
    for kind, f in files.items():
        runs = [run_process([exe, "predict", str(f)]) for _ in range(repeats)]
        print(f"   {kind:<5} {statistics.median(r[0] for r in runs):6.2f} s   peak memory "
              f"{max(r[1] for r in runs):6.0f} MiB   exit {runs[-1][2]}")


def long_lived(files: dict[str, Path], new: bool, sides: list[int], repeats: int) -> None:
    print("\n2. a long-lived Recognizer: resident memory (MiB) before, after one huge image, after a small one")
    ways = [("Recognizer.get(path)", "rec.get(path)")]
    if new:
        ways += [(f"load_image max_side={s}", f"rec.classify(images.load_image(path, max_side={s}).gray)")
                 for s in sides]
    print(f"   {'':<5} {'way':<27} {'before':>7} {'after':>7} {'again':>7} {'peak':>7} {'seconds':>8}  faces")
    for kind, f in files.items():
        for label, call in ways:
            got = [child(f"""
                from mimika import Recognizer, images
                rec = Recognizer()
                path = {str(SAMPLE)!r}
                rec.get(path)
                before = status("VmRSS")
                path = {str(f)!r}
                t = time.perf_counter()
                faces = {call}
                seconds = time.perf_counter() - t
                gc.collect()
                after = status("VmRSS")
                path = {str(SAMPLE)!r}
                {call}
                gc.collect()
                report(before=before, after=after, again=status("VmRSS"), peak=status("VmHWM"),
                       seconds=seconds, faces=len(faces))
            """) for _ in range(repeats)]
            med = {k: statistics.median(g[k] for g in got) for k in got[0]}
            print(f"   {kind:<5} {label:<27} {med['before']:7.0f} {med['after']:7.0f} {med['again']:7.0f} "
                  f"{med['peak']:7.0f} {med['seconds']:8.2f}  {med['faces']:.0f}")


def reader_alone(files: dict[str, Path], new: bool) -> None:
    print("\n3. the reader alone: peak memory added (MiB)")
    reads = [("load_gray (full size)", "images.load_gray(path)")]
    if new:
        reads.append(("load_image (default max_side)", "images.load_image(path)"))
    for kind, f in files.items():
        for label, call in reads:
            got = child(f"""
                from mimika import images
                path = {str(SAMPLE)!r}
                {call}  # imports and first-call allocations are not counted
                base = status("VmHWM")
                path = {str(f)!r}
                t = time.perf_counter()
                {call}
                report(added=status("VmHWM") - base, seconds=time.perf_counter() - t)
            """)
            print(f"   {kind:<5} {label:<31} {got['added']:6.0f} MiB  {got['seconds']:6.2f} s")


PER_IMAGE = """
import cv2, numpy as np, statistics
from mimika import images
r = {}
if hasattr(images, "_pillow"):
    t = time.perf_counter()
    images._pillow()
    r["pillow_import_ms"] = (time.perf_counter() - t) * 1000
path = PATH
data = open(path, "rb").read()
def medians(fns, n):
    # median microseconds per call of each, measured in turns (fair on a busy machine)
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(9):
        for k, fn in fns.items():
            t = time.perf_counter()
            for _ in range(n):
                fn()
            times[k].append((time.perf_counter() - t) / n * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}
r |= medians(dict(opencv=lambda: cv2.cvtColor(cv2.imread(path, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2GRAY),
                 load_gray=lambda: images.load_gray(path)), 100)
if hasattr(images, "_decoding"):
    def capture_only():
        with images._decoding("x"):
            pass
    r.update(medians(dict(capture=capture_only, probe=lambda: images._probe(data)), 1000))
report(**r)
"""


def per_image(tmp: Path) -> None:
    print("\n4. reading a 640 x 480 JPEG file, microseconds per image")
    photo = tmp / "photo.jpg"
    cv2.imwrite(str(photo), cv2.resize(cv2.imread(str(SAMPLE)), (640, 480)))
    got = child(PER_IMAGE.replace("PATH", repr(str(photo))))
    print(f"   cv2.imread + gray alone       {got['opencv']:8.0f}")
    print(f"   load_gray(path)               {got['load_gray']:8.0f}   ({got['load_gray'] - got['opencv']:+.0f})")
    if "capture" in got:
        print(f"   of which stderr capture       {got['capture']:8.1f}")
        print(f"   of which header probe         {got['probe']:8.1f}")
        print(f"   once per process: importing Pillow and its plugins {got['pillow_import_ms']:.0f} ms")


if __name__ == "__main__":
    main()
