"""The `mimika` command: argument mapping and printing over the Python API, nothing more."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from .common.errors import NEEDS_TORCH, MimikaError
from .common.labels import PRIORS, TTA_NAMES, tta_mode

TTA_HELP = ("test-time augmentation: the logits of several views of each face averaged (flip: the face and its "
            "mirror image, 2x the time; shift: both, also moved 2 pixels of 48 each way, 10x)")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Every flag's default shown after its help (unless it has none); examples kept as written."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or not action.option_strings or isinstance(action, argparse._StoreConstAction):
            return action.help
        return f"{action.help} (default: {action.default})"


def _number(kind, low=None, high=None, low_open=False):
    """An argparse type: a number of `kind` within [low, high] (low excluded if `low_open`)."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__} number") from None
        if (low is not None and (v <= low if low_open else v < low)) or (high is not None and v > high) or v != v:
            bound = [f"{'>' if low_open else '>='} {low}" if low is not None else "",
                     f"<= {high}" if high is not None else ""]
            raise argparse.ArgumentTypeError(f"{text} is out of range (must be {' and '.join(b for b in bound if b)})")
        return v
    return parse


POSITIVE = _number(int, 1)
MARGIN = _number(float, -0.4, 2.0)
TEMPERATURE = _number(float, 0.01, 100.0)


def _add_train_options(p, only: list[str] | None = None, exclude: tuple = (), **defaults) -> None:
    """Flags derived from `TrainOptions`: name, type, range, default and help written once, in options.py."""
    from .training.options import TrainOptions
    g = p.add_argument_group("training options")
    for f in fields(TrainOptions):
        if (only is not None and f.name not in only) or f.name in exclude:
            continue
        default, flag = defaults.get(f.name, f.default), "--" + f.name.replace("_", "-")
        kw = dict(f.metadata["cli"], help=f.metadata["help"], default=default)
        if str(f.type).startswith("bool"):
            g.add_argument(flag, action="store_true" if default is False else argparse.BooleanOptionalAction, **kw)
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type).split()[0]]
            g.add_argument(flag, type=_number(kind, *f.metadata["range"]) if kind is not str else str, **kw)


def _train_options(args):
    from .training.options import TrainOptions
    return TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions) if hasattr(args, f.name)})


def _parser() -> argparse.ArgumentParser:
    from importlib.metadata import version
    parser = argparse.ArgumentParser(prog="mimika", description="Facial expression recognition: find every face "
                                     "in images and videos and say how strongly it shows each emotion.")
    parser.add_argument("--version", action="version", version=f"mimika {version('mimika')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, help, examples, **kw):
        return sub.add_parser(name, help=help, description=help, formatter_class=_Help,
                              epilog="examples:\n" + "\n".join(f"  {e}" for e in examples), **kw)

    def data_args(p, crop_default="auto", several=""):
        """--data and how its faces are found; `several`: what repeating --data means (it may repeat)."""
        sets = "fer2013.csv(.gz), fer2013new.csv, a CK+ folder or class folders"
        if several:
            p.add_argument("--data", required=True, action="append", help=f"{sets}; {several}")
        else:
            p.add_argument("--data", required=True, help=sets)
        p.add_argument("--labels", help="CK+ Emotion tree, when --data is the image tree alone")
        p.add_argument("--crop", choices=["auto", "detect", "whole"], default=crop_default,
                       help="find the face in each image, or take the whole image (auto: detect on CK+ frames)")
        from .prepare.detection import DATASET_DETECTOR, PRESETS
        p.add_argument("--detector", default=DATASET_DETECTOR, choices=list(PRESETS), help="the detector that "
                       "finds the faces of a set cropped by detection: the fixed one every published figure used, or "
                       "the one prediction uses (cnn: aligned crops, as a user's photos are read)")

    p = command("predict", "recognize the expressions of every face in images and videos",
                ["mimika predict photo.jpg", "mimika predict photos/ clip.mp4 --csv > faces.csv",
                 "cat photo.jpg | mimika predict - --json", "mimika predict photos/ --annotate out/ --landmarks",
                 "mimika predict interview.mp4 --every 5 --csv --smooth 0.5 --timeline emotions.png",
                 "mimika predict photos/ --detector haar   # the original Haar cascade"])
    p.add_argument("images", nargs="+", help="image or video files, folders of them, or - for standard input")
    p.add_argument("--model", help="shipped model name or model file (default: the shipped default model)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print one JSON list of per-file results at the end")
    fmt.add_argument("--jsonl", action="store_true", help="print one JSON object per file as it is done")
    fmt.add_argument("--csv", action="store_true", help="print CSV: a row per face (and per file without one)")
    p.add_argument("--annotate", metavar="DIR", help="write annotated copies below DIR, named like the inputs")
    p.add_argument("--workers", type=POSITIVE, default=1, metavar="N", help="run N processes, each with its own "
                   "model and cores/N threads (output in input order)")
    p.add_argument("--shard", type=_shard, metavar="K/N", help="take only shard K of N of the inputs (a stable hash "
                   "of each name): N jobs cover every input once; join their outputs with mimika merge")
    p.add_argument("--every", type=POSITIVE, default=1, metavar="N", help="videos: analyse every N-th frame")
    p.add_argument("--crop", choices=["detect", "whole"], default="detect",
                   help="whole: each image is one face (pre-cropped faces), no detection")
    p.add_argument("--verbose", action="store_true", help="show the image decoders' own warnings")
    _test_time_args(p)
    v = p.add_argument_group("videos and annotated copies")
    v.add_argument("--landmarks", action="store_true", help="draw each face's eyes, nose and mouth on annotated copies")
    v.add_argument("--smooth", type=_number(float, 0.0, 0.99), default=0.0, metavar="A",
                   help="videos: average each tracked face's probabilities over time (weight A of the past)")
    v.add_argument("--timeline", metavar="PNG", help="videos: plot each tracked face's emotions over time (needs "
                   "matplotlib)")
    g = p.add_argument_group("face detection (every setting overrides the preset's)")
    from .prepare.detection import DEFAULT_DETECTOR, PRESETS
    g.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(PRESETS), help="cnn: CenterFace with "
                   "landmarks, faces from 24 px; cnn-thorough: more small faces, slower; cnn-fast: from 40 px; "
                   "haar: the original Haar cascade (faces from "
                   "40 px), haar-thorough (30 px), haar-fast (48 px), haar-baseline (the thesis' OpenCV defaults)")
    g.add_argument("--no-align", dest="align", action="store_false", help="crop the detector's box, not the face "
                   "aligned by its landmarks")
    g.add_argument("--min-face", type=POSITIVE, help="smallest face side in pixels")
    g.add_argument("--cascade", help="Haar: cascade XML, a file OpenCV ships (haarcascade_frontalface_alt.xml) or a path")
    g.add_argument("--scale-factor", type=_number(float, 1.0, low_open=True), help="Haar: image pyramid step (> 1)")
    g.add_argument("--min-neighbors", type=_number(int, 0), help="Haar: detections needed to keep a face")
    g.add_argument("--downscale", type=_number(float, 1.0), help="Haar: detect on the image shrunk by this factor (>= 1)")

    t = command("train", "train a model on a labelled face set",
                ["mimika train --data ../shared/data/ckplus --val-subjects 0.2 --out model.npz --checkpoint run.ckpt.npz",
                 "mimika train --data ../shared/data/ckplus --val-subjects 0.2 --out model.npz --resume run.ckpt.npz",
                 "mimika train --data fer2013new.csv --arch vgg48 --epochs 40 --soft-labels --augment --out fer.npz",
                 "mimika train --data fer2013new.csv --data ../shared/data/ckplus --with-neutral --detector cnn "
                 "--val-subjects 0.2 --init ferplus.npz --epochs 6 --soft-labels --augment --out joint.npz"])
    data_args(t, several="repeat it to train on several sets at once, each split by its own protocol "
              "(FER by Usage, others by --val-subjects)")
    t.add_argument("--with-neutral", action="store_true", help="CK+ sets: add each sequence's first frame as neutral")
    t.add_argument("--arch", default="seed", help="architecture (seed: the original CNN; vgg48, vgg48w)")
    t.add_argument("--init", help="start from this trained model instead of an untrained network")
    t.add_argument("--margin", type=MARGIN, default=0.0, help="crop margin around face boxes, a fraction of the box side")
    t.add_argument("--out", default="model.npz", help="model file to write")
    t.add_argument("--val-subjects", type=_number(float, 0.0, 1.0), default=0.0, metavar="FRACTION",
                   help="hold out this fraction of the subjects for validation (0: the data's own split, if any)")
    t.add_argument("--checkpoint", help="save a resumable checkpoint here after every epoch")
    t.add_argument("--resume", help="continue the run saved in this checkpoint")
    _nproc_arg(t)
    _add_train_options(t)

    c = command("crossval", "subject-independent k-fold cross-validation",
                ["mimika crossval --data ../shared/data/ckplus --folds 10 --out-dir runs/ck10",
                 "mimika crossval --data ckplus48/ --init ferplus.npz --epochs 15 --out-dir runs/ck48",
                 "mimika crossval --data ../shared/data/ckplus --data fer2013new.csv --init ferplus.npz --epochs 6 "
                 "--soft-labels --detector cnn --out-dir runs/ck-joint   # FER+ trains beside every fold"])
    data_args(c, several="repeat it to train beside every fold on further sets (their training part by their "
                          "own protocol; FER: Training), the folds and all tests drawn from the first set")
    c.add_argument("--with-neutral", action="store_true", help="CK+ sets: add each sequence's first frame as neutral "
                   "(folded with its subject: an 8-class cross-validation)")
    c.add_argument("--arch", default="seed", help="architecture of the untrained network of each fold")
    c.add_argument("--init", help="start every fold from this trained model (head fitted to the data's classes)")
    c.add_argument("--margin", type=MARGIN, default=0.0, help="crop margin around face boxes")
    c.add_argument("--folds", type=_number(int, 2), default=10, help="number of folds (subjects split evenly)")
    c.add_argument("--out-dir", required=True, help="folder for fold-N.json, crossval.json, confusion.png")
    _nproc_arg(c)
    _add_train_options(c, exclude=("keep_best", "half"))  # folds have no validation set, and save no model

    f = command("finetune", "continue training a model on your own labelled faces",
                ["mimika finetune --data myfaces/ --out mine.npz   # myfaces/<emotion or CK+ code>/*.jpg",
                 "mimika finetune --model seed --data myfaces/ --epochs 5 --out mine.npz",
                 "mimika finetune --data myfaces/ --augment --keep 0.5 --out mine.npz   # forget less of other people"])
    f.add_argument("--model", help="model to start from (default: the shipped default model)")
    f.add_argument("--data", required=True, help="class folders: DATA/<emotion or CK+ code>/<images>")
    f.add_argument("--out", required=True, help="model file to write")
    f.add_argument("--crop", choices=["detect", "whole"], default="detect", help="find the face, or take the whole image")
    f.add_argument("--keep", type=_number(float, 0.0, 1.0), default=0.0, metavar="W",
                   help="the share of each target the starting model answers (its frozen copy as teacher: "
                   "learning without forgetting), so it forgets less of the faces it knew; a class it never learned is "
                   "taught by your labels alone; 0: your faces alone, "
                   "best on your people, worst on everyone else's (README: Your own camera's people)")
    _add_train_options(f, ["epochs", "lr", "batch_size", "seed", "device", "augment"], epochs=10, lr=0.001)
    _nproc_arg(f)

    e = command("evaluate", "score a model on a labelled face set",
                ["mimika evaluate --model ferplus --data fer2013new.csv --split PrivateTest",
                 "mimika evaluate --model seed --data ../shared/data/ckplus --split heldout --confusion cm.png",
                 "mimika evaluate --model ferplus --data ../shared/data/ckplus --detector cnn --data-classes-only"])
    e.add_argument("--model", help="shipped model name or model file")
    data_args(e)
    e.add_argument("--split", default="all", help="all; heldout (the subjects the model's training held out); or "
                   "a dataset split: Training, PublicTest, PrivateTest")
    e.add_argument("--held-out-by", metavar="MODEL", help="with --split heldout: the subjects this other model's "
                   "training held out (a baseline scored on the same people as a model trained with them)")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.add_argument("--confusion", metavar="PNG", help="write the confusion matrix as a PNG (needs matplotlib)")
    e.add_argument("--with-neutral", action="store_true", help="CK+: add each sequence's first frame as neutral "
                   "(the 8-class protocol)")
    e.add_argument("--known-classes", action="store_true", help="score only the faces of classes the model knows "
                   "(a model tested on another dataset; the others are counted and left out)")
    e.add_argument("--data-classes-only", action="store_true", help="the model answers only among the classes the "
                   "data has, its probabilities renormalized over them (CK+ peaks: one of the 7 emotions, neutral "
                   "not being an answer)")
    _device_arg(e, "auto", "where the model runs: cuda (ONNX Runtime's CUDA provider, or PyTorch's GPU for a .npz), "
                "cpu, or auto (the GPU when there is one)")
    _test_time_args(e)

    mo = command("models", "list the shipped models", ["mimika models", "mimika models --verbose"])
    mo.add_argument("--verbose", action="store_true", help="also each model's file, and which ONNX Runtime "
                    "provider (CPU or CUDA) runs them")

    mg = command("merge", "join the CSV, JSON Lines or JSON outputs of mimika predict jobs (--shard K/N)",
                 ["mimika merge part-*.csv > all.csv", "mimika merge --sort part-*.jsonl --out all.jsonl"])
    mg.add_argument("outputs", nargs="+", help="outputs of mimika predict: all CSV, all JSON Lines or all JSON")
    mg.add_argument("--sort", action="store_true", help="order by file and frame, as one run over the inputs would")
    mg.add_argument("--out", help="write here (atomically) instead of to standard output")

    k = command("calibrate", "fit, on validation data, the temperature that makes a model's probabilities "
                "honest and the balance of its answers under --prior balanced (written into the model file)",
                ["mimika calibrate mimika/models/ferplus.onnx --data fer2013new.csv   # its PublicTest split",
                 "mimika calibrate mine.npz --data ../shared/data/ckplus --split heldout"])
    k.add_argument("model", help="model file (.onnx or .npz; a shipped name means its .onnx)")
    data_args(k)
    k.add_argument("--split", default="PublicTest", help="validation faces: PublicTest, or heldout (the subjects "
                   "the model's training held out); never a test split")

    sv = command("serve", "an HTTP API and a web page (photos, webcam) over the recognizer",
                 ["mimika serve", "mimika serve --workers 2 --port 8080",
                  "MIMIKA_TOKEN=... mimika serve --host 0.0.0.0   # a token when others can reach it"])
    from .serve import add_arguments
    add_arguments(sv)

    g = command("configure", "change how a trained model is used (rewrites its .npz)",
                ["mimika configure mine.npz --tta flip", "mimika configure mine.npz --margin 0.1",
                 "mimika configure mine.float.onnx --temperature 0.56   # what calibrate fitted on mine.onnx",
                 "mimika configure mine.npz --fitted-from mine.onnx   # temperature, class shares and balance",
                 "mimika configure mine.onnx --prior balanced   # answer with the balanced prior by default"])
    g.add_argument("model", help="model file (.npz; an .onnx for --temperature, --fitted-from and --prior alone)")
    g.add_argument("--tta", choices=TTA_NAMES, help=TTA_HELP)
    g.add_argument("--margin", type=MARGIN, help="crop margin around detected face boxes")
    g.add_argument("--temperature", type=TEMPERATURE, help="the logits' divisor that `calibrate` fitted for the "
                   "same weights (0.01-100; 1 turns calibration off)")
    g.add_argument("--fitted-from", metavar="FILE", help="copy what `calibrate` fitted on FILE, a file of the same "
                   "weights (its .onnx, .float.onnx or .npz): temperature, training class shares, balance")
    g.add_argument("--prior", choices=list(PRIORS), help="the class prior the model answers with unless told "
                   "otherwise (balanced needs the class shares `calibrate` fits)")

    x = command("export", "write a trained model as ONNX, for prediction without PyTorch",
                ["mimika export mine.npz mine.onnx", "mimika export mine.npz mine.onnx --int8 --calibration fer2013.csv"])
    x.add_argument("model", help="model file (.npz) or shipped model name")
    x.add_argument("out", help="ONNX file to write")
    x.add_argument("--float32", action="store_true", help="keep every weight float32 (default: float16 where exact)")
    x.add_argument("--int8", action="store_true", help="quantize to INT8 (about 3x faster; measure its accuracy "
                   "again); needs --calibration")
    x.add_argument("--calibration", metavar="DATA", help="labelled faces to calibrate INT8 ranges on (any --data "
                   "format; its Training split when it has one)")
    x.add_argument("--calibration-faces", type=POSITIVE, default=1024, help="faces drawn from DATA (seed 0)")
    _device_arg(x, None, "then check the file on this device: ONNX Runtime (its provider for it) against PyTorch, "
                "on faces of the bundled photo; prints the largest probability difference")
    return parser


def _test_time_args(p) -> None:
    p.add_argument("--tta", choices=["model", *TTA_NAMES], default="model",
                   help=f"{TTA_HELP} (model: what the model file says)")
    p.add_argument("--prior", choices=["model", *PRIORS], default="model",
                   help="how common the answers assume each emotion is: training (as in the training photos: "
                   "best on web photos like them), balanced (all equally: best on posed faces and other "
                   "cameras, see the README's cross-domain table), model (what the model file says)")


def _nproc_arg(p) -> None:
    p.add_argument("--nproc", type=POSITIVE, default=1, metavar="N", help="train in N processes on this machine "
                   "(torchrun + DistributedDataParallel; --batch-size stays the global batch; see docs/scale.md)")


def _device_arg(p, default, help: str) -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=default, help=help)


def _shard(text: str):
    from .recognition.parallel import parse_shard
    try:
        return parse_shard(text)
    except MimikaError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _apply_test_time(model, tta: str, prior: str = "model"):
    """The model with the command line's test-time choices over the model file's own; a prior it
    cannot give is one line before any work."""
    from .network.config import with_settings
    changes = {**({"tta": tta_mode(tta)} if tta != "model" else {}),
               **({"prior": prior} if prior != "model" else {})}
    try:
        return with_settings(model, **changes) if changes else model
    except MimikaError as e:
        raise MimikaError(f"{getattr(model, 'path', 'the model')}: --prior {prior}: {e}") from None


def _log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def cmd_predict(args) -> int:
    from .prepare.detection import get_detector
    from .prepare.images import set_verbose
    from .recognition.parallel import predict, shard
    from .recognition.recognizer import Recognizer, expand_inputs
    from .recognition.results import ResultWriter

    set_verbose(args.verbose)
    timeline = None
    if args.timeline:
        from .reports.plots import Timeline, require_matplotlib
        timeline = Timeline(require_matplotlib("--timeline", args.timeline))
    detector = get_detector(args.detector, scale_factor=args.scale_factor, min_neighbors=args.min_neighbors,
                            min_size=args.min_face, downscale=args.downscale, cascade=args.cascade)
    recognizer = Recognizer(args.model, detector, crop=args.crop, align=args.align)
    recognizer.model = _apply_test_time(recognizer.model, args.tta, args.prior)
    sources = expand_inputs(args.images)
    if not sources:
        raise MimikaError(f"{' '.join(args.images)}: no images or videos found")
    if args.shard:
        total, sources = len(sources), shard(sources, *args.shard)
        _log(f"shard {args.shard[0]}/{args.shard[1]}: {len(sources)} of {total} inputs")
    writer = ResultWriter(next((f for f in ("json", "jsonl", "csv") if getattr(args, f)), "table"),
                          recognizer.model.labels)
    failed = []
    for res in predict(recognizer, sources, args.workers, every=args.every, annotate=args.annotate,
                       smoothing=args.smooth, draw_landmarks=args.landmarks):
        writer.write(res)
        failed += [res] if res.error else []
        if timeline:
            timeline.add(res)
    writer.close()
    if failed:
        _log(f"mimika: {len(failed)} of {len(sources)} input(s) could not be read" + ":" * (not args.verbose))
        for r in failed:
            _log(f"  {r.error}")
    if args.annotate and len(failed) < len(sources):
        _log(f"annotated copies written below {args.annotate}/")
    if timeline:
        for path in timeline.save():
            _log(f"timeline written to {path}")
    return 1 if sources and len(failed) >= len(sources) else 0


def _load_data(args, spec, path=None, with_neutral=None):
    """The set at `path` (default: the one --data), prepared for the crop `spec`, its skipped files logged;
    `with_neutral` defaults to the --with-neutral flag."""
    from .prepare.datasets import load_dataset
    from .prepare.detection import PRESETS
    from .training.distributed import rank_zero_first
    detector = PRESETS[args.detector] if getattr(args, "detector", None) else None  # loaded when a set detects
    path = args.data if path is None else path
    with_neutral = getattr(args, "with_neutral", False) if with_neutral is None else with_neutral
    with rank_zero_first():  # under torchrun: rank 0 fills the cache, the others read it
        data = load_dataset(path, spec, crop=args.crop, labeldir=args.labels, detector=detector, log=_log,
                            with_neutral=with_neutral)
    for line in [f"skipped {s}" for s in data.skipped] + data.notes:
        _log(line)
    return data


def _summary(path, data) -> str:
    subjects = len(set(data.subjects.tolist()) - {""}) or "unknown"
    counts = ", ".join(f"{k} {v}" for k, v in data.class_counts().items())
    return f"{path}: {len(data)} faces, {subjects} subjects; {counts}"


def _load_sets(args, spec) -> list:
    """Every --data set (train and crossval take several), each checked to be there and readable before
    the first is prepared (minutes for a large one), its summary logged; with several sets
    --with-neutral adds the neutral frames of the CK+ sets only."""
    from .prepare.datasets.registry import find_layout
    if args.labels and len(args.data) > 1:
        raise MimikaError("--labels names the Emotion tree of one CK+ image tree; to use several sets, "
                          "give each CK+ set as its release folder")
    kinds = [find_layout(Path(path), args.labels and Path(args.labels)).name for path in args.data]
    joint = len(args.data) > 1
    with_neutral = getattr(args, "with_neutral", False)
    sets = [_load_data(args, spec, path, with_neutral and (not joint or kind == "ckplus"))
            for path, kind in zip(args.data, kinds)]
    for path, data in zip(args.data, sets):
        _log(_summary(path, data))
    return sets


def cmd_train(args) -> int:
    from .api import train
    from .common.fileio import check_writable
    from .network.model import Model
    from .prepare.datasets import joint_split
    from .training.distributed import is_writer

    out = check_writable(args.out, "model file")
    for path in (args.checkpoint, args.resume and Path(args.resume)):
        if path:
            check_writable(path, "checkpoint")
    if args.resume and not Path(args.resume).is_file() and is_writer():  # rank 0 reads it for all
        raise MimikaError(f"{args.resume}: no such training checkpoint (nothing to resume)")
    model = Model.load(args.init) if args.init else Model.create(args.arch, margin=args.margin, seed=args.seed)
    split = joint_split(_load_sets(args, model.config.crop), args.val_subjects, args.seed)
    model.with_labels(split.train.labels)  # the data's classes (a trained --init keeps the rows of shared ones)
    _log(split.description)
    model.config.info.update(data=", ".join(map(str, args.data)), split=split.info,
                             command="mimika " + " ".join(map(shlex.quote, sys.argv[1:])))
    train(model, split.train, split.val, _train_options(args), out=out, checkpoint=args.checkpoint or args.resume,
          resume=args.resume, log=print)
    return 0


def cmd_crossval(args) -> int:
    from .network.model import Model
    from .prepare.datasets import joined, train_val_split
    from .reports.plots import plot_confusion
    from .training.crossval import cross_validate

    spec = (Model.load(args.init) if args.init else Model.create(args.arch, margin=args.margin)).config.crop
    data, *others = _load_sets(args, spec)
    # a further set trains beside every fold by its own protocol (FER: its Training part), never tested
    beside = joined([train_val_split(s).train for s in others]) if others else None

    def make_model(labels):
        if args.init:
            return Model.load(args.init).with_labels(labels)
        return Model.create(args.arch, labels=labels, margin=args.margin, seed=args.seed)

    summary = cross_validate(data, make_model, _train_options(args), k=args.folds, seed=args.seed,
                             out_dir=args.out_dir, log=print, beside=beside)
    from .training.distributed import is_writer
    if not is_writer():
        return 0
    out = Path(args.out_dir)
    plot_confusion(summary["pooled"], out / "confusion.png",
                   title=f"{args.folds}-fold subject-independent: mean accuracy {summary['accuracy_mean']:.1%}")
    print("fold accuracy: " + " ".join(f"{a:.3f}" for a in summary["fold_accuracy"]))
    print(f"mean accuracy {summary['accuracy_mean']:.4f} (std {summary['accuracy_std']:.4f}); "
          f"pooled balanced accuracy {summary['pooled']['balanced_accuracy']:.4f}")
    print(f"reports: {out}/crossval.json, {out}/fold-N.json, {out}/confusion.png")
    return 0


def cmd_finetune(args) -> int:
    from .api import fine_tune
    from .common.fileio import check_writable
    from .network.model import Model
    from .prepare.datasets import load_class_folders

    check_writable(args.out, "model file")
    model = Model.load(args.model)
    data = load_class_folders(args.data, model.config.crop, crop=args.crop)
    for s in data.skipped:
        _log(f"skipped {s}")
    _log(_summary(args.data, data))
    fine_tune(model, data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
              out=args.out, log=print, device=args.device, augment=args.augment, keep=args.keep)
    print(f"saved {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from .common.progress import set_quiet
    from .network.predictor import load_predictor
    from .prepare.datasets import evaluation_set
    from .reports.evaluation import evaluate, format_report

    if args.confusion:
        from .reports.plots import require_matplotlib
        require_matplotlib("--confusion", args.confusion)
    set_quiet(args.json)
    model = load_predictor(args.model, device=args.device)
    model = _apply_test_time(model, args.tta, args.prior)
    if args.held_out_by and args.split != "heldout":
        raise MimikaError("--held-out-by goes with --split heldout")
    owner = load_predictor(args.held_out_by) if args.held_out_by else model
    data = evaluation_set(_load_data(args, model.config.crop), args.split, owner.config.info,
                          str(args.held_out_by or args.model))
    if args.known_classes:
        data, left_out = data.known_to(model.labels)
        if left_out:
            _log("left out, classes the model does not know: " + ", ".join(f"{n} ({c})" for n, c in left_out.items()))
    rep = evaluate(model, data, device=args.device, data_classes_only=args.data_classes_only)
    if args.confusion:
        from .reports.plots import plot_confusion
        plot_confusion(rep, args.confusion)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


def cmd_models(args) -> int:
    from .network.config import DEFAULT_MODEL, shipped_models
    from .network.predictor import load_predictor
    for name in sorted(shipped_models()):
        m = load_predictor(name)
        flag = " (default)" if name == DEFAULT_MODEL else ""
        variant = f" ({name.split('.')[0]}'s weights, exact)" if "." in name else ""
        priors = f", prior {m.config.prior}" + (" (--prior balanced available)" if m.config.class_prior else "")
        print(f"{name}{flag}: {m.config.arch}, {m.config.crop.width}x{m.config.crop.height}, "
              f"{m.config.precision}{variant}, labels {', '.join(m.labels)}{priors}")
        if args.verbose:
            print(f"  {m.path} ({m.path.stat().st_size / 1e6:.1f} MB), runs on {m.provider}")
    if args.verbose:
        from .network.predictor import provider_summary
        print(provider_summary())
    return 0


def cmd_merge(args) -> int:
    import io

    from .common.fileio import write_text
    from .recognition.parallel import merge
    out = io.StringIO() if args.out else sys.stdout
    n = merge(args.outputs, out, sort=args.sort)
    if args.out:
        write_text(args.out, out.getvalue())
    _log(f"merged {n} records from {len(args.outputs)} files" + (f" into {args.out}" if args.out else ""))
    return 0


def cmd_calibrate(args) -> int:
    from .network.config import resolve_model_path
    from .network.predictor import load_predictor
    from .prepare.datasets import evaluation_set, training_faces
    from .training.calibration import calibrate

    if args.split.lower().replace("_", "") in ("privatetest", "test", "all"):
        raise MimikaError(f"--split {args.split}: calibration is fitted on validation faces, never on a test split")
    path = resolve_model_path(args.model, prefer=(".onnx", ".npz"))
    model = load_predictor(path)
    data = _load_data(args, model.config.crop)
    val = evaluation_set(data, args.split, model.config.info, str(path)).relabel(model.labels)
    train = training_faces(data, model.config.info, str(path)).relabel(model.labels)
    f = calibrate(path, val.faces, val.y, train.y, model)
    print(f"{path}: temperature {f.temperature:.4f}; calibration error (ECE) on {args.split} ({len(val)} faces): "
          f"{f.ece_before:.4f} -> {f.ece_after:.4f}")
    print(f"{path}: balance {f.balance:g} for --prior balanced (training shares of {len(train)} faces: "
          + ", ".join(f"{n} {p:.3f}" for n, p in zip(model.labels, f.class_prior)) + f"); on {args.split}: "
          f"accuracy {f.accuracy[0]:.4f} -> {f.accuracy[1]:.4f}, balanced accuracy "
          f"{f.balanced_accuracy[0]:.4f} -> {f.balanced_accuracy[1]:.4f}")
    return 0


def cmd_serve(args) -> int:
    from .serve import main as serve
    return serve(args)


def cmd_configure(args) -> int:
    from dataclasses import replace

    from .network.export import update_model_config
    from .network.predictor import load_predictor
    path = Path(args.model)
    if (args.tta is not None or args.margin is not None) and path.suffix != ".npz":
        raise MimikaError(f"{path}: --tta and --margin rewrite a .npz model file (export it again afterwards)")
    model = load_predictor(path)
    fields = {}
    if args.fitted_from:
        source = load_predictor(args.fitted_from).config
        if source.labels != model.labels:
            raise MimikaError(f"{args.fitted_from}: other labels than {path}: not a file of the same weights")
        fields.update(temperature=source.temperature, class_prior=source.class_prior, balance=source.balance)
    if args.temperature is not None:
        fields["temperature"] = args.temperature
    if args.prior is not None:
        fields["prior"] = args.prior
    if args.tta is not None:
        fields["tta"] = tta_mode(args.tta)
    if args.margin is not None:
        fields["crop"] = replace(model.config.crop, margin=args.margin)
    if not fields:
        raise MimikaError("nothing to change: give --tta, --margin, --temperature, --fitted-from or --prior")
    c = update_model_config(path, model, **fields)
    print(f"{path}: tta {c.tta or 'none'}, margin {c.crop.margin}, temperature {c.temperature:g}, prior {c.prior}"
          + (f" (balance {c.balance:g})" if c.class_prior else ""))
    return 0


def cmd_export(args) -> int:
    from .network.export import calibration_faces, export_onnx
    from .network.model import Model
    if args.calibration and not args.int8:
        raise MimikaError("--calibration is for --int8 exports")
    if args.int8 and not args.calibration:
        raise MimikaError("--int8 needs --calibration DATA (a few hundred real faces, e.g. the training set)")
    model = Model.load(args.model)
    if not args.int8:
        print(f"wrote {export_onnx(model, args.out, half=not args.float32)}")
        return _check_export(args, model)
    faces, source = calibration_faces(args.calibration, model.config.crop, args.calibration_faces, log=_log)
    print(f"wrote {export_onnx(model, args.out, quantize=True, calibration=faces, calibration_source=source)} "
          f"(INT8, calibrated on {source})")
    return _check_export(args, model)


def _check_export(args, model) -> int:
    if args.device:
        from .network.export import check_export
        diff, provider, device = check_export(model, args.out, args.device)
        print(f"checked {args.out}: ONNX Runtime ({provider}) against PyTorch ({device}) on faces of the bundled "
              f"photo: largest probability difference {diff:.2e}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .common.progress import set_quiet
    set_quiet(any(getattr(args, k, False) for k in ("json", "jsonl", "csv")))
    try:
        if getattr(args, "nproc", None) is not None:  # a training command: launch torchrun, or join its run
            from .training.distributed import enter
            code = enter(args.nproc, args.device, sys.argv[1:] if argv is None else list(argv),
                         getattr(args, "checkpoint", None) or getattr(args, "resume", None))
            if code is not None:
                return code
        return globals()[f"cmd_{args.command}"](args)
    except MimikaError as e:
        print(f"mimika: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        print(f"mimika: error: `mimika {args.command}` {NEEDS_TORCH}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mimika: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141


if __name__ == "__main__":
    sys.exit(main())
