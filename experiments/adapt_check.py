"""Experiment E20 (issue #11): adapting `ferplus` to a camera without labels (AdaBN, Li et al. 2017).

    python experiments/adapt_check.py                 # the choice of weight: E17's validation people
    python experiments/adapt_check.py --after W       # a chosen weight, once: held-out people, all of CK+

A lab's lighting and lens shift the activations of every layer away from those of the photos the
model trained on, and batch normalization then normalizes them with the wrong statistics; AdaBN
re-estimates those statistics on the camera's own faces, no labels needed. Not kept (E20 in
experiments/experiments.md: one face of 53 on the validation people), so it lives here, not in mimika.

CK+ stands in for a user's camera: its frames (each sequence's neutral first frame and labelled
peak, whole frames through the CNN detector and its aligned crop, as `mimika predict` reads a photo)
are the camera's recordings, their labels never used to adapt. E17's split: E12b's 24 held-out people
(`--val-subjects 0.2`, seed 0) decide nothing and are read only by `--after`; of the other 94, 20%
(seed 1) are the validation people, the rest the folder. A model is adapted either on the frames of
the people it then reads (their own recordings: how a user adapts to the recordings they analyse) or
on the frames of other people of the same camera (the folder; after the choice, all 94). Scored on
the people's peaks (a neutral answer counted wrong) and on all their frames (8 classes), each with
the faces only it / only the unadapted model gets right and McNemar p.
"""

import argparse
import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mimika.common.metrics import mcnemar_cells, report
from mimika.network.config import tta_views
from mimika.network.model import Model
from mimika.prepare.datasets import load_dataset, train_val_split
from mimika.prepare.detection import PRESETS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
START = "ferplus"
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def batch_norm_layers(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_batch_norm(model: Model, crops: np.ndarray, weight: float = 1.0, batch_size: int = 512) -> Model:
    """A copy of `model` whose batch-norm statistics are (1 - weight) x its own + weight x those of
    the face crops (uint8 N x H x W, the model's input size, in its test-time views: a model that
    averages a face with its mirror image is adapted to both). Everything else is unchanged: the
    temperature and class prior, fitted on the training photos, stay."""
    adapted = copy.deepcopy(model)
    layers = batch_norm_layers(adapted.net)
    own = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in layers]
    x = adapted.config.normalize(np.concatenate(tta_views(crops, adapted.config.tta)))
    order = np.random.default_rng(0).permutation(len(x))  # every batch a mix of the views and files
    net = adapted.net.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    for i in range(0, len(x), batch_size):
        net(torch.from_numpy(x[order[i:i + batch_size]]))
    for m, (mean, var, momentum) in zip(layers, own):
        m.running_mean.mul_(weight).add_((1 - weight) * mean)
        m.running_var.mul_(weight).add_((1 - weight) * var)
        m.momentum = momentum
        m.eval()
    return adapted


def of_people(frames, people):
    """The frames (first and peak) of the people of a set of peaks."""
    return frames.with_subjects(sorted(set(people.subjects.tolist())))


def scored(name: str, model, sets: dict, baseline: dict) -> dict:
    """Each set's answers, printed with accuracy, balanced accuracy and the split against the baseline."""
    answers = {k: model.predict_proba(s.faces).argmax(1) for k, s in sets.items()}
    cells = []
    for k, s in sets.items():
        rep = report(s.y, answers[k], s.labels)
        cell = f"{rep['accuracy']:.4f} ({rep['balanced_accuracy']:.3f})"
        cells.append(cell + (f" | {mcnemar_cells(answers[k] == s.y, baseline[k] == s.y)}" if baseline else " | - | -"))
    print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return answers


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckplus", default=str(SHARED / "ckplus"))
    ap.add_argument("--fer", default=str(SHARED / "fer2013" / "fer2013new.csv"))
    ap.add_argument("--after", type=float, metavar="W", help="after the choice: weight W, read once on the held-out "
                    "people and on all of CK+")
    a = ap.parse_args()
    start = Model.load(START)
    labels, spec = start.labels, start.config.crop
    peaks = load_dataset(a.ckplus, spec, detector=PRESETS["cnn"]).relabel(labels)
    frames = load_dataset(a.ckplus, spec, detector=PRESETS["cnn"], with_neutral=True).relabel(labels)
    e12b = train_val_split(peaks, 0.2, seed=0)  # E12b's 24 held-out people: read only by --after
    inner = train_val_split(e12b.train, 0.2, seed=1)
    if a.after is None:
        people, others, who, weights = inner.val, inner.train, "validation people", WEIGHTS
    else:
        people, others, who, weights = e12b.val, e12b.train, "E12b's held-out people (read once)", (0.0, a.after)
    sets = {"peaks": people, "frames": of_people(frames, people)}
    print(f"{who}: {len(people)} peaks, {len(sets['frames'])} frames of {len(set(people.subjects.tolist()))} people; "
          f"other people's frames to adapt on: {len(of_people(frames, others))}")
    print("| model | peaks: accuracy (balanced) | only it / only ferplus | p | all frames, 8 classes | only it / only "
          "ferplus | p |")
    print("|---|---|---|---|---|---|---|")
    base = scored(START, start, sets, {})
    for w in weights[1:]:
        scored(f"adapted on their own frames, weight {w:g}", adapt_batch_norm(start, sets["frames"].faces, w), sets, base)
        scored(f"adapted on other people's frames, weight {w:g}",
               adapt_batch_norm(start, of_people(frames, others).faces, w), sets, base)
    if a.after is None:
        return
    print(f"\nall of CK+ ({len(peaks)} peaks, {len(frames)} frames of {len(set(frames.subjects.tolist()))} people), "
          f"adapted on all its frames, weight {a.after:g} (the 19 validation people among them):")
    whole = {"peaks": peaks, "frames": frames}
    base = scored(START, start, whole, {})
    adapted = adapt_batch_norm(start, frames.faces, a.after)
    scored(f"adapted, weight {a.after:g}", adapted, whole, base)
    fer = load_dataset(a.fer, spec).relabel(labels).split("PublicTest")
    print(f"\nthe CK+-adapted model on web photos (FER+ PublicTest, {len(fer)} faces; peaks column only):")
    base = scored(START, start, {"peaks": fer}, {})
    scored(f"adapted to CK+, weight {a.after:g}", adapted, {"peaks": fer}, base)


if __name__ == "__main__":
    main()
