"""Scaling out on this machine: training in 1 and 2 processes, prediction with 1 and 2 workers.

    python bench/scale.py [--repeats 3] [--faces 1024] [--photos 500] [--arch seed] [--batch 32] [--skip-train]
                          [--skip-predict] [--skip-agreement] [--resume-check]
    python bench/scale.py --make-data DIR [--faces N]     # the training faces alone (scripts/gpu_check.sh)

1. training images/s, the whole `mimika train` command on class folders of faces made from the
   bundled astronaut photo (--crop whole, no validation), 1 process with all cores as threads vs
   `--nproc 2` (torchrun, DistributedDataParallel, cores/2 threads each), same global batch (--batch):
   faces / median epoch time over epochs 2-4, runs interleaved, medians of --repeats;
2. prediction images/s, the whole `mimika predict DIR --csv` command on a folder of 640x480 photos
   (the astronaut moved, scaled and mirrored), --workers 1 vs 2, wall time from start to exit, with
   the default (CNN) detector, whose ONNX Runtime threads already keep both cores of one process
   busy part of the time, and with the Haar detector (--detectors);
3. agreement: max |weight difference| after one epoch (48 faces, batch 8) of 2 processes vs 1
   with the same global batch, float32, at lr 0.01 and 0.001, with dropout off and on, beside the
   difference between one process run with 1 and with 2 threads (float noise of the same size);
   and the time to all-reduce the `seed` net's gradients over loopback gloo (what each step pays
   per added process; over a network, add its transfer time);
4. with --resume-check: a 2-process run of 2 epochs equals, bit for bit, 1 epoch + --resume.

On a machine shared with other jobs, one process with 2 threads collapses whenever another job
takes a core (its threads wait for each other), 2 single-thread processes much less: each speed
line lists every run, and the median of the ratios of runs made one after the other is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "mimika" / "samples" / "astronaut.jpg"
MIMIKA = [sys.executable, "-m", "mimika"]


def astronaut_face() -> np.ndarray:
    from mimika.prepare.detection import detect_faces  # the default (CNN) detector: no Haar cascade needed
    gray = cv2.cvtColor(cv2.imread(str(SAMPLE)), cv2.COLOR_BGR2GRAY)
    (x, y, w, h), = detect_faces(gray)
    m = w // 6
    return cv2.resize(gray[y - m:y + h + m, x - m:x + w + m], (128, 128), interpolation=cv2.INTER_AREA)


def make_faces(root: Path, n: int, seed: int = 0) -> Path:
    """n faces in two class folders: the face upright (happy) and upside down (surprise), each
    moved, turned, scaled and brightened a little; file names carry 8 subject ids."""
    face, rng = astronaut_face(), np.random.default_rng(seed)
    for i in range(n):
        M = cv2.getRotationMatrix2D((64, 64), rng.uniform(-8, 8), rng.uniform(0.93, 1.07))
        M[:, 2] += rng.uniform(-4, 4, 2)
        img = np.clip(cv2.warpAffine(face, M, (128, 128), borderMode=cv2.BORDER_REPLICATE) * rng.uniform(0.8, 1.1),
                      0, 255).astype(np.uint8)
        label = "happy" if i % 2 == 0 else "surprise"
        (root / label).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / label / f"S{i % 8:03d}_{i:05d}.png"), img if label == "happy" else img[::-1])
    return root


def make_photos(root: Path, n: int, seed: int = 0) -> Path:
    """n 640x480 JPEG photos of the astronaut, moved, scaled, mirrored and brightened."""
    bgr, rng = cv2.imread(str(SAMPLE)), np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        side = int(rng.integers(300, 480))
        img = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA)
        canvas = np.full((480, 640, 3), rng.integers(60, 200), np.uint8)
        x, y = int(rng.integers(0, 640 - side + 1)), int(rng.integers(0, 480 - side + 1))
        canvas[y:y + side, x:x + side] = img[:, ::-1] if i % 2 else img
        cv2.imwrite(str(root / f"photo{i:04d}.jpg"), np.clip(canvas * rng.uniform(0.8, 1.1), 0, 255).astype(np.uint8))
    return root


def run(args: list[str], env: dict | None = None) -> float:
    return run_cpu(args, env)[0]


def run_cpu(args: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, the process and the children it waited for)."""
    t = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"{' '.join(args)} failed:\n{err.read().decode()[-2000:]}")
    return time.perf_counter() - t, usage.ru_utime + usage.ru_stime


def training_speed(data: Path, n: int, arch: str, batch: int, repeats: int, tmp: Path) -> None:
    print(f"1. training, arch {arch}, {n} faces, global batch {batch}, {os.cpu_count()} cores "
          f"(images/s from the median epoch of 2-4; whole runs interleaved, medians of {repeats})")
    speed = {1: [], 2: []}
    for _ in range(repeats):
        for nproc in (1, 2):
            out = tmp / f"m{nproc}.npz"
            run(MIMIKA + ["train", "--data", str(data), "--crop", "whole", "--arch", arch, "--epochs", "4",
                          "--batch-size", str(batch), "--nproc", str(nproc), "--out", str(out)])
            hist = json.loads(out.with_suffix("").with_suffix(".history.json").read_text())
            speed[nproc].append(n / statistics.median(h["seconds"] for h in hist[1:]))
    base = statistics.median(speed[1])
    for nproc, label in ((1, f"1 process, {os.cpu_count()} threads"),
                         (2, f"2 processes (torchrun), {max(1, os.cpu_count() // 2)} thread each")):
        med = statistics.median(speed[nproc])
        print(f"  {label:<42} {med:8.1f} images/s  {med / base:5.2f}x   (runs: "
              f"{', '.join(f'{v:.0f}' for v in speed[nproc])})")
    print(f"  median of the ratios of runs made one after the other: "
          f"{statistics.median(b / a for a, b in zip(speed[1], speed[2])):.2f}x")


def prediction_speed(photos: Path, n: int, repeats: int, detector: str) -> None:
    print(f"2. prediction, {n} photos 640x480, default model, detector {detector}, whole command "
          f"(medians of {repeats}, interleaved)")
    walls, cpus = {1: [], 2: []}, {1: [], 2: []}
    for _ in range(repeats):
        for w in (1, 2):
            wall, cpu = run_cpu(MIMIKA + ["predict", str(photos), "--csv", "--workers", str(w), "--detector", detector])
            walls[w].append(wall)
            cpus[w].append(cpu)
    base = n / statistics.median(walls[1])
    for w in (1, 2):
        ips = n / statistics.median(walls[w])
        print(f"  --workers {w}: {statistics.median(walls[w]):6.2f} s  {ips:7.1f} images/s  {ips / base:5.2f}x   "
              f"CPU {statistics.median(cpus[w]):5.2f} s = {statistics.median(c / t for c, t in zip(cpus[w], walls[w])):.2f}"
              f" cores busy   (runs: {', '.join(f'{v:.2f}' for v in walls[w])} s)")
    print(f"  median of the ratios of runs made one after the other: "
          f"{statistics.median(a / b for a, b in zip(walls[1], walls[2])):.2f}x")


WORKER = """
import sys
import numpy as np
import torch
from mimika import TrainOptions, create_model, train
from mimika.prepare.crop import CropSpec
from mimika.prepare.datasets import load_class_folders
from mimika.training.distributed import join
data_dir, out, lr, dropout = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "1"
if len(sys.argv) > 5:
    torch.set_num_threads(int(sys.argv[5]))
data = load_class_folders(data_dir, CropSpec(96, 96), crop="whole")
model = create_model("seed", labels=data.labels, seed=0)
if not dropout:
    for m in model.net.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
train(model, data, options=TrainOptions(epochs=1, batch_size=8, lr=lr, bf16=False, device="cpu"), log=lambda l: None)
np.savez(f"{out}-rank{join().rank}.npz", **{k: v.numpy() for k, v in model.net.state_dict().items()})
"""


def max_diff(a: Path, b: Path) -> float:
    x, y = np.load(a), np.load(b)
    return max(float(np.abs(x[k] - y[k]).max()) for k in x.files)


def agreement(tmp: Path) -> None:
    data = make_faces(tmp / "agree", 48)
    script = tmp / "agree_worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    print("3. max |weight difference| after 1 epoch (48 faces, batch 8 = 6 steps, float32, seed net)")
    print(f"  {'lr':>6} {'dropout':>8} {'2 processes vs 1':>18} {'1 process: 1 vs 2 threads':>27}")
    for lr in (0.01, 0.001):
        for dropout in ("0", "1"):
            tag = f"{tmp}/w{lr}-{dropout}"
            run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                 str(script), str(data), f"{tag}-two", str(lr), dropout], env)
            run([sys.executable, str(script), str(data), f"{tag}-one", str(lr), dropout, "1"], env)
            run([sys.executable, str(script), str(data), f"{tag}-one2", str(lr), dropout, "2"], env)
            ranks = max_diff(Path(f"{tag}-two-rank0.npz"), Path(f"{tag}-two-rank1.npz"))
            print(f"  {lr:>6} {'on' if dropout == '1' else 'off':>8} "
                  f"{max_diff(Path(f'{tag}-two-rank0.npz'), Path(f'{tag}-one-rank0.npz')):>18.2e} "
                  f"{max_diff(Path(f'{tag}-one-rank0.npz'), Path(f'{tag}-one2-rank0.npz')):>27.2e}"
                  f"   (rank 0 vs rank 1: {ranks:.1e})")
    allreduce = tmp / "allreduce.py"
    allreduce.write_text(ALLREDUCE)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          str(allreduce)], env=env, capture_output=True, text=True)
    print("  " + (out.stdout.strip() or out.stderr.strip()[-500:]))


ALLREDUCE = """
import statistics, time, torch, torch.distributed as dist
from mimika.network.model import Model
dist.init_process_group("gloo")
n = sum(p.numel() for p in Model.create("seed").net.parameters())
t = torch.zeros(n)
times = []
for i in range(12):
    dist.barrier()
    t0 = time.perf_counter()
    dist.all_reduce(t)
    times.append(time.perf_counter() - t0)
if dist.get_rank() == 0:
    print(f"all-reduce of the seed net's gradients ({n / 1e6:.2f} M floats, {n * 4 / 2**20:.1f} MiB), 2 processes, "
          f"loopback gloo: median {statistics.median(times[2:]) * 1e3:.1f} ms per step")
dist.destroy_process_group()
"""


def resume_check(tmp: Path) -> None:
    data = make_faces(tmp / "resume", 96)
    base = MIMIKA + ["train", "--data", str(data), "--crop", "whole", "--nproc", "2", "--batch-size", "8", "--augment"]
    run(base + ["--epochs", "2", "--out", str(tmp / "full.npz")])
    run(base + ["--epochs", "1", "--out", str(tmp / "half.npz"), "--checkpoint", str(tmp / "c.npz")])
    run(base + ["--epochs", "2", "--out", str(tmp / "resumed.npz"), "--resume", str(tmp / "c.npz")])
    a, b = np.load(tmp / "full.npz"), np.load(tmp / "resumed.npz")
    same = all(np.array_equal(a[k], b[k]) for k in a.files if k.startswith("param/"))
    print(f"4. 2 processes, 2 epochs (augmentation and dropout on) vs 1 epoch + --resume: identical weights: {same}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--faces", type=int, default=1024)
    ap.add_argument("--photos", type=int, default=500)
    ap.add_argument("--arch", default="seed")
    ap.add_argument("--batch", type=int, default=32, help="global batch of the training runs")
    ap.add_argument("--detectors", default="cnn,haar", help="detector presets of the prediction runs")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-predict", action="store_true")
    ap.add_argument("--skip-agreement", action="store_true")
    ap.add_argument("--resume-check", action="store_true")
    ap.add_argument("--make-data", metavar="DIR", help="only write the training faces into DIR")
    a = ap.parse_args()
    if a.make_data:
        make_faces(Path(a.make_data), a.faces)
        print(f"wrote {a.faces} faces below {a.make_data}")
        return
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not a.skip_train:
            training_speed(make_faces(tmp / "faces", a.faces), a.faces, a.arch, a.batch, a.repeats, tmp)
        if not a.skip_predict:
            photos = make_photos(tmp / "photos", a.photos)
            for detector in a.detectors.split(","):
                prediction_speed(photos, a.photos, a.repeats, detector)
        if not a.skip_agreement:
            agreement(tmp)
        if a.resume_check:
            resume_check(tmp)
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
