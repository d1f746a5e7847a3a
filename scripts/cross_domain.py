"""The table of docs/cross-domain.md: each shipped model tested on its own benchmark and on the
datasets it never trained on, whole frames through the default detector and its aligned crop,
with per-class recall, balanced accuracy, and the calibration error before and after the
temperature stored in the model (a copy with temperature 1 gives "before").

    python scripts/cross_domain.py [--data ../shared/data] [--only ferplus] [--replace ferplus=FILE]

Protocol (issue #11): FER+ / FER2013 models -> CK+ camera frames (the 327 labelled peaks: 7
emotions, read as one of the 7 (`--data-classes-only`: neutral is not an answer for a peak) and,
stricter, with a neutral answer counted wrong; with the 593 neutral first frames: 8 classes), and
the CK+ model -> FER+ PrivateTest (the emotions it knows). Each model with fitted class shares is
scored under both priors (`--prior training`, its default, and `--prior balanced`). No row is used
to choose anything.
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mimika.network.config import resolve_model_path
from mimika.network.export import update_model_config
from mimika.network.predictor import load_predictor
from mimika.reports.evaluation import recall_line

ROOT = Path(__file__).resolve().parents[1]
CKPLUS = ["ckplus", "--detector", "cnn"]
ROWS = [  # model, trained on, tested on, evaluate arguments after --data
    ("ferplus", "FER+ Training", "FER+ PrivateTest (in domain)", ["fer2013/fer2013new.csv", "--split", "PrivateTest"]),
    ("ferplus", "FER+ Training", "CK+ peaks, 7 emotions, answers among the 7", CKPLUS + ["--data-classes-only"]),
    ("ferplus", "FER+ Training", "CK+ peaks, 7 emotions, neutral counted wrong", CKPLUS),
    ("ferplus", "FER+ Training", "CK+ peaks + neutral first frames, 8 classes", CKPLUS + ["--with-neutral"]),
    ("fer2013", "FER2013 Training", "FER2013 PrivateTest (in domain)", ["fer2013/fer2013.csv.gz", "--split", "PrivateTest"]),
    ("fer2013", "FER2013 Training", "CK+ peaks, its 6 emotions (no contempt), answers among the 6",
     CKPLUS + ["--known-classes", "--data-classes-only"]),
    ("fer2013", "FER2013 Training", "CK+ peaks, its 6 emotions, neutral counted wrong", CKPLUS + ["--known-classes"]),
    ("fer2013", "FER2013 Training", "CK+ peaks + neutral first frames, its 7 classes",
     CKPLUS + ["--with-neutral", "--known-classes"]),
    ("seed", "CK+ (76 subjects)", "CK+ 24 held-out subjects (in domain)", ["ckplus", "--split", "heldout"]),
    ("seed", "CK+ (76 subjects)", "FER+ PrivateTest, its 7 emotions",
     ["fer2013/fer2013new.csv", "--split", "PrivateTest", "--known-classes"]),
]


def evaluate(model: str, args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "mimika.cli", "evaluate", "--model", model, "--data", *args, "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def uncalibrated_copy(name: str, tmp: Path) -> Path:
    """The shipped prediction file with temperature 1: what the model said before calibration."""
    src = resolve_model_path(name)
    dst = tmp / f"{src.stem}-t1{src.suffix}"
    shutil.copyfile(src, dst)
    update_model_config(dst, temperature=1.0)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--replace", action="append", default=[], metavar="NAME=FILE",
                    help="score FILE (a candidate) in the rows of the shipped model NAME; repeatable")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only the rows of these shipped models")
    a = ap.parse_args()
    candidates = dict(r.split("=", 1) for r in a.replace)
    print("| model | trained on | tested on | prior | n | accuracy | balanced accuracy | recall per class | "
          "ECE at T=1 -> stored T | command |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for shipped, trained, tested, rest in ROWS:
            if a.only and shipped not in a.only:
                continue
            name = candidates.get(shipped, shipped)
            config = load_predictor(name).config
            for prior in ["training"] + (["balanced"] if config.class_prior else []):
                args = [f"{a.data}/{rest[0]}", *rest[1:]] + (["--prior", prior] if prior != config.prior else [])
                rep = evaluate(name, args)
                before = evaluate(str(uncalibrated_copy(name, Path(tmp))), args)
                moved = f" (T=1: {before['accuracy']:.3f})" if before["accuracy"] != rep["accuracy"] else ""
                shown = " ".join(["mimika evaluate --model", name, "--data", *args]).replace(a.data, "../shared/data")
                print(f"| `{name}` | {trained} | {tested} | {prior} | {rep['n']} | {rep['accuracy']:.3f}{moved} | "
                      f"{rep['balanced_accuracy']:.3f} | {recall_line(rep)} | {before['ece']:.3f} -> {rep['ece']:.3f} "
                      f"(T {config.temperature:g}) | `{shown}` |", flush=True)


if __name__ == "__main__":
    main()
