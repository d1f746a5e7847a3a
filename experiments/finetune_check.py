"""Experiment E17 (issue #11): what `mimika finetune` should do with a user's own faces.

    python experiments/finetune_check.py                    # the choice: validation people + FER+ PublicTest
    python experiments/finetune_check.py --after            # every recipe, once, on E12b's held-out people
    python experiments/finetune_check.py --beside 0 0.25 0.5 0.75   # E18: trained beside FER+, by teacher weight
    python experiments/finetune_check.py --beside W --after     # E18's chosen weight, once
    python experiments/finetune_check.py --beside 0 --balanced [--after]   # E22: and under the balanced prior

A user's folder stands in as CK+'s labelled peaks (whole frames through the CNN detector and its
aligned crop, as `mimika predict` reads a photo). E12b's split (`--val-subjects 0.2`, seed 0) holds
24 people out: they decide nothing and are read once, by `--after`, after the choice (the folder is
then all 94 other people). The choice is made on those 94: 20% of them (seed 1) are the validation
people, the rest the folder. E17's recipes are `mimika finetune` from `ferplus` (`api.fine_tune`: 10
epochs, lr 0.001, batch 32) with or without `--augment` and `--keep 0.5` (the starting model answers
half of each target on the same face: "learning without forgetting", Li and Hoiem 2016). `--beside
W ...` (E18) replaces them by the recipe that trains beside the web photos: `mimika train --data
fer2013new.csv --data yours/ --init ferplus --teacher ferplus --teacher-weight W` with E12c's
settings (FER+'s Training photos beside the folder, 6 epochs; weight 0: no teacher), one run per
weight. Each model is scored on the people's peaks (a neutral answer counted wrong) and on FER+
PublicTest (what it may forget), with the faces only it / only `ferplus` gets right and McNemar p.
`--balanced` (E22) also scores each model trained beside the web photos under the balanced prior
(temperature and balance fitted on PublicTest as `mimika calibrate` does, with the class shares of
its training faces), and adds the people's frames (their neutral first frames too: 8 classes).
"""

import argparse
from pathlib import Path

from mimika.api import fine_tune, train
from mimika.common.metrics import mcnemar_cells
from mimika.network.config import with_settings
from mimika.network.model import Model
from mimika.prepare.datasets import joined, load_dataset, train_val_split
from mimika.prepare.detection import PRESETS
from mimika.training.calibration import fit_calibration
from mimika.training.loop import kept_as_teacher
from mimika.training.options import TrainOptions

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
START = "ferplus"
RECIPES = {"plain": {}, "augment": {"augment": True}, "keep": {"keep": 0.5},
           "augment+keep": {"augment": True, "keep": 0.5}}  # beside finetune's defaults
BESIDE = dict(epochs=6, batch_size=64, lr=0.005, schedule="cosine", weight_decay=5e-4, augment=True,
              soft_labels=True)  # E12c's settings


def trained_beside(web, folder, weight: float) -> Model:
    """`ferplus` trained on the web photos and the folder together, itself the teacher at `weight`."""
    model = Model.load(START)
    teachers = [kept_as_teacher(model)] if weight else []
    train(model, joined([web, folder]), None, TrainOptions(**BESIDE, teacher_weight=weight), log=lambda _: None,
          teachers=teachers)
    return model


def answering_balanced(model: Model, fer, train_y):
    """The model under the balanced prior, its temperature and balance fitted on the validation photos
    `fer` as `mimika calibrate` fits them; and the balance."""
    f = fit_calibration(model, fer.faces, fer.y, train_y)
    return with_settings(model, temperature=f.temperature, class_prior=f.class_prior, balance=f.balance,
                         prior="balanced"), f.balance


def scored(name: str, model, sets: dict, baseline: dict) -> dict:
    """Right/wrong per face of each set, printed with accuracy and the split against the baseline."""
    right = {k: model.predict_proba(s.faces).argmax(1) == s.y for k, s in sets.items()}
    cells = [f"{r.mean():.4f} | " + (mcnemar_cells(r, baseline[k]) if baseline else "- | -") for k, r in right.items()]
    print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return right


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckplus", default=str(SHARED / "ckplus"))
    ap.add_argument("--fer", default=str(SHARED / "fer2013" / "fer2013new.csv"))
    ap.add_argument("--after", action="store_true", help="after the choice: every recipe, read once on the "
                    "held-out people")
    ap.add_argument("--beside", type=float, nargs="+", metavar="W", help="E18: trained beside FER+'s Training "
                    "photos with the starting model as teacher at these weights, instead of the fine-tuning recipes")
    ap.add_argument("--balanced", action="store_true", help="E22: with --beside, each model also under the balanced "
                    "prior; the people's frames (8 classes) scored too")
    a = ap.parse_args()
    start = Model.load(START)
    labels, spec = start.labels, start.config.crop
    peaks = load_dataset(a.ckplus, spec, detector=PRESETS["cnn"]).relabel(labels)
    e12b = train_val_split(peaks, 0.2, seed=0)  # E12b's 24 held-out people: read only by --after
    inner = train_val_split(e12b.train, 0.2, seed=1)
    web = load_dataset(a.fer, spec).relabel(labels)
    fer = web.split("PublicTest")
    if a.after:
        folder, people, who = e12b.train, e12b.val, "E12b's held-out people (read once)"
    else:
        folder, people, who = inner.train, inner.val, "validation people"
    n_people = len(set(people.subjects.tolist()))
    print(f"folder: {len(folder)} peaks of {len(set(folder.subjects.tolist()))} people; {who}: "
          f"{len(people)} peaks of {n_people} people; FER+ PublicTest {len(fer)} faces")
    sets = {"people": people, "fer": fer}
    if a.balanced:
        frames = load_dataset(a.ckplus, spec, detector=PRESETS["cnn"], with_neutral=True).relabel(labels)
        sets["frames"] = frames.with_subjects(sorted(set(people.subjects.tolist())))
    names = {"people": "people", "fer": "PublicTest", "frames": "people's frames, 8 classes"}
    print("| model | " + " | ".join(f"{names[k]}: accuracy | only it / only ferplus | p" for k in sets) + " |")
    print("|---|" + "---|---|---|" * len(sets))
    base = scored(START, start, sets, {})
    if a.beside:
        web_train = web.split("Training")
        train_y = joined([web_train, folder]).relabel(labels).y  # the class shares --balanced is fitted with
        for weight in a.beside:
            model = trained_beside(web_train, folder, weight)
            scored(f"beside FER+, teacher {weight:g}", model, sets, base)
            if a.balanced:
                balanced, b = answering_balanced(model, fer, train_y)
                scored(f"the same, balanced prior (balance {b:g})", balanced, sets, base)
        return
    for name, recipe in RECIPES.items():
        scored(name, fine_tune(START, folder, log=lambda _: None, **recipe), sets, base)


if __name__ == "__main__":
    main()
