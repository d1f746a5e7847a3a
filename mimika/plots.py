"""PNG figures for reports: confusion matrices and training curves (matplotlib, no display)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .fileio import atomic_path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    return Path(path)


def plot_confusion(rep: dict, path: str | os.PathLike, title: str = "") -> Path:
    """Row-normalized confusion matrix with counts, as a PNG."""
    plt = _pyplot()
    labels, cm = rep["confusion"]["labels"], np.array(rep["confusion"]["matrix"])
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(labels), 0.8 + 0.75 * len(labels)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{cm[i, j]}\n{norm[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or f"accuracy {rep['accuracy']:.1%}, balanced {rep['balanced_accuracy']:.1%} (n={rep['n']})")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_history(history: list[dict], path: str | os.PathLike) -> Path:
    """Loss and validation-accuracy curves of a training run, as a PNG."""
    plt = _pyplot()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(ep, [h["train_loss"] for h in history], label="train")
    if any(h.get("val_loss") is not None for h in history):
        a.plot(ep, [h["val_loss"] for h in history], label="validation")
        b.plot(ep, [h["val_accuracy"] for h in history], color="C2")
    a.set_xlabel("epoch"); a.set_ylabel("cross-entropy"); a.legend()
    b.set_xlabel("epoch"); b.set_ylabel("validation accuracy"); b.set_ylim(0, 1)
    out = _save(fig, path)
    plt.close(fig)
    return out
