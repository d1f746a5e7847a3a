"""Long fuzzing campaigns (issue #9): hostile images, model files, datasets and killed training
runs against whichever mimika is on the path; prints one table and saves the figures.

    python bench/fuzz.py                       # >= 10,000 images, 300 CLI runs, 1,000 model files,
                                               # >= 100 datasets x (evaluate, train), >= 20 kills, full disk
    python bench/fuzz.py --quick               # a few minutes
    python bench/fuzz.py --json reports/fuzz/after.json

Every case runs in a child process with a time limit and an address-space limit (--mem-limit,
default 4 GiB): a decompression bomb that would take 10 GB shows as "mem limit" instead of
taking the machine. Peak memory is the child's resident high-water mark (VmHWM, reset before
each case; for CLI runs, wait4's ru_maxrss). The cases and their classification live in
tests/fuzzing.py (shared with tests/test_fuzz.py); every loop is bounded in count and time.
Run it on an unmodified checkout with PYTHONPATH pointing there to get "before" figures.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import fuzzing as F  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=10000, help="mutated images through the API (batches of 50)")
    p.add_argument("--cli", type=int, default=300, help="files through `mimika predict`, one process each")
    p.add_argument("--models", type=int, default=1000, help="mutated model files (.npz and .onnx)")
    p.add_argument("--datasets", type=int, default=110, help="datasets (structured cases, then random mutations)")
    p.add_argument("--kills", type=int, default=25, help="SIGKILLs during training (5 per run)")
    p.add_argument("--epochs", type=int, default=6, help="epochs of each killed training run")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--mem-limit", type=float, default=4.0, help="address-space limit of each child, GiB")
    p.add_argument("--category-minutes", type=float, default=20.0, help="time bound of each category")
    p.add_argument("--only", help="comma-separated subset: images,hostile,cli,models,datasets,kills,disk")
    p.add_argument("--quick", action="store_true", help="small counts: a few minutes")
    p.add_argument("--json", metavar="OUT", help="save the figures and every non-ok case")
    p.add_argument("--workdir", help="keep the generated cases here (default: a temporary folder, removed)")
    args = p.parse_args(argv)
    if args.quick:
        args.images, args.cli, args.models, args.datasets, args.kills = 400, 20, 60, 24, 3
    return args


def mimika_info() -> dict:
    import mimika
    root = Path(mimika.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "mimika"], capture_output=True,
                                    text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        commit, dirty = "", False
    return {"mimika": str(Path(mimika.__file__).parent), "commit": commit + ("+changes" if dirty else ""),
            "cli": " ".join(F.cli_command()[1:3])}


def main(argv=None) -> int:
    args = parse_args(argv)
    only = set(args.only.split(",")) if args.only else {"images", "hostile", "cli", "models", "datasets", "kills",
                                                          "disk"}
    mem = int(args.mem_limit * F.GiB)
    rng = np.random.default_rng(args.seed)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mimika-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {"MIMIKA_CACHE": str(work / "cache")}
    minutes = args.category_minutes * 60
    tallies: list[F.Tally] = []
    extra: dict = {}
    t_all = time.monotonic()
    info = mimika_info()
    print(f"mimika from {info['mimika']} ({info['commit']}); CLI: {info['cli']}; seed {args.seed}; "
          f"children limited to {args.mem_limit:g} GiB of address space; cases in {work}", flush=True)

    goods = F.good_images()
    good_paths = [p for p, _ in F.write_samples(goods, work / "good")]
    mutated = F.write_samples(F.mutated_images(goods, args.images, rng), work / "mutated") \
        if only & {"images", "cli"} else []
    hostile = F.write_samples(F.hostile_images(big=True), work / "hostile") if only & {"hostile", "cli"} else []
    special = [(p, F.Sample(p.name, p.suffix[1:], b"", d)) for p, d in F.make_special_files(work / "special")] \
        if only & {"hostile", "cli"} else []

    def start(name):
        print(f"[{time.monotonic() - t_all:7.1f} s] {name} ...", flush=True)
        return time.monotonic()

    if only & {"images", "hostile"}:
        with F.Worker(mem_limit=mem, init={"op": "init"}, env=env, log=work / "worker.log") as w:
            ref = F.reference_results(w, good_paths)
            if "images" in only:
                t0 = start(f"{len(mutated)} mutated images through Recognizer.get_files, batches of 50")
                t = F.Tally("images: mutated, API batches of 50")
                F.run_image_batches(w, mutated, good_paths, t, rng, batch_size=50, good_per_batch=12, timeout=120,
                                    single_timeout=60, deadline=t0 + minutes, reference=ref)
                t.extra["seconds"] = round(time.monotonic() - t0, 1)
                tallies.append(t)
            if "hostile" in only:
                t0 = start(f"{len(hostile)} crafted files (bombs) in batches, {len(special)} special files alone")
                t = F.Tally("images: crafted + special, API")
                F.run_image_batches(w, hostile, good_paths, t, rng, batch_size=18, good_per_batch=6, timeout=180,
                                    single_timeout=120, deadline=t0 + minutes, reference=ref)
                F.run_single_files(w, special, t, op="files", timeout=10)
                F.run_single_files(w, special, t, op="recognize", timeout=10)
                F.run_single_files(w, hostile, t, op="recognize", timeout=120)
                t.extra["seconds"] = round(time.monotonic() - t0, 1)
                tallies.append(t)

    if "cli" in only:
        pick = hostile + special
        rest = max(0, args.cli - len(pick))
        idx = rng.choice(len(mutated), min(rest, len(mutated)), replace=False) if mutated else []
        files = (pick + [mutated[int(i)] for i in idx])[:args.cli]
        t0 = start(f"{len(files)} files through `mimika predict`, one process each")
        t = F.Tally("images: CLI, one process per file")
        F.run_cli_images(files, t, timeout=120, mem_limit=mem, deadline=t0 + minutes)
        t.extra["seconds"] = round(time.monotonic() - t0, 1)
        tallies.append(t)

    if "models" in only:
        t0 = start(f"{args.models} mutated model files")
        files = F.shipped_model_files()
        cases = F.model_cases(files, args.models, rng)
        t = F.Tally("model files (.npz, .onnx)")
        images = [p for p in good_paths if p.stem in ("jpeg_colour", "png_gray16")]
        with F.Worker(mem_limit=mem, env=env, log=work / "model-worker.log") as w:
            F.run_model_files(w, cases, work / "models", t, images, timeout=120, deadline=t0 + minutes)
        t.extra["seconds"] = round(time.monotonic() - t0, 1)
        t.extra["base_files"] = sorted(files)
        tallies.append(t)

    if "datasets" in only:
        structured = F.dataset_cases(work / "probe-datasets", np.random.default_rng(0), 0, bomb_size=None)
        n_random = max(0, args.datasets - len(structured) - 1)
        shutil.rmtree(work / "probe-datasets")
        cases = F.dataset_cases(work / "datasets", rng, n_random=n_random, bomb_size=2 << 30)
        if len(cases) > args.datasets:  # --quick: an even sample, controls and bombs kept
            keep = {c.name for c in cases if c.name.startswith("good_") or "bomb" in c.name or "fifo" in c.name}
            step = len(cases) / max(1, args.datasets - len(keep))
            keep |= {cases[int(i * step)].name for i in range(args.datasets - len(keep))}
            cases = [c for c in cases if c.name in keep]
        t0 = start(f"{len(cases)} datasets through load_dataset")
        t = F.Tally("datasets: load_dataset (API)")
        with F.Worker(mem_limit=mem, env=env, log=work / "dataset-worker.log") as w:
            F.run_dataset_api(w, cases, t, timeout=20)
        t.extra["seconds"] = round(time.monotonic() - t0, 1)
        tallies.append(t)
        t0 = start(f"{len(cases)} datasets through `mimika evaluate` and `mimika train`")
        t = F.Tally("datasets: evaluate + train (CLI)")
        F.run_dataset_cli(cases, t, work / "dataset-runs", timeout=60, mem_limit=mem, deadline=t0 + 2 * minutes)
        t.extra["seconds"] = round(time.monotonic() - t0, 1)
        t.extra["datasets"] = len(cases)
        tallies.append(t)

    if "kills" in only:
        runs = max(1, math.ceil(args.kills / 5))
        t0 = start(f"training killed with SIGKILL: {runs} runs x {min(5, args.kills)} kills")
        rep = F.sigkill_training(work / "kills", rng, runs=runs, kills_per_run=min(5, args.kills), epochs=args.epochs,
                                 time_limit=minutes)
        extra["training_kills"] = asdict(rep)
        extra["training_kills"]["problems"] = rep.problems()

    if "disk" in only:
        start("full disk while writing the checkpoint and the model")
        extra["full_disk"] = F.full_disk(work / "disk")

    rows = [t.row() for t in tallies]
    print()
    print(F.table(rows))
    notes = []
    for t in tallies:
        e = t.extra
        if "batches" in e:
            notes.append(f"{t.category}: {e['batches_failed']} of {e['batches']} batches failed; {t.good_checked} good "
                         f"files checked, {len(t.lost)} lost or changed; after {e['poisoned']} failures the same "
                         "process failed on a good file too")
        if e.get("stopped_early"):
            notes.append(f"{t.category}: stopped early ({e['stopped_early']})")
        peak, where = t.peak()
        if peak:
            notes.append(f"{t.category}: peak {peak:.0f} MiB ({where}); {sum((o.peak_mb or 0) > 1024 for o in t.outcomes)}"
                         f" cases over 1 GiB; {t.count('memory')} hit the {args.mem_limit:g} GiB limit")
    if "training_kills" in extra:
        k = extra["training_kills"]
        notes.append(f"training: {k['kills']} SIGKILLs ({k['kills_during_write']} while a checkpoint or the model was "
                     f"being written) over {k['runs']} runs; resumed to the end: {k['resumed_ok']}/{k['runs']}; "
                     f"unreadable checkpoints: {len(k['unreadable_checkpoints'])}; final weights differ from the "
                     f"uninterrupted run: {len(k['weights_differ'])}; temporary files left by kills: "
                     f"{len(k['temp_files_from_kills'])}, still there after the next run: {len(k['temp_left_at_end'])}; "
                     f"resume failures: {len(k['resume_failed'])} ({k['seconds']} s)")
    for case in extra.get("full_disk", []):
        notes.append(f"{case['case']}: {case['status']}, exit {case['rc']}, {case['stderr_error_lines']} error "
                     f"line(s), last: {case['last_line'][:100]!r}; previous checkpoint intact: "
                     f"{case['previous_checkpoint_intact']}; left behind: {case['left_behind'] or 'nothing'}")
    notes.append(f"total {time.monotonic() - t_all:.0f} s")
    print()
    print("\n".join(notes))
    if args.json:
        out = {"meta": {**info, "seed": args.seed, "mem_limit_gib": args.mem_limit, "python": platform.python_version(),
                        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "args": vars(args),
                        "seconds": round(time.monotonic() - t_all, 1)},
               "rows": rows, "notes": notes, **extra,
               "cases": {t.category: t.to_json() for t in tallies}}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        print(f"figures saved to {args.json}")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
