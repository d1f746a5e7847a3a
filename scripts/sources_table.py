"""The many-sources protocol (issue #28): each source's test part read by today's default, by the
model trained without that source (leave-one-source-out) and by the model trained on all of them.

    python scripts/sources_table.py [--data ../shared/data] [--runs runs/sources] [--train]
    python scripts/sources_table.py --split val --models NAME=FILE ...   # candidates, on validation parts

Every source is read as a user's photo is read: CK+ frames, ExpW crops and the Taiwanese photos
through the CNN detector and its aligned crop (`--detector cnn`), FER+'s 48-pixel faces as the
pre-cropped faces they are (`--crop whole`). FER+: PrivateTest, majority labels, 8 classes; CK+:
the peak frames of its test subjects, 7 emotions, a neutral answer counted wrong; ExpW and the
Taiwanese corpus: their test parts, 7 classes. Each row: accuracy, balanced accuracy (mean recall of
the classes present), recall per class, calibration error (ECE, 15 bins), and the share of the
faces (none of them contempt) answered contempt, the check that a one-class source
(`contempt_extra`) does not pull other cameras' faces towards its class. The last lines: the
mean balanced accuracy of the leave-one-source-out rows against today's default on the same parts.

With `--train`, the models this protocol needs and the runs folder lacks are trained first, each
with the recipe `RECIPES` names (resumed from its checkpoint when interrupted; a run that starts
from `ferplus` is then mixed with it, `MIX_WEIGHT`), then made into prediction files as a shipped model
is (`scripts/retrain.sh ship`): the model trained on all sources is the shipped `multisource`'s
recipe (`scripts/retrain.sh multisource`). Nothing here is chosen on a
test part: the recipes were chosen on the validation parts (`--split val`), reports/experiments.md.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from mimika.common.metrics import report
from mimika.network.predictor import load_predictor
from mimika.prepare.crop import CropSpec
from mimika.prepare.datasets import FaceSet, load_dataset
from mimika.prepare.detection import PRESETS
from mimika.reports.evaluation import recall_line

ROOT = Path(__file__).resolve().parents[1]
#: source -> (path below the data folder, how its faces are read, what its parts hold)
SOURCES = {
    "ferplus": ("fer2013/fer2013new.csv", "whole", "FER+ {part} (web photos), 8 classes"),
    "ckplus": ("ckplus", "detect", "CK+ {part} subjects' peaks (posed, lab), 7 emotions, neutral counted wrong"),
    "expw": ("expw", "detect", "ExpW {part} (web photos), 7 classes"),
    "taiwanese": ("taiwanese", "detect", "Taiwanese {part} performers (posed, studio), 7 classes"),
}
PART_NAMES = {"test": "test", "val": "validation"}
TRAINING_SETS = list(SOURCES)  # contempt_extra is left out: experiments.md E32
SPLITS = {"test": "PrivateTest", "val": "PublicTest"}
#: the training recipes: the default's starts from `ferplus` (which FER+ trained); the model without
#: FER+ cannot, and trains from scratch on the other sources with the FER+ recipe's schedule
COMMON = ["--detector", "cnn", "--with-neutral", "--batch-size", "64", "--weight-decay", "5e-4", "--augment",
          "--soft-labels", "--source-balance", "0.5", "--class-balance", "0.5", "--keep-best", "--half", "--bf16"]
START = "mimika/models/ferplus.npz"
#: the run's weight in its mix with START (`mimika interpolate`, WiSE-FT), chosen on the validation
#: parts (experiments.md E37); a run from scratch is not mixed
MIX_WEIGHT = 0.6
RECIPES = {
    "from-ferplus": ["--init", START, "--epochs", "8", "--lr", "0.005", "--schedule", "cosine"],
    "from-scratch": ["--arch", "vgg48", "--epochs", "40", "--lr", "0.05", "--schedule", "cosine",
                     "--warmup-epochs", "1"],
}


def recipe_for(without: str | None) -> str:
    return "from-scratch" if without == "ferplus" else "from-ferplus"


def mixed(without: str | None) -> bool:
    """Whether the run is mixed with START afterwards: every run that starts from it."""
    return START in RECIPES[recipe_for(without)]


@functools.lru_cache(maxsize=None)
def read_part(source: str, split: str, spec: CropSpec, data_dir: Path) -> FaceSet:
    """The faces of one part of a source, prepared for a model's crop, as the protocol reads them
    (once per crop: every model of the same input reads the same faces)."""
    path, crop, _ = SOURCES[source]
    data = load_dataset(data_dir / path, spec, crop=crop, detector=PRESETS["cnn"] if crop == "detect" else None)
    return data.split(SPLITS[split])


def contempt_share(probs: np.ndarray, labels: list[str], data: FaceSet) -> float | None:
    """The share of the faces whose label is not contempt that are answered contempt."""
    if "contempt" not in labels:
        return None
    others = np.asarray(data.labels)[data.y] != "contempt"
    return float((probs[others].argmax(1) == labels.index("contempt")).mean()) if others.any() else None


def score(model, data: FaceSet) -> dict:
    data = data.known_to(model.labels)[0].relabel(model.labels)
    probs = model.predict_proba(data.faces)
    rep = report(data.y, probs.argmax(1), model.labels, probs)
    rep["contempt_share"] = contempt_share(probs, model.labels, data)
    return rep


def row(source: str, split: str, name: str, trained: str, rep: dict) -> str:
    share = "" if rep["contempt_share"] is None else f"{rep['contempt_share']:.3f}"
    part = SOURCES[source][2].format(part=PART_NAMES[split])
    return (f"| {part} | `{name}` | {trained} | {rep['n']} | {rep['accuracy']:.3f} | "
            f"{rep['balanced_accuracy']:.3f} | {recall_line(rep)} | {rep['ece']:.3f} | {share} |")


def run_dir(runs: Path, without: str | None) -> Path:
    return runs / (f"without-{without}" if without else "all")


def shipped_file(runs: Path, without: str | None) -> Path:
    """The prediction file of the model trained without `without` (None: on every source)."""
    return run_dir(runs, without) / "ship" / "model.onnx"


def set_paths(without: str | None, data_dir: Path) -> list[str]:
    return [str(data_dir / SOURCES[s][0]) for s in TRAINING_SETS if s != without]


def train_command(without: str | None, out: Path, data_dir: Path) -> list[str]:
    """`mimika train` on every training set but `without`, by its recipe (into `tuned.npz` where the
    recipe then mixes the run with its start)."""
    sets = [a for path in set_paths(without, data_dir) for a in ("--data", path)]
    trained = "tuned.npz" if mixed(without) else "model.npz"
    return [sys.executable, "-m", "mimika.cli", "train", *sets, *COMMON, *RECIPES[recipe_for(without)],
            "--out", str(out / trained), "--checkpoint", str(out / "ckpt.npz")]


def run(cmd: list[str]) -> None:
    print(" ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=sys.stderr)  # the table alone on stdout


def ensure_trained(runs: Path, without: str | None, data_dir: Path) -> Path:
    """The prediction file of the model trained without `without`, trained and shipped if missing:
    the recipe's run (mixed with START where it started from it), then flip, INT8, and the
    temperature and balance fitted on the validation parts of its own sets."""
    out = run_dir(runs, without)
    ship = shipped_file(runs, without)
    if ship.is_file():
        return ship
    out.mkdir(parents=True, exist_ok=True)
    mix = mixed(without)
    if not (out / ("tuned.npz" if mix else "model.npz")).is_file():
        cmd = train_command(without, out, data_dir)
        run(cmd + (["--resume", str(out / "ckpt.npz")] if (out / "ckpt.npz").is_file() else []))
    if mix and not (out / "model.npz").is_file():
        run([sys.executable, "-m", "mimika.cli", "interpolate", START, str(out / "tuned.npz"), "--weight",
             str(MIX_WEIGHT), "--out", str(out / "model.npz")])
    first, *others = set_paths(without, data_dir)
    more = [a for path in others for a in ("--data", path)] + ["--detector", "cnn", "--with-neutral"]
    run(["bash", str(ROOT / "scripts" / "retrain.sh"), "ship", "model", str(out / "model.npz"), first,
         str(out / "ship"), *more])
    return ship


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "sources", help="where the protocol's models are")
    ap.add_argument("--train", action="store_true", help="train (and ship) the models the runs folder lacks")
    ap.add_argument("--split", choices=list(SPLITS), default="test", help="test parts (the protocol) or validation")
    ap.add_argument("--models", nargs="+", default=[], metavar="NAME=FILE",
                    help="only these models, on every source (candidates, on --split val)")
    ap.add_argument("--baseline", default="ferplus", help="today's default")
    a = ap.parse_args()
    print("| source: part read | model | trained on | n | accuracy | balanced accuracy | recall per class | ECE | "
          "non-contempt faces answered contempt |")
    print("|---|---|---|---|---|---|---|---|---|")
    if a.models:
        models = {name: load_predictor(path) for name, path in (m.split("=", 1) for m in a.models)}
        for source in SOURCES:
            for name, model in models.items():
                print(row(source, a.split, name, "", score(model, read_part(source, a.split, model.config.crop, a.data))),
                      flush=True)
        return
    if a.split != "test":
        raise SystemExit("the protocol reads the test parts; give --models to read candidates on --split val")
    files = {s: ensure_trained(a.runs, s, a.data) if a.train else shipped_file(a.runs, s)
             for s in [*SOURCES, None]}  # None: trained on every source
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise SystemExit("missing (run with --train): " + ", ".join(missing))
    baseline, every = load_predictor(a.baseline), load_predictor(files[None])
    loso, base, every_row = [], [], []
    for source in SOURCES:
        without = load_predictor(files[source])
        part = read_part(source, a.split, baseline.config.crop, a.data)
        rep = score(baseline, part)
        base.append(rep["balanced_accuracy"])
        print(row(source, a.split, a.baseline, "FER+ (today's default)", rep), flush=True)
        rep = score(without, read_part(source, a.split, without.config.crop, a.data))
        loso.append(rep["balanced_accuracy"])
        print(row(source, a.split, f"without-{source}", "every source but this one", rep), flush=True)
        rep = score(every, read_part(source, a.split, every.config.crop, a.data))
        every_row.append(rep["balanced_accuracy"])
        print(row(source, a.split, "all", "every source (in domain)", rep), flush=True)
    print(f"\nleave-one-source-out, mean balanced accuracy over {len(SOURCES)} sources: "
          f"{statistics.mean(loso):.3f} (today's default on the same parts: {statistics.mean(base):.3f})")
    print(f"the model trained on every source, mean balanced accuracy over their test parts: "
          f"{statistics.mean(every_row):.3f}")


if __name__ == "__main__":
    main()
