"""Evaluation reports: accuracy, balanced accuracy, per-class precision/recall/F1, confusion, and
(when the probabilities are given) the expected calibration error."""

from __future__ import annotations

import numpy as np

from ..common.metrics import ECE_BINS, report
from ..prepare.datasets import FaceSet


def evaluate(model, data: FaceSet, device: str = "cpu", data_classes_only: bool = False) -> dict:
    """Score a model (PyTorch `Model` or `OnnxModel`) on a face set whose classes it knows.
    `device` runs a PyTorch model's network there ("cuda"); an OnnxModel runs where it was loaded.
    `data_classes_only`: the model answers among the classes the data has (its probabilities
    renormalized over them), as when CK+ peak frames are read as one of 7 emotions, neutral not
    being an answer."""
    from ..common.progress import progress
    data = data.relabel(model.labels)
    step = 1024
    predict = model.predict_proba
    if device != "cpu" and hasattr(model, "net"):
        from ..common.devices import resolve_device
        from ..network.model import predict_proba
        dev = resolve_device(device)
        predict = lambda crops: predict_proba(model, crops, dev)  # noqa: E731
    probs = np.concatenate([predict(data.faces[i:i + step])
                            for i in progress(range(0, len(data), step), "evaluating",
                                              total=-(-len(data) // step), unit="chunk")])
    if data_classes_only:
        probs = among(probs, np.unique(data.y))
    return report(data.y, probs.argmax(axis=1), model.labels, probs)


def among(probs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probabilities N x C restricted to `classes` (indices) and renormalized: the others get 0."""
    out = np.zeros_like(probs)
    out[:, classes] = probs[:, classes]
    return out / np.maximum(out.sum(axis=1, keepdims=True), 1e-12)


def recall_line(rep: dict, letters: int = 2) -> str:
    """Each class present in a report with its recall, on one line ("an 0.31 co 0.00 ...")."""
    return " ".join(f"{name[:letters]} {c['recall']:.2f}" for name, c in rep["per_class"].items() if c["support"])


def format_report(rep: dict) -> str:
    """A readable table of a report."""
    ece = f"   calibration error (ECE, {ECE_BINS} bins) {rep['ece']:.4f}" if "ece" in rep else ""
    lines = [f"faces {rep['n']}   accuracy {rep['accuracy']:.4f}   balanced accuracy {rep['balanced_accuracy']:.4f}{ece}",
             "", f"{'class':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name, c in rep["per_class"].items():
        lines.append(f"{name:<12}{c['precision']:>10.3f}{c['recall']:>10.3f}{c['f1']:>10.3f}{c['support']:>10d}")
    labels, cm = rep["confusion"]["labels"], rep["confusion"]["matrix"]
    short = [l[:5] for l in labels]
    lines += ["", "confusion (rows: true, columns: predicted)", " " * 12 + "".join(f"{s:>7}" for s in short)]
    for name, row in zip(labels, cm):
        lines.append(f"{name:<12}" + "".join(f"{v:>7d}" for v in row))
    return "\n".join(lines)
