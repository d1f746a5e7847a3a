"""A labelled set of face crops, and the splits that keep a person (or a dataset's test part) out
of training. Imports no loader: every loader builds on this module, never the other way round."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ...common.errors import MimikaError
from ...common.labels import in_code_order

#: spellings of a dataset's own split names (FER2013's Usage column) -> the canonical name
SPLIT_NAMES = {"training": "Training", "train": "Training", "publictest": "PublicTest", "val": "PublicTest",
               "validation": "PublicTest", "privatetest": "PrivateTest", "test": "PrivateTest"}


def split_name(split: str) -> str:
    """The canonical name of a split ("train" -> "Training", "PublicTest", "test" -> "PrivateTest")."""
    key = split.replace("_", "").replace("-", "").lower()
    if key not in SPLIT_NAMES:
        raise MimikaError(f"unknown split {split!r}; the FER2013 splits are Training, PublicTest, PrivateTest")
    return SPLIT_NAMES[key]


@dataclass
class FaceSet:
    """Face crops (N x H x W uint8) with class indices into `labels` and a subject id per face."""

    faces: np.ndarray
    y: np.ndarray
    labels: list[str]
    subjects: np.ndarray
    sources: list[str]
    skipped: list[str] = field(default_factory=list)  # "file: why", for the report
    notes: list[str] = field(default_factory=list)
    splits: np.ndarray | None = None  # per face: the dataset's own split name (FER2013 Usage)
    soft: np.ndarray | None = None  # N x len(labels) target distributions (FER+ votes)
    detector: str = ""  # the detector that cropped the faces ("" for faces taken whole), recorded in models
    origins: np.ndarray | None = None  # per face: the set it comes from ("ferplus", "expw", ...), for joint sets

    def __post_init__(self):
        if self.origins is None:
            self.origins = np.full(len(self.y), "", dtype="<U32")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: np.ndarray) -> "FaceSet":
        idx = np.asarray(idx, dtype=np.int64)
        return FaceSet(self.faces[idx], self.y[idx], list(self.labels), self.subjects[idx],
                       [self.sources[i] for i in idx], list(self.skipped), list(self.notes),
                       None if self.splits is None else self.splits[idx],
                       None if self.soft is None else self.soft[idx], self.detector, self.origins[idx])

    def split(self, name: str) -> "FaceSet":
        """The faces of one of the dataset's own splits (FER2013: Training, PublicTest, PrivateTest)."""
        if self.splits is None:
            raise MimikaError(f"this dataset has no predefined splits (asked for {name!r})")
        return self.subset(np.flatnonzero(self.splits == split_name(name)))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.y, minlength=len(self.labels))
        return {name: int(c) for name, c in zip(self.labels, counts)}

    def known_to(self, labels: list[str]) -> tuple["FaceSet", dict[str, int]]:
        """The faces whose class is in `labels` (a model's), and the count left out per other class:
        a model tested on another dataset is scored on the emotions it was trained to tell apart."""
        keep = np.isin(np.asarray(self.labels)[self.y], list(labels)) if len(self) else np.zeros(0, bool)
        left_out = {n: c for n, c in self.subset(np.flatnonzero(~keep)).class_counts().items() if c}
        return self.subset(np.flatnonzero(keep)), left_out

    def relabel(self, labels: list[str]) -> "FaceSet":
        """The same faces with class indices into another label list (a model's)."""
        if list(labels) == self.labels:
            return self
        present = {self.labels[i] for i in np.unique(self.y)}
        missing = sorted(present - set(labels))
        if missing:
            raise MimikaError(f"the data has classes the model does not know: {', '.join(missing)} "
                              f"(model labels: {', '.join(labels)})")
        lut = np.array([labels.index(n) if n in labels else -1 for n in self.labels])
        out = self.subset(np.arange(len(self)))
        out.y, out.labels = lut[self.y], list(labels)
        if self.soft is not None:
            out.soft = np.zeros((len(self), len(labels)), np.float32)
            for j, name in enumerate(self.labels):
                if name in labels:
                    out.soft[:, labels.index(name)] = self.soft[:, j]
        return out

    def split_by_subject(self, val_fraction: float, seed: int = 0) -> tuple["FaceSet", "FaceSet"]:
        """Train / validation sets with no subject in both: a fraction of the subjects is held out."""
        val = held_out_subjects(self.subjects, val_fraction, seed)
        is_val = np.isin(self.subjects, val)
        return self.subset(np.flatnonzero(~is_val)), self.subset(np.flatnonzero(is_val))

    def with_subjects(self, subjects: list[str], keep: bool = True) -> "FaceSet":
        mask = np.isin(self.subjects, np.asarray(subjects, dtype=str))
        return self.subset(np.flatnonzero(mask if keep else ~mask))


def joined(sets: list[FaceSet]) -> FaceSet:
    """One set of several (joint training on FER+ and CK+, or a public set and your own faces): the
    union of their classes in code order; a set without vote distributions gets its labels as one-hot
    targets where another has votes. Each set keeps its faces' subjects, splits and origins."""
    if len(sets) == 1:
        return sets[0]
    shapes = {s.faces.shape[1:] for s in sets}
    if len(shapes) > 1:
        raise MimikaError(f"the sets were prepared at different sizes: {sorted(shapes)}")
    labels = in_code_order(name for s in sets for name in s.labels)
    parts = [s.relabel(labels) for s in sets]
    soft = None
    if any(s.soft is not None for s in parts):
        soft = np.concatenate([np.eye(len(labels), dtype=np.float32)[s.y] if s.soft is None else s.soft
                               for s in parts]).astype(np.float32)
    splits = None
    if any(s.splits is not None for s in parts):  # a set without its own split takes no part in Usage
        splits = np.concatenate([(s.splits if s.splits is not None else np.full(len(s), "")).astype(str)
                                 for s in parts])
    return FaceSet(np.concatenate([s.faces for s in parts]), np.concatenate([s.y for s in parts]), labels,
                   np.concatenate([s.subjects.astype(str) for s in parts]), [f for s in parts for f in s.sources],
                   [x for s in parts for x in s.skipped], [x for s in parts for x in s.notes], splits,
                   soft,
                   ", ".join(dict.fromkeys(s.detector for s in parts if s.detector)),
                   np.concatenate([s.origins.astype("<U32") for s in parts]))


def held_out_subjects(subjects: np.ndarray, fraction: float, seed: int = 0) -> list[str]:
    """A reproducible random choice of ceil(fraction * #subjects) subject ids."""
    if not 0 < fraction < 1:
        raise MimikaError(f"validation fraction must be between 0 and 1, got {fraction}")
    uniq = np.unique(subjects)
    if len(uniq) < 2 or (len(uniq) == 1 and uniq[0] == ""):
        raise MimikaError("cannot split by subject: the data has fewer than two subject ids")
    order = np.random.default_rng(seed).permutation(len(uniq))
    k = max(1, math.ceil(fraction * len(uniq)))
    return sorted(str(s) for s in uniq[order[:k]])


def fixed_split(groups: Sequence[str], universe: Iterable[str], val: float, test: float, salt: str) -> np.ndarray:
    """Per face, its part of a set's fixed split: "Training", "PublicTest" (validation) or "PrivateTest"
    (test), whole groups at a time (a person, a photo), so no group is on two sides. The groups of
    the whole set (`universe`, every group its files name, read or not) are ordered by a hash of
    `salt` and their name; the first `test` share of them is the test part, the next `val` share the
    validation part. The order depends on the names only: the split never moves with the code that
    reads the faces, with the faces skipped as unreadable, or with a subset (CK+ with or without
    its neutral frames)."""
    order = sorted(set(universe), key=lambda g: hashlib.sha256(f"{salt}/{g}".encode()).hexdigest())
    n_test, n_val = round(test * len(order)), round(val * len(order))
    part = {g: "PrivateTest" if i < n_test else "PublicTest" if i < n_test + n_val else "Training"
            for i, g in enumerate(order)}
    missing = sorted(set(groups) - set(part))
    if missing:
        raise MimikaError(f"faces of groups outside the set's listing: {', '.join(missing[:3])}")
    return np.array([part[g] for g in groups], dtype="<U11")

