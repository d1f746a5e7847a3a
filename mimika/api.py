"""The Python API for models and training: a few verbs over the core modules, with every decision
the command line makes about them (which model a run starts from, where it checkpoints, what a
calibration may be fitted on, which settings a model file format takes, what an export needs). The
CLI only maps its arguments onto these; recognition's verbs are in `mimika.recognition`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .common.errors import MimikaError
from .common.fileio import check_writable
from .common.labels import in_code_order
from .data import load_set, load_sets, neutral_frames  # noqa: F401 - the sets these verbs train on, part of the API
from .network.config import ModelConfig
from .network.model import Model
from .prepare.datasets import FaceSet, faces_from_arrays
from .training.calibration import Fitted
from .training.loop import EpochStats, Trainer, kept_as_teacher, save_dtype
from .training.options import TrainOptions

#: the settings `configure` changes in a `.npz` alone, whose ONNX export is then written again: how
#: faces are viewed and cropped; the others (temperature, prior, what calibration fitted) apply to
#: an `.onnx` as well
NPZ_ONLY_SETTINGS = ("tta", "margin")


def _model(model: Model | str | os.PathLike) -> Model:
    """A model given as itself, or by its file or shipped name."""
    return model if isinstance(model, Model) else Model.load(model)


def create_model(arch: str = "seed", labels: list[str] | None = None, seed: int | None = 0) -> Model:
    """A new, untrained model of a registered architecture."""
    return Model.create(arch, labels, seed=seed)


def load_model(name_or_path: str | os.PathLike | None = None) -> Model:
    """A shipped model by name ("seed"), a model file by path, or the default model (None)."""
    return Model.load(name_or_path)


def starting_model(init: str | os.PathLike | None = None, arch: str | None = None, margin: float | None = None,
                   seed: int | None = None, labels: list[str] | None = None, input_size: int | None = None) -> Model:
    """The model a training run starts from: the trained model `init`, or else a new network of
    `arch` ("seed" unless given) cropping with `margin` (0 unless given), seeded with `seed`. A
    trained model brings its own architecture and margin: an `arch` or `margin` that differs from
    its own is refused in one line, never silently dropped. `labels`: the classes to answer (a
    trained model keeps the rows of those it shares). `input_size`: faces of N x N pixels instead of
    the architecture's own, for a network with global pooling (whose weights take any size: a
    trained model's go on from its own size)."""
    model = _started(init, arch, margin, seed, labels)
    if input_size is not None and input_size != model.config.crop.width:
        from dataclasses import replace

        from .network.architectures import get_architecture
        if not get_architecture(model.config.arch).any_input:
            raise MimikaError(f"--input-size {input_size}: the {model.config.arch} network takes "
                              f"{model.config.crop.width}x{model.config.crop.height} faces only (its dense layer is "
                              "sized for them)")
        model.config.crop = replace(model.config.crop, width=input_size, height=input_size)
    return model


def _started(init, arch, margin, seed, labels) -> Model:
    if init is None:
        return Model.create(arch or "seed", labels=labels, margin=0.0 if margin is None else margin, seed=seed)
    model = Model.load(init)
    own = model.config
    for flag, given, has in (("--arch", arch, own.arch), ("--margin", margin, own.crop.margin)):
        if given is not None and given != has:
            raise MimikaError(f"{init}: a trained model (--init) brings its own architecture ({own.arch}) and crop "
                              f"margin ({own.crop.margin:g}): {flag} {given} "
                              f"differs (`mimika configure --margin` changes a trained model's margin)")
    return model.with_labels(labels) if labels else model


def checkpoint_of(checkpoint: str | os.PathLike | None, resume: str | os.PathLike | None) -> str | os.PathLike | None:
    """Where a run saves its checkpoint after every epoch: `checkpoint`, or else the checkpoint it
    resumed from (a resumed run goes on saving there, so it can be resumed again)."""
    return checkpoint or resume or None


def check_run_files(out: str | os.PathLike | None, checkpoint: str | os.PathLike | None = None,
                    resume: str | os.PathLike | None = None) -> Path | None:
    """The files a training run writes and reads, checked before any work (a run may take hours,
    its data minutes to load): `out` and the checkpoint can be written, the checkpoint it resumes
    from is there (under torchrun rank 0 reads it for all). Returns `out` as a path."""
    from .training.distributed import is_writer
    written = check_writable(out, "model file") if out else None
    for path in dict.fromkeys(p for p in (checkpoint_of(checkpoint, resume), resume) if p):
        check_writable(path, "checkpoint")
    if resume and not Path(resume).is_file() and is_writer():
        raise MimikaError(f"{resume}: no such training checkpoint (nothing to resume)")
    return written


def train(model: Model, train_set: FaceSet, val_set: FaceSet | None = None,
          options: TrainOptions | None = None, out: str | os.PathLike | None = None,
          checkpoint: str | os.PathLike | None = None, resume: str | os.PathLike | None = None,
          log: Callable[[str], None] = print, teachers: Sequence[Model] = ()) -> list[EpochStats]:
    """Train `model` in place. Returns the per-epoch history; the wall time goes into the model's
    info. With `out`, the model is saved there, with its history beside it (`.history.json`, and a
    plot `.history.png` when matplotlib is installed), and the saved file's validation accuracy is
    logged. A run that resumes from a checkpoint goes on saving there unless given another
    (`checkpoint_of`). Under torchrun every process calls this and trains its share of each batch
    (distributed.py); only rank 0 writes the checkpoint and `out`. `teachers`: models in memory
    distilled from beside those of `options.teacher`."""
    options = options or TrainOptions()
    checkpoint = checkpoint_of(checkpoint, resume)
    check_run_files(out, checkpoint, resume)
    trainer = Trainer(model, train_set, val_set, options, checkpoint=checkpoint, log=log, teachers=teachers)
    if resume:
        trainer.restore(resume)
    t0 = time.perf_counter()
    history = trainer.run()
    model.config.info.setdefault("training", {}).update(
        {"epochs": len(history), "seconds_this_session": round(time.perf_counter() - t0, 1)})
    if train_set.detector:  # so figures on detector-cropped data can be reproduced with the same crops
        model.config.info["dataset_detector"] = train_set.detector
    if out and trainer.world.writer:
        save_run(model, history, out, options, val_set, log)
    return history


def save_run(model: Model, history: list[EpochStats], out: str | os.PathLike, options: TrainOptions,
             val_set: FaceSet | None = None, log: Callable[[str], None] = print) -> Path:
    """Write a trained model, its history (JSON, and a PNG plot when matplotlib is there) and log the
    validation accuracy of the file as saved (the figure `mimika evaluate` gives for it)."""
    from importlib.util import find_spec

    from .common.fileio import write_text
    from .training.loop import evaluate_loss, history_json
    out = model.save(out, dtype=save_dtype(options))
    stem = out.with_suffix("")
    written = [write_text(f"{stem}.history.json", history_json(history))]
    if find_spec("matplotlib") is not None:
        from .reports.plots import plot_history
        written.append(plot_history([h.__dict__ for h in history], f"{stem}.history.png"))
    log(f"saved {out} (history: {', '.join(str(p) for p in written)})")
    if val_set is not None and len(val_set) and history:
        log(f"validation accuracy of the saved weights {evaluate_loss(Model.load(out), val_set, options)[1]:.4f} "
            f"({len(val_set)} faces)")
    return out


def interpolate(start: Model | str | os.PathLike, tuned: Model | str | os.PathLike, weight: float,
                out: str | os.PathLike | None = None) -> Model | Path:
    """(1 - weight) x `start` + weight x `tuned`, weight by weight (training.averaging): the model, or
    the file written (as the tuned model's file stores its weights) when `out` is given."""
    from .training.averaging import interpolate as mix
    tuned = _model(tuned)
    if out is not None:
        check_writable(out)
    model = mix(_model(start), tuned, weight)
    return model if out is None else model.save(out, dtype=tuned.stored_dtype)


def fine_tune(model: Model | str | os.PathLike, faces: np.ndarray | FaceSet, labels=None, epochs: int = 10,
              lr: float = 0.001, batch_size: int = 32, seed: int = 0, crop: str = "detect",
              out: str | os.PathLike | None = None, log: Callable[[str], None] = print, codes=None,
              device: str = "auto", augment: bool = False, keep: float = 0.0) -> Model:
    """Continue training a trained model on the user's own labelled faces.

    `faces` is an N x K x H x W array (K = 1 gray or 3 RGB, any H, W: the face is found and
    resized to the model input) with `labels`, one per face: CK+ codes (1..7, or 0 for neutral) or
    emotion names ("happiness", "happy"); or a FaceSet. Classes the model does not know get new
    outputs (the head is widened). `codes` is the old name of `labels`. `device`: where to train
    (auto: a GPU when PyTorch sees one). `augment`: random shifts, scales, rotations, flips and
    erasing of the faces. `keep`: the share of each target the starting model answers (its frozen
    copy as teacher, "learning without forgetting"), so it forgets less of the faces it knew; faces
    of a class it never learned keep their labels (experiment E17: 0 reads the user's people best,
    at a loss on everyone else).
    """
    labels = labels if labels is not None else codes
    model = _model(model)
    if not isinstance(faces, FaceSet) and labels is None:
        raise MimikaError("fine_tune needs a label per face (CK+ codes or emotion names)")
    if not 0 <= keep <= 1:
        raise MimikaError(f"keep {keep}: the share of each target the starting model answers is between 0 and 1")
    data = faces if isinstance(faces, FaceSet) else faces_from_arrays(faces, labels, model.config.crop, crop)
    start = model.labels
    new = [n for n in data.labels if n not in start]
    teacher = kept_as_teacher(model) if keep else None
    if new:
        model.with_labels(in_code_order(start + new))
        log(f"new classes {', '.join(new)}: the model's output layer was widened to {len(model.labels)} classes")
    for note in data.notes:
        log(note)
    opts = TrainOptions(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device, augment=augment,
                        teacher_weight=keep)
    history = train(model, data, None, opts, out=None, log=log, teachers=[teacher] if teacher else [])
    model.config.info["fine_tuned"] = {"faces": len(data), "epochs": len(history), "lr": lr, "augment": augment,
                                       "keep": keep}
    from .training.distributed import is_writer
    if out and is_writer():
        model.save(out)
    return model


@dataclass(frozen=True)
class Calibration:
    """What `calibrate` fitted and wrote into `path`, on how many validation faces, with the class
    shares of how many training faces."""

    path: Path
    fitted: Fitted
    validation_faces: int
    training_faces: int
    drawn_shares: bool = False  # the prior is the class shares the training drew (`drawn_prior`)


def calibrate(model: str | os.PathLike | None, data: FaceSet, split: str = "PublicTest",
              predictor=None) -> Calibration:
    """Fit on validation faces of `data` the temperature that makes the probabilities of `model` (a
    file, or a shipped name: its .onnx) honest, and the balance of its answers under the balanced
    prior, with the class shares of the faces it trained on (its recorded split); write them into
    the file. `split`: PublicTest, or "heldout" (the subjects its training held out); a test split is
    refused (`validation_split`). `predictor`: the file already loaded (to read `data` with its crop)."""
    from .network.config import resolve_model_path
    from .network.predictor import load_predictor
    from .prepare.datasets import evaluation_set, training_faces
    from .training.calibration import calibrate as fit_into
    from .training.calibration import validation_split
    validation_split(split)
    path = resolve_model_path(model)
    predictor = predictor or load_predictor(path)
    val = evaluation_set(data, split, predictor.config.info, str(path)).relabel(predictor.labels)
    train = training_faces(data, predictor.config.info, str(path)).relabel(predictor.labels)
    drawn = drawn_prior(predictor.config.info, len(predictor.labels))
    return Calibration(path, fit_into(path, val.faces, val.y, train.y, predictor, prior=drawn), len(val), len(train),
                       drawn is not None)


def drawn_prior(info: dict, n: int) -> list[float] | None:
    """The class shares a run balancing sets or classes drew (recorded by training), which are the
    prior its network learned, rather than the shares of the faces it held; None for other runs."""
    shares = info.get("training", {}).get("class_shares")
    if not shares or len(shares) != n:
        return None
    floor = np.maximum(np.asarray(shares, np.float64), 1e-6)  # a class never drawn: finite, as class_shares does
    return [float(round(v, 6)) for v in floor / floor.sum()]


def configure(path: str | os.PathLike, tta: str | None = None, margin: float | None = None,
              temperature: float | None = None, prior: str | None = None,
              fitted_from: str | os.PathLike | None = None) -> ModelConfig:
    """Change how a trained model file is used, in place, and return its new config: `tta` (a name
    of `choices.TTA_NAMES`) and `margin` for a `.npz` only (`NPZ_ONLY_SETTINGS`: export it again
    afterwards); `temperature`, `prior` and `fitted_from` (what `calibrate` fitted on another file
    of the same weights: temperature, training class shares, balance) for either format."""
    from dataclasses import replace

    from .common.choices import tta_mode
    from .network.export import update_model_config
    from .network.predictor import load_predictor
    path = Path(path)
    given = {"tta": tta, "margin": margin}
    if path.suffix != ".npz" and any(given[k] is not None for k in NPZ_ONLY_SETTINGS):
        raise MimikaError(f"{path}: --tta and --margin rewrite a .npz model file (export it again afterwards)")
    model = load_predictor(path)
    fields = {}
    if fitted_from:
        source = load_predictor(fitted_from).config
        if source.labels != model.labels:
            raise MimikaError(f"{fitted_from}: other labels than {path}: not a file of the same weights")
        fields.update(temperature=source.temperature, class_prior=source.class_prior, balance=source.balance)
    if temperature is not None:
        fields["temperature"] = temperature
    if prior is not None:
        fields["prior"] = prior
    if tta is not None:
        fields["tta"] = tta_mode(tta)
    if margin is not None:
        fields["crop"] = replace(model.config.crop, margin=margin)
    if not fields:
        raise MimikaError("nothing to change: give --tta, --margin, --temperature, --fitted-from or --prior")
    return update_model_config(path, model, **fields)


@dataclass(frozen=True)
class Exported:
    """What `export` wrote: the file, the model it holds (to check the file against) and, for an
    INT8 file, how it was made ("INT8, calibrated on ...")."""

    path: Path
    model: Model
    how: str = ""


def export(model: Model | str | os.PathLike | None, out: str | os.PathLike, float32: bool = False,
           int8: bool = False, calibration: str | os.PathLike | None = None, calibration_faces: int = 1024,
           log: Callable[[str], None] = print) -> Exported:
    """Write a trained model (loaded, a `.npz` file or a shipped name) as ONNX, for prediction
    without PyTorch: its weights float16 where that is exact (`float32`: all float32), or INT8
    (`int8`), whose activation ranges are calibrated on `calibration_faces` faces drawn from the
    labelled set `calibration`, which INT8 needs and nothing else takes. `log`: notes of reading it."""
    from .network.export import calibration_faces as draw_faces
    from .network.export import export_onnx
    if calibration and not int8:
        raise MimikaError("--calibration is for --int8 exports")
    if int8 and not calibration:
        raise MimikaError("--int8 needs --calibration DATA (a few hundred real faces, e.g. the training set)")
    model = _model(model)
    if not int8:
        return Exported(export_onnx(model, out, half=not float32), model)
    faces, source = draw_faces(calibration, model.config.crop, calibration_faces, log=log)
    return Exported(export_onnx(model, out, quantize=True, calibration=faces, calibration_source=source), model,
                    f"INT8, calibrated on {source}")
