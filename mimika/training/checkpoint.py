"""Training checkpoints: everything a run needs to continue exactly where it stopped.

A checkpoint is a model file (it loads as a model) with the training state beside the weights:
the optimizer's momentum, the epoch and history, the best weights so far, the moving average of
the weights (--ema), both random states,
the options and a fingerprint of the training data. Restoring refuses a checkpoint made on other
data, with other fixed options, or of another network, so a resumed run ends with the same
weights as one that was never interrupted.

A run of several processes (distributed.py) records its world size and each rank's torch random
state (dropout and augmentation draw per rank); resumed on the same number of processes it
continues exactly, on another it continues with the difference stated (training.py).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..common.container import read_container, write_container
from ..common.errors import MimikaError
from ..network.config import MODEL_FORMAT
from ..network.model import Model
from ..prepare.datasets import FaceSet
from .options import TrainOptions, fixed_options

WHAT = "training checkpoint"


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float

    def line(self, total: int | None) -> str:
        of = f"/{total}" if total else ""
        val = (f"  val loss {self.val_loss:.4f}  val acc {self.val_accuracy:.4f}"
               if self.val_loss is not None else "")
        return f"epoch {self.epoch}{of}  train loss {self.train_loss:.4f}{val}  ({self.seconds:.1f}s)"


@dataclass
class TrainingState:
    """What a run carries from epoch to epoch besides the weights and the optimizer."""

    history: list[EpochStats]
    best: tuple[float, int, dict] | None  # (validation accuracy, epoch, weights)
    numpy_rng: dict | None = None
    world_size: int = 1  # processes of the run that wrote the checkpoint
    rank_rng: dict[str, np.ndarray] | None = None  # {"torch": ranks x state, "cuda": ...} of that run
    scaler: dict | None = None  # the float16 loss scaler's state (CUDA without bf16)
    ema: dict | None = None  # the moving average of the weights (--ema), as its state dict


def data_fingerprint(data: FaceSet) -> str:
    """A short id of the training data, so a checkpoint is not resumed on other data."""
    h = hashlib.sha1(np.ascontiguousarray(data.faces).tobytes())
    h.update(np.ascontiguousarray(data.y).tobytes())
    return h.hexdigest()[:16]


def save(path: str | os.PathLike, model: Model, optimizer: torch.optim.Optimizer, options: TrainOptions,
         state: TrainingState, rng: np.random.Generator, fingerprint: str) -> Path:
    """Write the checkpoint atomically (a kill mid-write leaves the previous one whole).
    `state.rank_rng` holds every rank's random states when several processes train."""
    meta, arrays = model.file_contents("float32")
    for name, p in model.net.named_parameters():
        buf = optimizer.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            arrays[f"optim/{name}"] = buf.detach().cpu().numpy().copy()
    arrays["rng/torch"] = torch.get_rng_state().numpy().copy()
    for kind, stack in (state.rank_rng or {}).items():
        arrays[f"rng/ranks/{kind}"] = stack
    if state.best is not None:
        arrays.update({f"best/{k}": v.cpu().numpy().copy() for k, v in state.best[2].items()})
    if state.ema is not None:
        arrays.update({f"ema/{k}": v.detach().cpu().numpy().copy() for k, v in state.ema.items()})
    meta["training"] = {
        "best": None if state.best is None else [state.best[0], state.best[1]],
        "epoch": len(state.history),
        "history": [asdict(h) for h in state.history],
        "options": asdict(options),
        "numpy_rng": rng.bit_generator.state,
        "data": fingerprint,
        "world_size": state.world_size,
        "scaler": state.scaler,
    }
    return write_container(path, MODEL_FORMAT, meta, arrays)


def restore(path: str | os.PathLike, model: Model, optimizer: torch.optim.Optimizer, options: TrainOptions,
            rng: np.random.Generator, fingerprint: str) -> TrainingState:
    """Load the checkpoint into `model`, `optimizer` and the random states; the run's history."""
    path = Path(path)
    meta, arrays = read_container(path, MODEL_FORMAT, WHAT)
    state = meta.get("training")
    if not isinstance(state, dict):
        raise MimikaError(f"{path}: a model file, not a {WHAT} (nothing to resume)")
    try:
        if state["data"] != fingerprint:
            raise MimikaError(f"{path}: the checkpoint was made on other training data")
        saved_options = state["options"]
        defaults = asdict(TrainOptions())
        diff = [f"{k} {saved_options.get(k, defaults[k])} -> {getattr(options, k)}" for k in fixed_options()
                if saved_options.get(k, defaults[k]) != getattr(options, k)]
        if diff:
            raise MimikaError(f"{path}: the checkpoint was made with other settings ({'; '.join(diff)})")
        saved = Model.from_file_contents(path, meta, arrays)
        if saved.config.arch != model.config.arch or saved.labels != model.labels:
            raise MimikaError(f"{path}: the checkpoint is of another architecture or label list")
        model.net.load_state_dict(saved.net.state_dict())
        model.config = saved.config
        for name, p in model.net.named_parameters():
            if f"optim/{name}" in arrays:
                optimizer.state[p]["momentum_buffer"] = torch.from_numpy(arrays[f"optim/{name}"].copy()).to(p.device)
        torch.set_rng_state(torch.from_numpy(arrays["rng/torch"].copy()))
        rank_rng = {k[len("rng/ranks/"):]: v for k, v in arrays.items() if k.startswith("rng/ranks/")}
        rng.bit_generator.state = state["numpy_rng"]
        history = [EpochStats(**h) for h in state["history"]]
        best = None
        if state.get("best"):
            weights = {k[len("best/"):]: torch.from_numpy(v.copy()) for k, v in arrays.items()
                       if k.startswith("best/")}
            best = (float(state["best"][0]), int(state["best"][1]), weights)
        world_size = int(state.get("world_size", 1))
        ema = {k[len("ema/"):]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith("ema/")}
    except MimikaError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
        raise MimikaError(f"{path}: damaged {WHAT} ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    return TrainingState(history, best, world_size=world_size, rank_rng=rank_rng or None, scaler=state.get("scaler"),
                         ema=ema or None)


def describe(path: str | os.PathLike) -> str:
    """Where a stopped run can continue from, for its last message."""
    path = Path(path)
    try:
        meta, _ = read_container(path, MODEL_FORMAT, WHAT)
        t = meta["training"]
        epoch, world = int(t["epoch"]), int(t.get("world_size", 1))
    except (MimikaError, KeyError, TypeError, ValueError):
        return f"No usable checkpoint at {path} (the run stopped before its first epoch ended)."
    return (f"The last checkpoint, {path}, holds epoch {epoch} of a {world}-process run: continue it with the "
            f"same command and --resume {path}" + (f" (--nproc {world} continues it exactly)." if world > 1 else "."))
