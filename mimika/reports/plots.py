"""PNG figures for reports: confusion matrices and training curves (matplotlib, no display)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..common.fileio import atomic_path


def require_matplotlib(flag: str, path: str | os.PathLike) -> Path:
    """Check, before any work, that a figure asked for by `flag` can be drawn and written to `path`."""
    from importlib.util import find_spec

    from ..common.errors import MimikaError
    from ..common.fileio import check_writable
    if find_spec("matplotlib") is None:
        raise MimikaError(f"{flag} needs matplotlib: pip install matplotlib (or 'mimika[train]')")
    return check_writable(path, f"{flag} figure")


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


class Timeline:
    """Each tracked face's emotion probabilities over a video's time, collected frame by frame
    (`add`) and drawn as one panel per track (`save`)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.videos: dict[str, dict[int, list[tuple[float, dict[str, float]]]]] = {}

    def add(self, result) -> None:
        if result.frame is None or result.error:
            return
        tracks = self.videos.setdefault(result.file, {})
        for face in result.faces:
            tracks.setdefault(face.track_id or 0, []).append((result.time or 0.0, face.scores))

    def save(self) -> list[Path]:
        """One PNG per video: `path` itself for one video, `path` with the video's name added for
        several. Returns the files written."""
        path = self.path
        out = []
        for video, tracks in self.videos.items():
            target = path if len(self.videos) == 1 else path.with_name(f"{path.stem}-{Path(video).stem}{path.suffix}")
            out.append(self._plot(video, tracks, target))
        return out

    @staticmethod
    def _plot(video: str, tracks: dict, path: Path) -> Path:
        plt = _pyplot()
        labels = list(next(iter(tracks.values()))[0][1]) if tracks else []
        order = sorted(labels)
        fig, axes = plt.subplots(max(1, len(tracks)), 1, figsize=(10, 2.2 * max(1, len(tracks))), squeeze=False,
                                 sharex=True)
        for ax, (track, points) in zip(axes[:, 0], sorted(tracks.items())):
            t = [p[0] for p in points]
            for k, name in enumerate(order):
                ax.plot(t, [p[1].get(name, 0.0) for p in points], label=name, color=f"C{k}", lw=1.8,
                        marker="." if len(t) <= 60 else None)
            ax.set_ylim(-0.04, 1.04)  # a probability of 0 or 1 stays visible off the frame's edge
            ax.set_ylabel(f"track {track}")
            ax.grid(alpha=0.3)
        axes[0, 0].set_title(f"{Path(video).name}: emotions of each tracked face")
        handles, names = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, names, loc="center right", fontsize=8, frameon=False)  # beside the plots, never over a line
        fig.subplots_adjust(right=0.84)
        axes[-1, 0].set_xlabel("time (s)")
        saved = _save(fig, path)
        plt.close(fig)
        return saved
