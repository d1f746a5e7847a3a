"""Which faces train, which select, which test: the protocols, as functions the CLI and the API share.

- A set with its own split (FER2013's Usage column, or the fixed split of CK+, ExpW, the Taiwanese
  corpus and a one-class set: `faceset.fixed_split`) trains on Training and validates on
  PublicTest (its validation part); PrivateTest (its test part) is never touched by training or
  by any choice.
- A set with subject ids can instead hold out a fraction of its subjects for validation
  (`--val-subjects`), so no person is on both sides; the held-out subjects are recorded in the
  model, and `evaluation_set(..., "heldout")` finds them again.
- Sets trained on jointly (`joint_split`) each follow their own rule: a set with subject ids by
  held-out subjects when a fraction is given, any other by its own split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...common.errors import MimikaError
from .faceset import FaceSet, held_out_subjects, joined, split_name


@dataclass
class Split:
    """Training and validation faces, and how they were chosen (recorded in the model's info)."""

    train: FaceSet
    val: FaceSet | None
    info: dict = field(default_factory=dict)
    description: str = ""


def has_subjects(data: FaceSet) -> bool:
    """Whether the faces carry subject ids (CK+, the Taiwanese corpus), so held-out subjects can split them."""
    return len(data) > 0 and bool(np.any(data.subjects != ""))


def train_val_split(data: FaceSet, val_subjects: float = 0.0, seed: int = 0) -> Split:
    """The protocol's training and validation sets: held-out subjects when `val_subjects` > 0,
    else the dataset's own Training / PublicTest split when it has one, else no validation."""
    if val_subjects:
        held = held_out_subjects(data.subjects, val_subjects, seed)
        val, train = data.with_subjects(held), data.with_subjects(held, keep=False)
        return Split(train, val, {"val_fraction": val_subjects, "seed": seed, "val_subjects": held},
                     f"validation: {len(val)} faces of {len(held)} held-out subjects; training: {len(train)} faces")
    if data.splits is not None:
        train, val = data.split("Training"), data.split("PublicTest")
        if len(train) == 0:
            raise MimikaError("the data has no faces in its Training split")
        return Split(train, val if len(val) else None, {"train": "Training", "val": "PublicTest"},
                     f"protocol: training on Training ({len(train)} faces), validating on PublicTest "
                     f"({len(val)} faces); PrivateTest is not touched")
    return Split(data, None, {}, f"training on all {len(data)} faces, no validation")


def joint_split(sets: list[FaceSet], val_subjects: float = 0.0, seed: int = 0) -> Split:
    """Training on several sets at once: each is split by its own protocol (a set with subject ids,
    or without a split of its own, by held-out subjects when `val_subjects` > 0; any other by its own
    split), the parts joined; the recorded split holds both rules, so `training_faces` and
    `evaluation_set` find the same faces again."""
    if len(sets) == 1:
        return train_val_split(sets[0], val_subjects, seed)
    parts = [train_val_split(s, val_subjects if has_subjects(s) or s.splits is None else 0.0, seed) for s in sets]
    vals = [p.val for p in parts if p.val is not None]
    info = {k: v for p in parts for k, v in p.info.items()}
    held = [s for p in parts for s in p.info.get("val_subjects", [])]  # of every set split by subjects
    if held:
        info["val_subjects"] = held
    train = joined([p.train for p in parts])
    return Split(train, joined(vals).relabel(train.labels) if vals else None, info,
                 "; ".join(p.description for p in parts) + f"; jointly: {len(train)} training faces")


def evaluation_set(data: FaceSet, split: str = "all", model_info: dict | None = None,
                   model_name: str = "the model") -> FaceSet:
    """The faces to score: all; "heldout", the subjects the model's training held out (recorded in
    its info); or one of the dataset's own splits (Training, PublicTest, PrivateTest)."""
    if split == "all":
        out = data
    elif split == "heldout":
        held = (model_info or {}).get("split", {}).get("val_subjects")
        if not held:
            raise MimikaError(f"{model_name}: the model records no held-out subjects (trained without --val-subjects)")
        out = data.with_subjects(held)
        if len(out) == 0:
            raise MimikaError(f"none of {model_name}'s held-out subjects are in this data")
    else:
        out = data.split(split_name(split))
    if len(out) == 0:
        raise MimikaError(f"no faces to evaluate in split {split!r}")
    return out


def training_faces(data: FaceSet, model_info: dict | None = None, model_name: str = "the model") -> FaceSet:
    """The faces a model trained on, as its recorded split says: the dataset's Training split and
    not the subjects it held out (both, for a model trained on several sets), whose class shares
    `mimika calibrate` stores."""
    split = (model_info or {}).get("split", {})
    if not (split.get("val_subjects") or split.get("train")):
        raise MimikaError(f"{model_name}: the model records no training split (trained by an older mimika or "
                          "on all faces), so its training class shares are unknown")
    out = data
    by_subjects = bool(split.get("val_subjects")) and has_subjects(data)  # held-out subjects, not the set's split
    if split.get("train") and data.splits is not None and not by_subjects:
        out = out.split(split_name(split["train"]))
    if split.get("val_subjects"):
        out = out.with_subjects(split["val_subjects"], keep=False)
    if len(out) == 0:
        raise MimikaError(f"none of {model_name}'s training faces are in this data")
    return out
