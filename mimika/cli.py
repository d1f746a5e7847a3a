"""The `mimika` command: a thin layer over the Python API."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from pathlib import Path

from .errors import MimikaError


def _detector_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("face detection (OpenCV Haar cascade)")
    g.add_argument("--detector", default="default",
                   help="preset: default (faces >= 40 px), thorough (>= 30 px: group photos, slower), "
                   "fast (>= 48 px), baseline (the thesis' OpenCV defaults)")
    g.add_argument("--cascade", help="cascade XML: a file OpenCV ships (e.g. haarcascade_frontalface_alt.xml) "
                   "or a path")
    g.add_argument("--scale-factor", type=float, help="image pyramid step")
    g.add_argument("--min-neighbors", type=int, help="detections needed to keep a face")
    g.add_argument("--min-face", type=int, help="smallest face side in pixels")
    g.add_argument("--downscale", type=float, help="detect on the image shrunk by this factor")


def _tta_arg(p: argparse.ArgumentParser, note: str = "") -> None:
    p.add_argument("--tta", choices=["model", "none", "flip"], default="model",
                   help=f"test-time augmentation (default: what the model file says){note}")


def _apply_tta(model, args) -> None:
    if args.tta != "model":
        model.config.tta = "" if args.tta == "none" else args.tta


def _detector(args):
    from .detection import get_detector
    return get_detector(args.detector, scale_factor=args.scale_factor, min_neighbors=args.min_neighbors,
                        min_size=args.min_face, downscale=args.downscale, cascade=args.cascade)


def _train_args(p: argparse.ArgumentParser) -> None:
    """The training recipe, shared by train and crossval."""
    p.add_argument("--arch", default="seed", help="architecture (default: seed, the original CNN)")
    p.add_argument("--epochs", type=int, help="number of epochs (default: until the loss settles)")
    p.add_argument("--max-epochs", type=int, default=100, help="bound when training until converged")
    p.add_argument("--tol", type=float, default=1e-4, help="converged when the loss moves less than this")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--crop", choices=["auto", "detect", "whole"], default="auto",
                   help="detect the face in each image, or use the whole image (auto: detect on CK+)")
    p.add_argument("--margin", type=float, default=0.0,
                   help="crop margin around detected face boxes, as a fraction of the box side (new models)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                   help="bf16 autocast (default: the architecture's measured choice)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    p.add_argument("--warmup-epochs", type=int, default=0)
    p.add_argument("--augment", action="store_true", help="random shifts, scales, rotations, flips, erasing")
    p.add_argument("--soft-labels", action="store_true", help="train on FER+ vote distributions")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mimika", description="Facial expression recognition.")
    parser.add_argument("--version", action="version", version="mimika 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="recognize the expressions of every face in images")
    p.add_argument("images", nargs="+", help="image or video files, or folders of them")
    p.add_argument("--every", type=int, default=1, metavar="N", help="videos: analyse every N-th frame")
    p.add_argument("--model", help="shipped model name or model file (default: the shipped default)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--csv", action="store_true", help="print CSV: one row per face (file, box, label, scores)")
    p.add_argument("--annotate", metavar="DIR", help="write a copy of each image with boxes and labels to DIR")
    _tta_arg(p, " (none: twice the faces per second)")
    _detector_args(p)

    t = sub.add_parser("train", help="train a model on a labelled face set")
    t.add_argument("--data", required=True, help="CK+ folder (image and Emotion trees) or class folders")
    t.add_argument("--labels", help="CK+ label tree, when --data is the image tree alone")
    _train_args(t)
    t.add_argument("--init", help="start from this trained model instead of an untrained network")
    t.add_argument("--out", default="model.npz", help="model file to write (default model.npz)")
    t.add_argument("--val-subjects", type=float, default=0.0, metavar="FRACTION",
                   help="hold out this fraction of the subjects for validation (e.g. 0.2)")
    t.add_argument("--checkpoint", help="save a resumable checkpoint here after every epoch")
    t.add_argument("--resume", help="continue the run saved in this checkpoint")
    t.add_argument("--keep-best", action="store_true", help="end with the epoch of best validation accuracy")
    t.add_argument("--half", action="store_true", help="store the weights as float16 (half the size)")

    c = sub.add_parser("crossval", help="subject-independent k-fold cross-validation")
    c.add_argument("--data", required=True, help="a set with subject ids (CK+ folder, CK+48 class folders)")
    c.add_argument("--labels", help="CK+ label tree, when --data is the image tree alone")
    c.add_argument("--folds", type=int, default=10)
    c.add_argument("--out-dir", required=True, help="folder for fold-N.json, crossval.json, confusion.png")
    c.add_argument("--init", help="start every fold from this trained model (its head fitted to the data's "
                                  "classes) instead of an untrained network")
    _train_args(c)

    f = sub.add_parser("finetune", help="continue training a model on your own labelled faces")
    f.add_argument("--model", help="model to start from (default: the shipped default)")
    f.add_argument("--data", required=True, help="folder of class folders: DATA/<emotion or code>/<images>")
    f.add_argument("--out", required=True, help="model file to write")
    f.add_argument("--epochs", type=int, default=10)
    f.add_argument("--lr", type=float, default=0.001)
    f.add_argument("--crop", choices=["detect", "whole"], default="detect")
    f.add_argument("--seed", type=int, default=0)

    e = sub.add_parser("evaluate", help="score a model on a labelled face set")
    e.add_argument("--model", help="shipped model name or model file")
    e.add_argument("--data", required=True, help="CK+ folder or class folders")
    e.add_argument("--labels", help="CK+ label tree, when --data is the image tree alone")
    e.add_argument("--split", default="all",
                   help="all; heldout (the subjects the model's training held out, recorded in the model); "
                        "or a dataset split: Training, PublicTest, PrivateTest")
    e.add_argument("--crop", choices=["auto", "detect", "whole"], default="auto")
    _tta_arg(e)
    e.add_argument("--json", action="store_true")
    e.add_argument("--confusion", metavar="PNG", help="write the confusion matrix as a PNG")

    sub.add_parser("models", help="list the shipped models")

    g = sub.add_parser("configure", help="change how a trained model is used (rewrites its .npz)")
    g.add_argument("model", help="model file (.npz)")
    g.add_argument("--tta", choices=["none", "flip"], help="test-time augmentation")
    g.add_argument("--margin", type=float, help="crop margin around detected face boxes")

    x = sub.add_parser("export", help="write a trained model as ONNX for prediction without PyTorch")
    x.add_argument("model", help="model file (.npz) or shipped model name")
    x.add_argument("out", help="ONNX file to write")
    x.add_argument("--float32", action="store_true", help="keep every weight float32 (default: float16 "
                   "where that is exact)")
    x.add_argument("--int8", action="store_true", help="quantize to INT8 (about 3x faster on CPU; "
                   "measure its accuracy again); needs --calibration")
    x.add_argument("--calibration", metavar="DATA", help="labelled faces to calibrate INT8 ranges on (any "
                   "--data format; its Training split when it has one)")
    x.add_argument("--calibration-faces", type=int, default=1024, help="faces drawn from DATA (seed 0)")
    return parser


def _log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def cmd_predict(args) -> int:
    from .recognition import Recognizer, expand_inputs

    recognizer = Recognizer(args.model, _detector(args))
    _apply_tta(recognizer.model, args)
    files = expand_inputs(args.images)
    if not files:
        raise MimikaError(f"{' '.join(args.images)}: no images found")
    results, failed, n_inputs = [], [], 0
    for res in _recognize_inputs(recognizer, files, args):
        results.append(res)
        if res.error:
            failed.append(res)
        if args.csv:
            write_csv_rows(res, recognizer.model.labels, header=len(results) == 1)
        elif not args.json:
            print(format_result(res), flush=True)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    if failed:
        _log(f"mimika: {len(failed)} of {len(files)} input(s) could not be read:")
        for r in failed:
            _log(f"  {r.error}")
    if args.annotate and len(failed) < len(files):
        _log(f"annotated copies written to {args.annotate}/")
    return 1 if len(failed) == len(files) else 0


def _recognize_inputs(recognizer, files, args):
    """Results for images (batched together) and videos (frame by frame), in input order."""
    from .annotate import draw_faces, write_image
    from .recognition import ImageResult
    from .video import is_video

    images: list[Path] = []
    for f in files + [None]:
        if f is None or is_video(f):
            for res in recognizer.get_files(images):
                if res.error is None and args.annotate:
                    try:
                        write_image(Path(args.annotate) / (Path(res.file).stem + ".png"),
                                    draw_faces(res.file, res.faces))
                    except MimikaError as err:
                        res.error = str(err)
                yield res
            images = []
        else:
            images.append(f)
        if f is not None and is_video(f):
            try:
                yield from _video_results(recognizer, f, args)
            except MimikaError as err:
                yield ImageResult(str(f), error=str(err))


def _video_results(recognizer, path: Path, args):
    from .annotate import draw_faces, video_writer
    from .video import video_fps

    with contextlib.ExitStack() as stack:
        writer = None
        for res in recognizer.get_video(path, args.every, keep_frames=bool(args.annotate)):
            if args.annotate and res.image is not None:
                canvas = draw_faces(res.image[:, :, ::-1] if res.image.ndim == 3 else res.image, res.faces)
                if writer is None:
                    writer = stack.enter_context(video_writer(Path(args.annotate) / (path.stem + ".mp4"),
                                                              video_fps(path) / args.every, canvas.shape[1::-1]))
                writer.write(canvas)
            res.image = None
            yield res


def write_csv_rows(res, labels: list[str], header: bool) -> None:
    import csv
    w = csv.writer(sys.stdout, lineterminator="\n")
    if header:
        w.writerow(["file", "face", "x", "y", "w", "h", "label", "score", *labels])
    for i, face in enumerate(res.faces, 1):
        w.writerow([res.file, i, *face.box, face.label, f"{face.score:.6f}",
                    *(f"{face.scores[name]:.6f}" for name in labels)])
    sys.stdout.flush()


def format_result(res) -> str:
    if res.error:
        return f"ERROR {res.error}"
    n = len(res.faces)
    lines = [f"{res.file}: {n} face{'s' if n != 1 else ''}"]
    for i, face in enumerate(res.faces, 1):
        box = "box " + ",".join(str(v) for v in face.box)
        for j, (label, p) in enumerate(face.scores.items()):
            head = f"  face {i}  {box:<22}" if j == 0 else " " * 32
            lines.append(f"{head}{label:<11}{p:6.3f}  {'#' * round(p * 20)}")
    return "\n".join(lines)


def _load_data(args, spec):
    from .datasets import load_dataset
    data = load_dataset(args.data, spec, crop=args.crop, labeldir=getattr(args, "labels", None), log=_log)
    for s in data.skipped:
        _log(f"skipped {s}")
    for note in data.notes:
        _log(note)
    return data


def cmd_train(args) -> int:
    from .api import train
    from .model import Model
    from .plots import plot_history
    from .fileio import write_text
    from .training import evaluate_loss, history_json

    model = Model.load(args.init) if args.init else Model.create(args.arch, margin=args.margin, seed=args.seed)
    data = _load_data(args, model.config.crop)
    model.with_labels(data.labels)  # the data's classes (a trained --init keeps the rows of shared ones)
    _log(f"{args.data}: {len(data)} faces, {len(set(data.subjects.tolist()) - {''}) or 'unknown'} subjects; "
         + ", ".join(f"{k} {v}" for k, v in data.class_counts().items()))
    val = None
    info = {"data": str(args.data), "command": "mimika " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    if data.splits is not None and not args.val_subjects:
        data, val = data.split("Training"), data.split("PublicTest")
        info["split"] = {"train": "Training", "val": "PublicTest"}
        _log(f"protocol: training on Training ({len(data)} faces), validating on PublicTest ({len(val)} faces); "
             "PrivateTest is not touched")
    elif args.val_subjects:
        from .datasets.base import held_out_subjects
        held = held_out_subjects(data.subjects, args.val_subjects, args.seed)
        data, val = data.with_subjects(held, keep=False), data.with_subjects(held)
        info["split"] = {"val_fraction": args.val_subjects, "seed": args.seed, "val_subjects": held}
        _log(f"validation: {len(val)} faces of {len(held)} held-out subjects; training: {len(data)} faces")
    model.config.info.update(info)
    opts = _options(args)
    t0 = time.perf_counter()
    history = train(model, data, val, opts, out=None, checkpoint=args.checkpoint or args.resume,
                    resume=args.resume, log=print)
    model.config.info["training"]["seconds_this_session"] = round(time.perf_counter() - t0, 1)
    out = model.save(args.out, dtype="float16" if args.half else "float32")
    hist = [h.__dict__ for h in history]
    stem = out.with_suffix("")
    write_text(f"{stem}.history.json", history_json(history))
    plot_history(hist, f"{stem}.history.png")
    print(f"saved {out} (history: {stem}.history.json, {stem}.history.png)")
    if val is not None and history:
        final = evaluate_loss(model, val.relabel(model.labels))[1]
        print(f"validation accuracy of the saved weights {final:.4f} ({len(val)} faces)")
    return 0


def _options(args):
    from .training import TrainOptions
    return TrainOptions(epochs=args.epochs, max_epochs=args.max_epochs, tol=args.tol, batch_size=args.batch_size,
                        lr=args.lr, momentum=args.momentum, seed=args.seed, channels_last=args.channels_last,
                        bf16=args.bf16, weight_decay=args.weight_decay, label_smoothing=args.label_smoothing,
                        schedule=args.schedule, warmup_epochs=args.warmup_epochs, augment=args.augment,
                        soft_labels=args.soft_labels, keep_best=getattr(args, "keep_best", False))


def cmd_crossval(args) -> int:
    from .crossval import cross_validate
    from .model import Model
    from .plots import plot_confusion

    spec = (Model.load(args.init) if args.init else Model.create(args.arch, margin=args.margin)).config.crop
    data = _load_data(args, spec)
    labels = data.labels

    def make_model():
        if args.init:
            return Model.load(args.init).with_labels(labels)
        return Model.create(args.arch, labels=labels, margin=args.margin, seed=args.seed)

    summary = cross_validate(data, make_model, _options(args), k=args.folds, seed=args.seed,
                             out_dir=args.out_dir, log=print)
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
    from .datasets import load_class_folders
    from .model import Model

    model = Model.load(args.model)
    data = load_class_folders(args.data, model.config.crop, crop=args.crop)
    for s in data.skipped:
        _log(f"skipped {s}")
    _log(f"{args.data}: {len(data)} faces; " + ", ".join(f"{k} {v}" for k, v in data.class_counts().items()))
    fine_tune(model, data, epochs=args.epochs, lr=args.lr, seed=args.seed, out=args.out, log=print)
    print(f"saved {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate, format_report
    from .progress import set_quiet
    from .runtime import load_predictor

    set_quiet(args.json)
    model = load_predictor(args.model)
    _apply_tta(model, args)
    data = _load_data(args, model.config.crop)
    if args.split == "heldout":
        held = model.config.info.get("split", {}).get("val_subjects")
        if not held:
            raise MimikaError(f"{args.model}: the model records no held-out subjects (trained without --val-subjects)")
        data = data.with_subjects(held)
        if len(data) == 0:
            raise MimikaError(f"{args.data}: none of the model's held-out subjects are in this data")
    elif args.split != "all":
        data = data.split(args.split)
    rep = evaluate(model, data)
    if args.confusion:
        from .plots import plot_confusion
        plot_confusion(rep, args.confusion)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


def cmd_models(args) -> int:
    from .config import DEFAULT_MODEL, shipped_models
    from .runtime import load_predictor
    for name in sorted(shipped_models()):
        m = load_predictor(name)
        flag = " (default)" if name == DEFAULT_MODEL else ""
        variant = f" ({name.split('.')[0]}'s weights, exact)" if "." in name else ""
        print(f"{name}{flag}: {m.config.arch}, {m.config.crop.width}x{m.config.crop.height}, "
              f"{m.config.precision}{variant}, "
              f"labels {', '.join(m.labels)}")
    return 0


def cmd_configure(args) -> int:
    from dataclasses import replace

    from .model import Model
    from .modelfile import read_npz
    path = Path(args.model)
    if path.suffix != ".npz":
        raise MimikaError(f"{path}: configure rewrites a .npz model file (export it again afterwards)")
    meta, arrays = read_npz(path)
    model = Model.from_file_contents(path, meta, arrays)
    if args.tta is not None:
        model.config.tta = "" if args.tta == "none" else args.tta
    if args.margin is not None:
        model.config.crop = replace(model.config.crop, margin=args.margin)
    half = all(v.dtype == "float16" for k, v in arrays.items() if k.startswith("param/") and v.dtype.kind == "f")
    model.save(path, dtype="float16" if half else "float32")
    print(f"{path}: tta {model.config.tta or 'none'}, margin {model.config.crop.margin}")
    return 0


def cmd_export(args) -> int:
    from .export import export_onnx
    from .model import Model
    model = Model.load(args.model)
    if not args.int8:
        if args.calibration:
            raise MimikaError("--calibration is for --int8 exports")
        print(f"wrote {export_onnx(model, args.out, half=not args.float32)}")
        return 0
    if not args.calibration:
        raise MimikaError("--int8 needs --calibration DATA (a few hundred real faces, e.g. the training set)")
    from .export import calibration_faces
    faces, source = calibration_faces(args.calibration, model.config.crop, args.calibration_faces, log=_log)
    out = export_onnx(model, args.out, quantize=True, calibration=faces, calibration_source=source)
    print(f"wrote {out} (INT8, calibrated on {source})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .progress import set_quiet
    set_quiet(getattr(args, "json", False) or getattr(args, "csv", False))
    handler = {"predict": cmd_predict, "train": cmd_train, "finetune": cmd_finetune,
               "evaluate": cmd_evaluate, "models": cmd_models, "crossval": cmd_crossval,
               "export": cmd_export, "configure": cmd_configure}[args.command]
    try:
        return handler(args)
    except MimikaError as e:
        print(f"mimika: error: {e}", file=sys.stderr)
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
