"""Subject-independent k-fold cross-validation: no subject's faces in two folds."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..common.errors import MimikaError
from ..common.fileio import write_text
from ..common.metrics import report
from ..network.model import Model
from ..prepare.datasets import FaceSet, joined
from .distributed import is_writer
from .loop import Trainer, TrainOptions


def subject_folds(subjects: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """k disjoint groups of subject ids (shuffled with `seed`, sizes differing by at most one)."""
    uniq = np.unique(subjects)
    if "" in uniq:
        raise MimikaError("cross-validation by subject needs a subject id for every face")
    if not 2 <= k <= len(uniq):
        raise MimikaError(f"{k} folds need between 2 and {len(uniq)} (the number of subjects)")
    order = np.random.default_rng(seed).permutation(len(uniq))
    return [np.sort(uniq[g]) for g in np.array_split(order, k)]


def cross_validate(data: FaceSet, make_model: Callable[[list[str]], Model], options: TrainOptions, k: int = 10,
                   seed: int = 0, out_dir: str | os.PathLike | None = None,
                   log: Callable[[str], None] = print, beside: FaceSet | None = None) -> dict:
    """Train a fresh model per fold on the other folds' subjects, test on the fold's subjects.

    `make_model(labels)` gives each fold's untrained or starting model for those classes; `beside`:
    faces every fold also trains on (another set, as a lab's people are added to web photos), never
    tested. Returns {"folds": [per-fold report + subjects], "accuracy_mean", "accuracy_std",
    "pooled": report over all test predictions}; writes fold-N.json and crossval.json to out_dir.
    Under torchrun each fold trains on all processes (training.py); rank 0 writes.
    """
    folds = subject_folds(data.subjects, k, seed)
    out = Path(out_dir) if out_dir else None
    results, y_true, y_pred, labels = [], [], [], None
    for i, held in enumerate(folds, 1):
        test = data.with_subjects(list(held))
        train = data.with_subjects(list(held), keep=False)
        if beside is not None:
            train = joined([train, beside])
        model = make_model(train.labels)
        labels = model.labels
        log(f"fold {i}/{k}: {len(train)} training faces" + (f" ({len(beside)} beside the folds)" if beside is not None else "")
            + f", {len(test)} test faces of {len(held)} subjects")
        Trainer(model, train, None, options, log=lambda line: log(f"  {line}")).run()
        probs = model.predict_proba(test.faces)  # once: the fold's report and the pooled one
        y_true.append(test.relabel(labels).y)
        y_pred.append(probs.argmax(1))
        rep = report(y_true[-1], y_pred[-1], labels, probs)
        rep["subjects"] = held.tolist()
        rep["answers"] = dict(zip(test.sources, (labels[i] for i in y_pred[-1])))  # for paired comparisons
        results.append(rep)
        log(f"fold {i}/{k}: accuracy {rep['accuracy']:.4f} (n={rep['n']})")
        if out and is_writer():
            out.mkdir(parents=True, exist_ok=True)
            write_text(out / f"fold-{i}.json", json.dumps(rep, indent=1))
    accs = np.array([r["accuracy"] for r in results])
    summary = {"k": k, "seed": seed, "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std()),
               "fold_accuracy": accs.tolist(),
               "pooled": report(np.concatenate(y_true), np.concatenate(y_pred), labels), "folds": results}
    if out and is_writer():
        write_text(out / "crossval.json", json.dumps(summary, indent=1))
    return summary
