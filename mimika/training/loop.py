"""Training: categorical cross-entropy, SGD with Nesterov momentum, shuffled minibatches.

Runs a fixed number of epochs, or until the training loss changes by less than `tol` between
consecutive epochs (bounded by `max_epochs`). After each epoch a checkpoint (checkpoint.py) can
be written, from which a resumed run ends with the same weights as one never interrupted. The
options are in options.py, the learning-rate schedule in schedules.py; this module keeps the loop.

Under torchrun (distributed.py) every process runs this loop on its share of each minibatch: all
ranks draw the same permutation from the run's seeded generator, cut it into global batches of
`batch_size`, and rank r takes every W-th face of each (`batch[r::W]`), the partition a
`DistributedSampler` makes, without its padding; DistributedDataParallel averages the gradients,
and each rank's loss is scaled so that the average is the global batch's mean gradient. A run of W
processes therefore takes the steps a one-process run takes with the same batch size, up to float
summation order, the ranks' own dropout and augmentation draws, and batch-norm statistics, which
stay per rank (PyTorch synchronises them on GPUs only; the running statistics are rank 0's).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..common.errors import MimikaError
from ..common.progress import progress
from ..network.model import Model, predict_proba
from ..prepare.datasets import FaceSet
from . import checkpoint as checkpoints
from . import distributed
from .augment import augment, mixup
from .checkpoint import EpochStats, TrainingState
from .options import TrainOptions, fixed_options
from .sampling import draw_weights, drawn_class_shares, epoch_order
from .schedules import check_schedule, learning_rate

__all__ = ["EpochStats", "TrainOptions", "Trainer", "evaluate_loss", "history_json"]


def _autocast(device: str, dtype: torch.dtype | None):
    return torch.autocast(device.split(":")[0], dtype=dtype) if dtype is not None else contextlib.nullcontext()


def _amp_dtype(device: str, on: bool) -> torch.dtype | None:
    """The autocast type: bf16, or float16 on GPUs without bf16 (with loss scaling), or none."""
    if not on:
        return None
    if device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bf16 itself (AVX512-BF16 or AMX), where bf16 autocast trains every
    registered network faster than float32 (`python bench/train_speed.py`; docs/scale.md);
    elsewhere bf16 is emulated and only the architectures marked `train_bf16` gain from it."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence looked up
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def save_dtype(options: TrainOptions) -> str:
    return "float16" if options.half else "float32"


def evaluate_loss(model: Model, data: FaceSet, options: TrainOptions | None = None,
                  world: distributed.World | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of the weights as they will be saved (float16 when the run
    saves float16), computed as prediction computes them (float32, the model's test-time
    augmentation): the figure `mimika evaluate` gives for the saved file. With a `world` of several
    processes, each scores every W-th face and the sums are shared."""
    o = options or TrainOptions()
    world = world or distributed.World()
    if len(data) == 0:
        return float("nan"), float("nan")
    data = data.relabel(model.labels)
    rounded = model.rounded(save_dtype(o))
    if world.size == 1:
        p = predict_proba(rounded, data.faces, world.device)
        loss = float(-np.log(np.maximum(p[np.arange(len(data.y)), data.y], 1e-12)).mean())
        return loss, float((p.argmax(1) == data.y).mean())
    mine = np.arange(world.rank, len(data), world.size)
    p = predict_proba(rounded, data.faces[mine], world.device) if len(mine) else np.zeros((0, 1))
    y = data.y[mine]
    loss_sum, correct = distributed.all_sum([float(-np.log(np.maximum(p[np.arange(len(y)), y], 1e-12)).sum()),
                                             float((p.argmax(1) == y).sum()) if len(y) else 0.0], world)
    return loss_sum / len(data), correct / len(data)


def logit_offset(data: FaceSet, options: TrainOptions) -> torch.Tensor | None:
    """tau x log(class share) of the training set (of its vote distributions when the run trains on
    them), added to the logits by the balanced loss; None without --logit-adjust."""
    from .calibration import class_shares
    if options.logit_adjust == 0:
        return None
    use_soft = options.soft_labels and data.soft is not None
    counts = data.soft.sum(axis=0) if use_soft else np.bincount(data.y, minlength=len(data.labels))
    return torch.from_numpy((options.logit_adjust * np.log(class_shares(counts))).astype(np.float32))


@dataclass
class Teacher:
    """A frozen network and, for each of the student's classes, the teacher's output column for it
    (-1 where the teacher never learned that class)."""
    net: nn.Module
    columns: torch.Tensor

    def __post_init__(self):
        self.known = self.columns >= 0  # once, not per batch (on a GPU, reading it back waits for the device)
        self.knows_all = bool(self.known.all())

    def targets(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The teacher's answer on faces `x`, in the student's classes. A teacher that lacks some of
        them only moves each face's label mass among the classes it knows: a class it never learned
        keeps the face's own label share, so distilling from it does not starve that class."""
        logits = self.net(x).float()
        p = torch.zeros_like(labels)
        p[:, self.known] = torch.softmax(logits[:, self.columns[self.known]], dim=1)
        if self.knows_all:
            return p
        return labels * ~self.known + p * labels[:, self.known].sum(dim=1, keepdim=True)


def load_teachers(options: TrainOptions, student: Model, device, given: Sequence[Model] = ()) -> list[Teacher]:
    """The networks of --teacher and the `given` models, frozen, in eval mode on the training device
    (in the student's memory layout); each must take the student's input and know at least two of
    its classes (matched by name), or one line says what differs."""
    teachers = []
    named = [(p.strip(), Model.load(p.strip())) for p in options.teacher.split(",") if p.strip()]
    for path, teacher in named + [("the starting model", m) for m in given]:
        t, s = teacher.config, student.config
        if sum(name in t.labels for name in s.labels) < 2:
            raise MimikaError(f"{path}: a teacher needs at least two of the student's labels "
                              f"({', '.join(s.labels)}); it has {', '.join(t.labels)}")
        if (t.crop, t.mean, t.std) != (s.crop, s.mean, s.std):
            raise MimikaError(f"{path}: a teacher needs the student's input ({s.crop.width}x{s.crop.height} faces, "
                              f"margin {s.crop.margin}, mean {s.mean}, std {s.std}); it takes {t.crop.width}x"
                              f"{t.crop.height}, margin {t.crop.margin}, mean {t.mean}, std {t.std}")
        net = teacher.net.to(device).eval()
        net.requires_grad_(False)
        columns = torch.tensor([t.labels.index(n) if n in t.labels else -1 for n in s.labels], device=device)
        teachers.append(Teacher(net.to(memory_format=torch.channels_last) if options.channels_last else net,
                                columns))
    return teachers


def kept_as_teacher(model: Model) -> Model:
    """A frozen copy of `model` to keep as the teacher of its own fine-tuning ("learning without
    forgetting", Li and Hoiem 2016). Classes added for the fine-tuning are ones it never learned:
    `Teacher.targets` leaves their faces' labels as they are."""
    return copy.deepcopy(model)


class Trainer:
    """One training run; `run()` trains, checkpointing after each epoch when asked."""

    def __init__(self, model: Model, train_set: FaceSet, val_set: FaceSet | None = None,
                 options: TrainOptions | None = None, checkpoint: str | os.PathLike | None = None,
                 log: Callable[[str], None] = print, teachers: Sequence[Model] = ()):
        if len(train_set) == 0:
            raise MimikaError("the training set is empty")
        self.model, self.options, self.log = model, options or TrainOptions(), log
        model.config.forget_calibration()  # fitted on the weights this run changes (train, fine-tune, a fold)
        self.train_set = train_set.relabel(model.labels)
        self.val_set = val_set.relabel(model.labels) if val_set is not None and len(val_set) else None
        self.checkpoint = Path(checkpoint) if checkpoint else None
        o = self.options
        self.world = world = distributed.join(o.device)
        if not world.writer:  # rank 0 reports the run
            self.log = lambda line: None
        if world.size > 1 and o.batch_size < world.size:
            raise MimikaError(f"a batch of {o.batch_size} faces cannot be shared by {world.size} processes "
                              "(--batch-size is the global batch: at least one face per process)")
        if o.bf16 is None:
            from ..network.architectures import get_architecture
            o.bf16 = world.cuda or cpu_has_native_bf16() or get_architecture(model.config.arch).train_bf16
        check_schedule(o)
        if o.photometric and not o.augment:
            raise MimikaError("--photometric is a kind of augmentation: use it with --augment")
        torch.manual_seed(distributed.rank_seed(o.seed, world.rank))
        self.rng = np.random.default_rng(o.seed)  # the same on every rank: one permutation per epoch
        model.net.to(world.device)
        if o.channels_last:
            model.net.to(memory_format=torch.channels_last)
        self.optimizer = torch.optim.SGD(model.net.parameters(), lr=o.lr, momentum=o.momentum, nesterov=True,
                                         weight_decay=o.weight_decay)
        self.ema = None  # the moving average of the weights (--ema): what validation scores and the run saves
        if o.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
            self.ema = AveragedModel(model.net, multi_avg_fn=get_ema_multi_avg_fn(o.ema), use_buffers=True)
        self.amp = _amp_dtype(world.device, o.bf16)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.state = TrainingState(history=[], best=None, world_size=world.size)
        self.fingerprint = checkpoints.data_fingerprint(self.train_set)
        self.weights = None  # each face's chance of being drawn, when the run balances sets or classes
        if o.source_balance or o.class_balance:  # the prior the network learns: recorded for `mimika calibrate`
            self.weights = draw_weights(self.train_set.origins, self.train_set.y, o.source_balance, o.class_balance)
            model.config.info.setdefault("training", {})["class_shares"] = [
                round(float(v), 6) for v in drawn_class_shares(self.weights, self.train_set.y, len(model.labels))]
        self.logit_offset = logit_offset(self.train_set, o)
        if self.logit_offset is not None:
            self.logit_offset = self.logit_offset.to(world.device)  # once, not in every step
        self.ddp = None  # DistributedDataParallel around the network while run() runs, on several processes
        self.teachers = load_teachers(o, model, world.device, teachers)
        self.taught = None  # per face, whether the teachers answer it (--teacher-sets)
        if o.teacher_sets:
            named = [s.strip() for s in o.teacher_sets.split(",") if s.strip()]
            unknown = sorted(set(named) - set(self.train_set.origins.tolist()))
            if unknown or not self.teachers:
                raise MimikaError(f"--teacher-sets {o.teacher_sets}: " + (
                    f"no training set is named {', '.join(unknown)} (the sets: "
                    f"{', '.join(sorted(set(self.train_set.origins.tolist())))})" if unknown else "needs --teacher"))
            self.taught = np.isin(self.train_set.origins, named)

    @property
    def history(self) -> list[EpochStats]:
        return self.state.history

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Every rank hands in its random states; rank 0 writes."""
        w = self.world
        rank_rng = {}
        if w.size > 1:
            rank_rng["torch"] = distributed.all_gather(torch.get_rng_state().numpy(), w)
        if w.cuda:
            rank_rng["cuda"] = distributed.all_gather(torch.cuda.get_rng_state(w.device).numpy(), w)
        self.state.rank_rng, self.state.world_size = rank_rng or None, w.size
        self.state.scaler = self.scaler.state_dict() if self.scaler else None
        self.state.ema = self.ema.state_dict() if self.ema is not None else None
        if not w.writer:
            return
        try:
            checkpoints.save(path, self.model, self.optimizer, self.options, self.state, self.rng, self.fingerprint)
        except MimikaError as e:
            raise MimikaError(f"{e}; training stopped after epoch {len(self.history)}") from None

    def restore(self, path: str | os.PathLike) -> None:
        """Continue the run saved in `path` (same model, data and fixed options). Rank 0 reads the
        file and sends it to the others, so all ranks continue from the same bytes."""
        w = self.world
        if w.size == 1:
            self.state = checkpoints.restore(path, self.model, self.optimizer, self.options, self.rng,
                                             self.fingerprint)
        else:
            blob = distributed.bytes_from_rank0(lambda: _read_checkpoint(path), w)
            self.state = _restore_bytes(blob, path, self)
        saved = self.state.world_size
        rows = self.state.rank_rng or {}
        if "torch" in rows and w.rank < len(rows["torch"]):
            torch.set_rng_state(torch.from_numpy(rows["torch"][w.rank].copy()))
        elif w.rank > 0:  # a rank the saved run did not have: a stream of its own
            torch.manual_seed(distributed.rank_seed(self.options.seed + len(self.history), w.rank))
        if w.cuda and "cuda" in rows and w.rank < len(rows["cuda"]):
            torch.cuda.set_rng_state(torch.from_numpy(rows["cuda"][w.rank].copy()), w.device)
        if self.scaler and self.state.scaler:
            self.scaler.load_state_dict(self.state.scaler)
        if self.ema is not None and self.state.ema is not None:
            self.ema.load_state_dict(self.state.ema)
        note = ""
        if saved != w.size:
            note = (f" (written by a {saved}-process run, continued with {w.size}: each batch of "
                    f"{self.options.batch_size} is shared by {w.size} instead of {saved}, so the run takes the same "
                    "steps up to float rounding, the processes' own dropout and augmentation draws and batch-norm "
                    f"statistics, not bit for bit as with {saved})")
        self.state.world_size = w.size
        self.log(f"resumed {path} after epoch {len(self.history)}{note}")

    def train_epoch(self) -> float:
        o, data, w = self.options, self.train_set, self.world
        net = self.ddp or self.model.net
        self.model.net.train()
        use_soft = o.soft_labels and data.soft is not None
        loss_fn = nn.CrossEntropyLoss(reduction="sum", label_smoothing=o.label_smoothing)
        perm = epoch_order(self.rng, self.weights, len(data))
        total = 0.0
        batches = range(0, len(perm), o.batch_size)
        epoch = len(self.history)
        for k, i in enumerate(progress(batches, f"epoch {epoch + 1}", total=len(batches), unit="batch")):
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(o, epoch, k, len(batches))
            idx = np.sort(perm[i:i + o.batch_size])
            share = len(idx) / w.size  # DDP averages over the ranks: each rank's sum / share -> the batch mean
            mine, weight = idx[w.rank::w.size], 1.0
            if len(mine) == 0:  # a last batch smaller than the ranks: a face that counts for nothing
                mine, weight = idx[:1], 0.0
            y = torch.from_numpy(data.soft[mine] if use_soft else data.y[mine]).to(w.device)
            x = self.model.to_input(data.faces[mine])
            if o.augment:
                x = augment(x, photometric=o.photometric)  # on the CPU, from its checkpointed generator
            x = _layout(x.to(w.device), o.channels_last)
            soft = use_soft
            if o.mixup > 0:  # mixed before the teachers answer, so they read the faces the network sees
                x, y = mixup(x, self.as_distribution(y, soft), o.mixup)
                soft = True
            if self.teachers:
                y = self.distilled(x, y, soft, self.taught[mine] if self.taught is not None else None)
            with _autocast(w.device, self.amp):
                logits = net(x).float()
            if self.logit_offset is not None:
                logits = logits + self.logit_offset
            loss = loss_fn(logits, y)
            if weight != 1.0:
                loss = loss * weight
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler:
                self.scaler.scale(loss / share).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                (loss / share).backward()
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model.net)
            total += float(loss.detach())
        self.model.net.eval()
        if w.size > 1:
            total, = distributed.all_sum([total], w)
        return total / len(data)

    def as_distribution(self, y: torch.Tensor, soft: bool) -> torch.Tensor:
        """Targets as class probabilities: vote distributions as they are, class indices one-hot."""
        return y.float() if soft else nn.functional.one_hot(y, len(self.model.labels)).float()

    def distilled(self, x: torch.Tensor, y: torch.Tensor, soft: bool, taught: np.ndarray | None = None
                  ) -> torch.Tensor:
        """The targets of a batch with the teachers' answers on the same faces mixed in:
        (1 - w) x the labels (class indices or vote distributions) + w x the teachers' average
        (each in the student's classes: `Teacher.targets`); `taught`: which faces get them
        (--teacher-sets), the others keep their labels."""
        labels = self.as_distribution(y, soft)
        with torch.no_grad(), _autocast(self.world.device, self.amp):
            p = torch.stack([t.targets(x, labels) for t in self.teachers]).mean(dim=0)
        w = self.options.teacher_weight
        if taught is not None:
            w = w * torch.from_numpy(taught.astype(np.float32))[:, None].to(labels.device)
        return (1 - w) * labels + w * p

    def scored(self) -> Model:
        """The weights validation scores and the run saves: the moving average under --ema."""
        return self.model if self.ema is None else Model(self.model.config, self.ema.module)

    def done(self) -> bool:
        o, h = self.options, self.history
        if o.epochs is not None:
            return len(h) >= o.epochs
        if len(h) >= o.max_epochs:
            return True
        return len(h) >= 2 and abs(h[-1].train_loss - h[-2].train_loss) < o.tol

    def run(self) -> list[EpochStats]:
        """Train until done; the network ends on the CPU in the usual memory layout, whatever the
        device. When another process of the run dies, one line says where to continue from."""
        try:
            return self._run()
        except Exception as e:
            if self.world.size == 1 or not distributed.is_peer_error(e):
                raise
            distributed.hold_stop_signal()
            where = ("" if not self.world.writer else checkpoints.describe(self.checkpoint) if self.checkpoint
                     else "No checkpoint was kept (--checkpoint FILE keeps one after every epoch).")
            line = str(e) if isinstance(e, distributed.PeerLost) else (
                f"another process of the run ended ({distributed.gist(e)})")
            raise MimikaError(f"{line} in epoch {len(self.history) + 1}. {where}".strip()) from None
        finally:
            self.ddp = None  # releases its hooks on the network's parameters
            self.model.net.to("cpu").to(memory_format=torch.contiguous_format)

    def _run(self) -> list[EpochStats]:
        o, w = self.options, self.world
        self.model.net.to(w.device)
        if o.channels_last:
            self.model.net.to(memory_format=torch.channels_last)
        if w.group:
            from torch.nn.parallel import DistributedDataParallel
            fixed = {k: getattr(o, k) for k in fixed_options()}
            distributed.check_same(f"{self.fingerprint} {self.model.labels} {self.model.config.arch} {fixed}", w,
                                   "training data or settings")
            machines = w.size // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", w.size)))
            self.log(f"training in {w.size} processes on {machines} machine(s) ({w.device}), global batch "
                     f"{o.batch_size}")
            with distributed.collective("starting (the processes compare their networks)"):
                # gradients as views of DDP's buckets: one copy less per step (bench/scale.py: about 5% on 2 cores)
                self.ddp = DistributedDataParallel(self.model.net, device_ids=[w.local_rank] if w.cuda else None,
                                                   gradient_as_bucket_view=True)
        while not self.done():
            t0 = time.perf_counter()
            train_loss = self.train_epoch()
            if not np.isfinite(train_loss):
                raise MimikaError(f"training diverged at epoch {len(self.history) + 1} (loss {train_loss}); "
                                  "lower the learning rate")
            val_loss = val_acc = None
            if self.val_set is not None:
                val_loss, val_acc = evaluate_loss(self.scored(), self.val_set, o, self.world)
                if o.keep_best and (self.state.best is None or val_acc > self.state.best[0]):
                    self.state.best = (val_acc, len(self.history) + 1,
                                       {k: v.detach().clone() for k, v in self.scored().net.state_dict().items()})
            stats = EpochStats(len(self.history) + 1, train_loss, val_loss, val_acc, time.perf_counter() - t0)
            self.history.append(stats)
            if self.checkpoint:
                self.save_checkpoint(self.checkpoint)
            self.log(stats.line(o.epochs))
        if o.epochs is None:
            self.log(f"stopped after {len(self.history)} epochs ("
                     + ("max epochs reached" if len(self.history) >= o.max_epochs else f"loss change < {o.tol}")
                     + ")")
        if self.ema is not None:
            self.model.net.load_state_dict(self.ema.module.state_dict())
            self.log(f"the run ends with the moving average of its weights (decay {o.ema})")
        if o.keep_best and self.state.best is not None:
            self.model.net.load_state_dict(self.state.best[2])
            self.log(f"kept the weights of epoch {self.state.best[1]} (best validation accuracy "
                     f"{self.state.best[0]:.4f})")
        return self.history


def _read_checkpoint(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise MimikaError(f"{path}: no such {checkpoints.WHAT}")
    return path.read_bytes()


def _restore_bytes(blob: bytes, path: str | os.PathLike, trainer: "Trainer") -> TrainingState:
    """Restore from the checkpoint's bytes (as rank 0 read them), with messages naming `path`."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="mimika-resume-") as tmp:
        copy = Path(tmp) / Path(path).name
        copy.write_bytes(blob)
        try:
            return checkpoints.restore(copy, trainer.model, trainer.optimizer, trainer.options, trainer.rng,
                                       trainer.fingerprint)
        except MimikaError as e:
            raise MimikaError(str(e).replace(str(copy), str(path))) from None


def history_json(history: list[EpochStats]) -> str:
    return json.dumps([asdict(h) for h in history], indent=1)
