"""Scores of a classifier's answers, shared by evaluation reports and by the fits of calibration:
the confusion matrix, balanced accuracy, and the expected calibration error."""

from __future__ import annotations

from math import comb

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    return np.bincount(n * np.asarray(y_true) + np.asarray(y_pred), minlength=n * n).reshape(n, n)


def recall_per_class(cm: np.ndarray) -> np.ndarray:
    """Each class's share of its faces answered right (0 for a class without faces)."""
    support = cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(support > 0, np.diag(cm) / support, 0.0)


def mean_recall(cm: np.ndarray) -> float:
    """Balanced accuracy from a confusion matrix: the mean recall over the classes that have faces,
    each class counting the same, however rare."""
    present = cm.sum(axis=1) > 0
    return float(recall_per_class(cm)[present].mean()) if present.any() else 0.0


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> float:
    """The mean recall over the `n` classes that have faces (`mean_recall`)."""
    return mean_recall(confusion_matrix(y_true, y_pred, n))


ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """The share-weighted gap between confidence (top probability) and accuracy over `bins`
    equal-width confidence bins."""
    probs = np.asarray(probs, np.float64)
    if len(probs) == 0:
        return 0.0
    conf, pred = probs.max(1), probs.argmax(1)
    right = (pred == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += inside.mean() * abs(conf[inside].mean() - right[inside].mean())
    return float(ece)


def only_right(right_a: np.ndarray, right_b: np.ndarray) -> tuple[int, int]:
    """The faces only model a / only model b gets right (per-face booleans of the same faces): the
    discordant pairs McNemar's test weighs."""
    return int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())


def mcnemar_cells(right_a: np.ndarray, right_b: np.ndarray) -> str:
    """Two cells of a comparison table, "only a / only b | p": the faces only model a / only model b
    gets right and McNemar's exact p of that split (every experiment script reports it so)."""
    only_a, only_b = only_right(right_a, right_b)
    return f"{only_a} / {only_b} | {format_p(mcnemar_p(only_a, only_b))}"


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar test on the faces only one of two models gets right: how likely a split
    this uneven is if both models are equally good (so a gain of a few faces is not taken for one)."""
    n, k = only_a + only_b, min(only_a, only_b)
    return 1.0 if n == 0 else min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2 ** n)


def format_p(p: float) -> str:
    """A p-value for a report: three decimals, or two significant digits below 0.001 (never 0.000)."""
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def report(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], probs: np.ndarray | None = None) -> dict:
    """The evaluation report as a JSON-ready dict."""
    cm = confusion_matrix(y_true, y_pred, len(labels))
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    recall = recall_per_class(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    n = int(cm.sum())
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "balanced_accuracy": mean_recall(cm),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(labels)
        },
        "confusion": {"labels": list(labels), "matrix": cm.tolist()},
        **({} if probs is None else {"ece": expected_calibration_error(probs, y_true)}),
    }
