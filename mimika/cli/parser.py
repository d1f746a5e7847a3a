"""The `mimika` command's arguments: one builder per command (its handler is `commands.cmd_NAME`).
Choice lists come from `common/choices.py`, the detectors' descriptions from their presets, the
training flags from `TrainOptions`: nothing here is written a second time."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..common.choices import (
    CROP_MODES,
    DATASET_CROP_MODES,
    DEVICES,
    MODEL_SETTING,
    OUTPUT_FORMATS,
    PRIOR_CHOICES,
    PRIORS,
    TTA_CHOICES,
    TTA_NAMES,
)
from ..common.container import UNCHECKED_ENV
from ..common.errors import MimikaError

TTA_HELP = ("test-time augmentation: the logits of several views of each face averaged (flip: the face and its "
            "mirror image, 2x the time; shift: both, also moved 2 pixels of 48 each way, 10x)")
OUTPUT_HELP = {"json": "print one JSON list of per-file results at the end",
               "jsonl": "print one JSON object per file as it is done",
               "csv": "print CSV: a row per face (and per file without one)"}


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


def _shard(text: str):
    from ..recognition.parallel import parse_shard
    try:
        return parse_shard(text)
    except MimikaError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# shared groups of flags ----------------------------------------------------------------------
def _command(sub, name: str, help: str, examples: list[str], loads_models: bool = True) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, formatter_class=_Help,
                       epilog="examples:\n" + "\n".join(f"  {e}" for e in examples))
    if loads_models:
        p.add_argument("--allow-unchecked", action="store_true", help="load model files that carry no checksum "
                       f"(older exports and format-1 .npz files), with a warning; as {UNCHECKED_ENV}=1")
    return p


def _add_train_options(p, only: list[str] | None = None, exclude: tuple = (), **defaults) -> None:
    """Flags derived from `TrainOptions`: name, type, range, default and help written once, in options.py."""
    from ..training.options import TrainOptions
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


def _data_args(p, several: str = "") -> None:
    """--data and how its faces are found; `several`: what repeating --data means (it may repeat)."""
    from ..prepare.detection import DATASET_DETECTOR, PRESETS
    sets = "fer2013.csv(.gz), fer2013new.csv, a CK+ folder or class folders"
    if several:
        p.add_argument("--data", required=True, action="append", help=f"{sets}; {several}")
    else:
        p.add_argument("--data", required=True, help=sets)
    p.add_argument("--labels", help="CK+ Emotion tree, when --data is the image tree alone")
    p.add_argument("--crop", choices=DATASET_CROP_MODES, default=DATASET_CROP_MODES[0],
                   help="find the face in each image, or take the whole image (auto: detect on CK+ frames)")
    p.add_argument("--detector", default=DATASET_DETECTOR, choices=list(PRESETS), help="the detector that "
                   "finds the faces of a set cropped by detection: the fixed one every published figure used, or "
                   "the one prediction uses (cnn: aligned crops, as a user's photos are read)")


def _photo_crop_arg(p, help: str) -> None:
    p.add_argument("--crop", choices=CROP_MODES, default=CROP_MODES[0], help=help)


def _start_args(p, arch_help: str, init_help: str) -> None:
    """Where a run starts: a new network (--arch, --margin) or a trained model (--init, which brings
    its own: `api.starting_model`)."""
    p.add_argument("--arch", help=f"{arch_help}: seed (the original CNN, the default), vgg48 or vgg48w; --init "
                   "brings its own")
    p.add_argument("--init", help=init_help)
    p.add_argument("--margin", type=MARGIN, help="crop margin around face boxes, a fraction of the box side "
                   "(0, the default; --init brings its own)")
    p.add_argument("--input-size", type=_number(int, 16, 256), metavar="N", help="faces of N x N pixels instead of "
                   "the architecture's own (vgg48, vgg48w: their weights take any size, a trained --init's too)")


def _test_time_args(p) -> None:
    p.add_argument("--tta", choices=TTA_CHOICES, default=MODEL_SETTING,
                   help=f"{TTA_HELP} (model: what the model file says)")
    p.add_argument("--prior", choices=PRIOR_CHOICES, default=MODEL_SETTING,
                   help="how common the answers assume each emotion is: training (as in the training photos: "
                   "best on web photos like them), balanced (all equally: best on posed faces and other "
                   "cameras, see docs/cross-domain.md), model (what the model file says)")


def _nproc_arg(p) -> None:
    p.add_argument("--nproc", type=POSITIVE, default=1, metavar="N", help="train in N processes on this machine "
                   "(torchrun + DistributedDataParallel; --batch-size stays the global batch; see docs/scale.md)")


def _device_arg(p, default, help: str) -> None:
    p.add_argument("--device", choices=DEVICES, default=default, help=help)


# one builder per command ---------------------------------------------------------------------
def _predict(sub) -> None:
    p = _command(sub, "predict", "recognize the expressions of every face in images and videos",
                 ["mimika predict photo.jpg", "mimika predict photos/ clip.mp4 --csv > faces.csv",
                  "cat photo.jpg | mimika predict - --json", "mimika predict photos/ --annotate out/ --landmarks",
                  "mimika predict interview.mp4 --every 5 --csv --smooth 0.5 --timeline emotions.png",
                  "mimika predict photos/ --detector haar   # the original Haar cascade"])
    p.add_argument("images", nargs="+", help="image or video files, folders of them, or - for standard input")
    p.add_argument("--model", help="shipped model name or model file (default: the shipped default model)")
    fmt = p.add_mutually_exclusive_group()
    for name in OUTPUT_FORMATS:
        fmt.add_argument(f"--{name}", action="store_true", help=OUTPUT_HELP[name])
    p.add_argument("--annotate", metavar="DIR", help="write annotated copies below DIR, named like the inputs")
    p.add_argument("--workers", type=POSITIVE, default=1, metavar="N", help="run N processes, each with its own "
                   "model and cores/N threads (output in input order)")
    p.add_argument("--shard", type=_shard, metavar="K/N", help="take only shard K of N of the inputs (a stable hash "
                   "of each name): N jobs cover every input once; join their outputs with mimika merge")
    p.add_argument("--every", type=POSITIVE, default=1, metavar="N", help="videos: analyse every N-th frame")
    _photo_crop_arg(p, "whole: each image is one face (pre-cropped faces), no detection")
    p.add_argument("--verbose", action="store_true", help="show the image decoders' and ONNX Runtime's own messages")
    _test_time_args(p)
    v = p.add_argument_group("videos and annotated copies")
    v.add_argument("--landmarks", action="store_true", help="draw each face's eyes, nose and mouth on annotated copies")
    v.add_argument("--smooth", type=_number(float, 0.0, 0.99), default=0.0, metavar="A",
                   help="videos: average each tracked face's probabilities over time (weight A of the past)")
    v.add_argument("--timeline", metavar="PNG", help="videos: plot each tracked face's emotions over time (needs "
                   "matplotlib)")
    g = p.add_argument_group("face detection (every setting overrides the preset's)")
    from ..prepare.detection import DEFAULT_DETECTOR, PRESETS, describe_presets
    g.add_argument("--detector", default=DEFAULT_DETECTOR, choices=list(PRESETS), help=describe_presets())
    g.add_argument("--no-align", dest="align", action="store_false", help="crop the detector's box, not the face "
                   "aligned by its landmarks")
    g.add_argument("--min-face", type=POSITIVE, help="smallest face side in pixels")
    g.add_argument("--cascade", help="Haar: cascade XML, a file OpenCV ships (haarcascade_frontalface_alt.xml) "
                   "or a path")
    g.add_argument("--scale-factor", type=_number(float, 1.0, low_open=True), help="Haar: image pyramid step (> 1)")
    g.add_argument("--min-neighbors", type=_number(int, 0), help="Haar: detections needed to keep a face")
    g.add_argument("--downscale", type=_number(float, 1.0),
                   help="Haar: detect on the image shrunk by this factor (>= 1)")


def _train(sub) -> None:
    t = _command(sub, "train", "train a model on a labelled face set",
                 ["mimika train --data ../shared/data/ckplus --val-subjects 0.2 --out model.npz "
                  "--checkpoint run.ckpt.npz",
                  "mimika train --data ../shared/data/ckplus --val-subjects 0.2 --out model.npz --resume run.ckpt.npz",
                  "mimika train --data fer2013new.csv --arch vgg48 --epochs 40 --soft-labels --augment --out fer.npz",
                  "mimika train --data fer2013new.csv --data ../shared/data/ckplus --with-neutral --detector cnn "
                  "--val-subjects 0.2 --init ferplus.npz --epochs 6 --soft-labels --augment --out joint.npz"])
    _data_args(t, several="repeat it to train on several sets at once, each split by its own protocol "
               "(FER by Usage, others by --val-subjects)")
    t.add_argument("--with-neutral", action="store_true", help="CK+ sets: add each sequence's first frame as neutral")
    _start_args(t, "architecture", "start from this trained model instead of an untrained network")
    t.add_argument("--out", default="model.npz", help="model file to write")
    t.add_argument("--val-subjects", type=_number(float, 0.0, 1.0), default=0.0, metavar="FRACTION",
                   help="hold out this fraction of the subjects for validation (0: the data's own split, if any)")
    t.add_argument("--checkpoint", help="save a resumable checkpoint here after every epoch")
    t.add_argument("--resume", help="continue the run saved in this checkpoint (and go on saving there unless "
                   "--checkpoint names another file)")
    _nproc_arg(t)
    _add_train_options(t)


def _crossval(sub) -> None:
    c = _command(sub, "crossval", "subject-independent k-fold cross-validation",
                 ["mimika crossval --data ../shared/data/ckplus --folds 10 --out-dir runs/ck10",
                  "mimika crossval --data ckplus48/ --init ferplus.npz --epochs 15 --out-dir runs/ck48",
                  "mimika crossval --data ../shared/data/ckplus --data fer2013new.csv --init ferplus.npz --epochs 6 "
                  "--soft-labels --detector cnn --out-dir runs/ck-joint   # FER+ trains beside every fold"])
    _data_args(c, several="repeat it to train beside every fold on further sets (their training part by their "
                          "own protocol; FER: Training), the folds and all tests drawn from the first set")
    c.add_argument("--with-neutral", action="store_true", help="CK+ sets: add each sequence's first frame as neutral "
                   "(folded with its subject: an 8-class cross-validation)")
    _start_args(c, "architecture of the untrained network of each fold",
                "start every fold from this trained model (head fitted to the data's classes)")
    c.add_argument("--folds", type=_number(int, 2), default=10, help="number of folds (subjects split evenly)")
    c.add_argument("--out-dir", required=True, help="folder for fold-N.json, crossval.json, confusion.png")
    _nproc_arg(c)
    _add_train_options(c, exclude=("keep_best", "half"))  # folds have no validation set, and save no model


def _finetune(sub) -> None:
    f = _command(sub, "finetune", "continue training a model on your own labelled faces",
                 ["mimika finetune --data myfaces/ --out mine.npz   # myfaces/<emotion or CK+ code>/*.jpg",
                  "mimika finetune --model seed --data myfaces/ --epochs 5 --out mine.npz",
                  "mimika finetune --data myfaces/ --augment --keep 0.5 --out mine.npz   "
                  "# forget less of other people"])
    f.add_argument("--model", help="model to start from (default: the shipped default model)")
    f.add_argument("--data", required=True, help="class folders: DATA/<emotion or CK+ code>/<images>")
    f.add_argument("--out", required=True, help="model file to write")
    _photo_crop_arg(f, "find the face, or take the whole image")
    f.add_argument("--keep", type=_number(float, 0.0, 1.0), default=0.0, metavar="W",
                   help="the share of each target the starting model answers (its frozen copy as teacher: "
                   "learning without forgetting), so it forgets less of the faces it knew; a class it never learned is "
                   "taught by your labels alone; 0: your faces alone, "
                   "best on your people, worst on everyone else's (docs/cross-domain.md: your own camera's people)")
    _add_train_options(f, ["epochs", "lr", "batch_size", "seed", "device", "augment"], epochs=10, lr=0.001)
    _nproc_arg(f)


def _evaluate(sub) -> None:
    e = _command(sub, "evaluate", "score a model on a labelled face set",
                 ["mimika evaluate --model ferplus --data fer2013new.csv --split PrivateTest",
                  "mimika evaluate --model seed --data ../shared/data/ckplus --split heldout --confusion cm.png",
                  "mimika evaluate --model ferplus --data ../shared/data/ckplus --detector cnn --data-classes-only"])
    e.add_argument("--model", help="shipped model name or model file")
    _data_args(e)
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


def _models(sub) -> None:
    mo = _command(sub, "models", "list the shipped models", ["mimika models", "mimika models --verbose"],
                  loads_models=False)
    mo.add_argument("--verbose", action="store_true", help="also each model's file, and which ONNX Runtime "
                    "provider (CPU or CUDA) runs them")


def _merge(sub) -> None:
    mg = _command(sub, "merge", "join the CSV, JSON Lines or JSON outputs of mimika predict jobs (--shard K/N)",
                  ["mimika merge part-*.csv > all.csv", "mimika merge --sort part-*.jsonl --out all.jsonl"],
                  loads_models=False)
    mg.add_argument("outputs", nargs="+", help="outputs of mimika predict: all CSV, all JSON Lines or all JSON")
    mg.add_argument("--sort", action="store_true", help="order by file and frame, as one run over the inputs would")
    mg.add_argument("--out", help="write here (atomically) instead of to standard output")


def _calibrate(sub) -> None:
    k = _command(sub, "calibrate", "fit, on validation data, the temperature that makes a model's probabilities "
                 "honest and the balance of its answers under --prior balanced (written into the model file)",
                 ["mimika calibrate mimika/models/ferplus.onnx --data fer2013new.csv   # its PublicTest split",
                  "mimika calibrate mine.npz --data ../shared/data/ckplus --split heldout",
                  "mimika calibrate mine.onnx --data fer2013new.csv --data ../shared/data/expw --detector cnn   "
                  "# the validation parts of both"])
    k.add_argument("model", help="model file (.onnx or .npz; a shipped name means its .onnx)")
    _data_args(k, several="repeat for a model trained on several sets: the validation faces of each")
    k.add_argument("--with-neutral", action="store_true", help="CK+ sets: add each sequence's first frame as "
                   "neutral (as the model trained)")
    k.add_argument("--split", default="PublicTest", help="validation faces: PublicTest, or heldout (the subjects "
                   "the model's training held out); never a test split")


def _serve(sub) -> None:
    sv = _command(sub, "serve", "an HTTP API and a web page (photos, webcam) over the recognizer",
                  ["mimika serve", "mimika serve --workers 2 --port 8080",
                   "MIMIKA_TOKEN=... mimika serve --host 0.0.0.0   # a token when others can reach it"])
    from ..serve import add_arguments
    add_arguments(sv)


def _configure(sub) -> None:
    g = _command(sub, "configure", "change how a trained model is used (rewrites its .npz)",
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
    g.add_argument("--prior", choices=PRIORS, help="the class prior the model answers with unless told "
                   "otherwise (balanced needs the class shares `calibrate` fits)")


def _export(sub) -> None:
    x = _command(sub, "export", "write a trained model as ONNX, for prediction without PyTorch",
                 ["mimika export mine.npz mine.onnx",
                  "mimika export mine.npz mine.onnx --int8 --calibration fer2013.csv"])
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


def _interpolate(sub) -> None:
    i = _command(sub, "interpolate", "mix a fine-tuned model's weights with those of the model it started from "
                 "(WiSE-FT): some of what the start knew kept, at no cost at prediction time",
                 ["mimika interpolate mimika/models/ferplus.npz runs/tuned/model.npz --weight 0.6 --out mix.npz"])
    i.add_argument("start", help="the model the fine-tuning started from (.npz or shipped name)")
    i.add_argument("tuned", help="the fine-tuned model (.npz): its labels, crop and settings are kept")
    i.add_argument("--weight", type=_number(float, 0, 1), required=True,
                   help="the tuned model's share (1: the tuned model, 0: its start)")
    i.add_argument("--out", required=True, help="model file (.npz) to write, atomically")


#: the commands in the order `mimika --help` lists them
BUILDERS = (_predict, _train, _crossval, _finetune, _evaluate, _models, _merge, _calibrate, _serve, _configure,
            _export, _interpolate)


def build_parser() -> argparse.ArgumentParser:
    from importlib.metadata import version
    parser = argparse.ArgumentParser(prog="mimika", description="Facial expression recognition: find every face "
                                     "in images and videos and say how strongly it shows each emotion.")
    parser.add_argument("--version", action="version", version=f"mimika {version('mimika')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for build in BUILDERS:
        build(sub)
    return parser
