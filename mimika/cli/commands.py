"""The handlers of the `mimika` commands: each maps its arguments onto the API (`mimika.api`,
`mimika.data`, the recognition wing) and prints what comes back; the decisions are made there.
Everything heavy is imported inside the handler that needs it, so `mimika --help` stays fast and
prediction never loads PyTorch."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import fields
from pathlib import Path

from ..common.choices import MODEL_SETTING, OUTPUT_FORMATS, TABLE, tta_mode
from ..common.errors import MimikaError


def _log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def _train_options(args):
    from ..training.options import TrainOptions
    return TrainOptions(**{f.name: getattr(args, f.name) for f in fields(TrainOptions) if hasattr(args, f.name)})


def _apply_test_time(model, tta: str, prior: str = MODEL_SETTING):
    """The model with the command line's test-time choices over the model file's own; a prior it
    cannot give is one line before any work."""
    from ..network.config import with_settings
    changes = {**({"tta": tta_mode(tta)} if tta != MODEL_SETTING else {}),
               **({"prior": prior} if prior != MODEL_SETTING else {})}
    try:
        return with_settings(model, **changes) if changes else model
    except MimikaError as e:
        raise MimikaError(f"{getattr(model, 'path', 'the model')}: --prior {prior}: {e}") from None


def _set_options(args) -> dict:
    """The --data flags of how a set is read, as `mimika.data.load_set` takes them."""
    from ..prepare.detection import PRESETS
    return dict(crop=args.crop, labels=args.labels, detector=PRESETS[args.detector],
                with_neutral=getattr(args, "with_neutral", False), log=_log)


def _one_set(args, spec):
    from ..data import load_set
    return load_set(args.data, spec, **_set_options(args))


def _sets(args, spec) -> list:
    from ..data import load_sets
    return load_sets(args.data, spec, **_set_options(args))


def cmd_predict(args) -> int:
    from ..common.sessions import set_verbose as sessions_verbose
    from ..prepare.detection import get_detector
    from ..prepare.images import set_verbose
    from ..recognition.parallel import predict, shard
    from ..recognition.recognizer import Recognizer, expand_inputs
    from ..recognition.results import BatchOutcome, ResultWriter

    set_verbose(args.verbose)
    sessions_verbose(args.verbose)
    timeline = None
    if args.timeline:
        from ..reports.plots import Timeline, require_matplotlib
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
    writer = ResultWriter(next((f for f in OUTPUT_FORMATS if getattr(args, f)), TABLE), recognizer.model.labels)
    outcome = BatchOutcome()
    closed = None  # standard output closed by its reader (`| head`): the side outputs asked for are still made

    def show(write, *what) -> None:
        nonlocal closed
        if closed is None:
            try:
                write(*what)
            except BrokenPipeError as e:
                if not (timeline or args.annotate):
                    raise
                closed = e

    for res in predict(recognizer, sources, args.workers, every=args.every, annotate=args.annotate,
                       smoothing=args.smooth, draw_landmarks=args.landmarks):
        outcome.add(res)
        if timeline:
            timeline.add(res)
        show(writer.write, res)
    show(writer.close)
    if outcome.failed:
        _log(f"mimika: {len(outcome.failed)} of {len(sources)} input(s) could not be read" + ":" * (not args.verbose))
        for r in outcome.failed:
            _log(f"  {r.error}")
    if args.annotate and outcome.done:
        _log(f"annotated copies written below {args.annotate}/")
    if timeline:
        for path in timeline.save():
            _log(f"timeline written to {path}")
    if closed is not None:
        raise closed  # ends as a closed pipe does, now that everything else is written
    return 1 if outcome.nothing_done else 0


def cmd_train(args) -> int:
    from ..api import check_run_files, starting_model, train
    from ..prepare.datasets import joint_split

    out = check_run_files(args.out, args.checkpoint, args.resume)
    model = starting_model(args.init, args.arch, args.margin, seed=args.seed, input_size=args.input_size)
    split = joint_split(_sets(args, model.config.crop), args.val_subjects, args.seed)
    model.with_labels(split.train.labels)  # the data's classes (a trained --init keeps the rows of shared ones)
    _log(split.description)
    model.config.info.update(data=", ".join(map(str, args.data)), split=split.info,
                             command="mimika " + " ".join(map(shlex.quote, sys.argv[1:])))
    train(model, split.train, split.val, _train_options(args), out=out, checkpoint=args.checkpoint,
          resume=args.resume, log=print)
    return 0


def cmd_crossval(args) -> int:
    from ..api import starting_model
    from ..prepare.datasets import joined, train_val_split
    from ..reports.plots import plot_confusion
    from ..training.crossval import cross_validate
    from ..training.distributed import is_writer

    data, *others = _sets(args, starting_model(args.init, args.arch, args.margin,
                                               input_size=args.input_size).config.crop)
    # a further set trains beside every fold by its own protocol (FER: its Training part), never tested
    beside = joined([train_val_split(s).train for s in others]) if others else None

    def make_model(labels):
        return starting_model(args.init, args.arch, args.margin, seed=args.seed, labels=labels,
                              input_size=args.input_size)

    summary = cross_validate(data, make_model, _train_options(args), k=args.folds, seed=args.seed,
                             out_dir=args.out_dir, log=print, beside=beside)
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
    from ..api import fine_tune
    from ..common.fileio import check_writable
    from ..data import summary
    from ..network.model import Model
    from ..prepare.datasets import load_class_folders

    check_writable(args.out, "model file")
    model = Model.load(args.model)
    data = load_class_folders(args.data, model.config.crop, crop=args.crop)
    for s in data.skipped:
        _log(f"skipped {s}")
    _log(summary(args.data, data))
    fine_tune(model, data, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
              out=args.out, log=print, device=args.device, augment=args.augment, keep=args.keep)
    print(f"saved {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    from ..common.progress import set_quiet
    from ..network.predictor import load_predictor
    from ..prepare.datasets import evaluation_set
    from ..reports.evaluation import evaluate, format_report

    if args.confusion:
        from ..reports.plots import require_matplotlib
        require_matplotlib("--confusion", args.confusion)
    set_quiet(args.json)
    model = load_predictor(args.model, device=args.device)
    model = _apply_test_time(model, args.tta, args.prior)
    if args.held_out_by and args.split != "heldout":
        raise MimikaError("--held-out-by goes with --split heldout")
    owner = load_predictor(args.held_out_by) if args.held_out_by else model
    data = evaluation_set(_one_set(args, model.config.crop), args.split, owner.config.info,
                          str(args.held_out_by or args.model))
    if args.known_classes:
        data, left_out = data.known_to(model.labels)
        if left_out:
            _log("left out, classes the model does not know: " + ", ".join(f"{n} ({c})" for n, c in left_out.items()))
    rep = evaluate(model, data, device=args.device, data_classes_only=args.data_classes_only)
    if args.confusion:
        from ..reports.plots import plot_confusion
        plot_confusion(rep, args.confusion)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0


def cmd_models(args) -> int:
    from ..network.config import DEFAULT_MODEL, shipped_models
    from ..network.predictor import load_predictor
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
        from ..network.predictor import provider_summary
        print(provider_summary())
    return 0


def cmd_merge(args) -> int:
    import io

    from ..common.fileio import write_text
    from ..recognition.parallel import merge
    out = io.StringIO() if args.out else sys.stdout
    n = merge(args.outputs, out, sort=args.sort)
    if args.out:
        write_text(args.out, out.getvalue())
    _log(f"merged {n} records from {len(args.outputs)} files" + (f" into {args.out}" if args.out else ""))
    return 0


def cmd_calibrate(args) -> int:
    from ..api import calibrate
    from ..network.predictor import load_predictor
    from ..prepare.datasets import joined
    from ..training.calibration import validation_split

    validation_split(args.split)  # refused before the model and the data are read
    model = load_predictor(args.model)
    run = calibrate(args.model, joined(_sets(args, model.config.crop)), args.split, predictor=model)
    f, path, labels = run.fitted, run.path, model.labels
    print(f"{path}: temperature {f.temperature:.4f}; calibration error (ECE) on {args.split} ({run.validation_faces} "
          f"faces): {f.ece_before:.4f} -> {f.ece_after:.4f}")
    shares = "class shares as its training drew them" if run.drawn_shares else \
        f"training shares of {run.training_faces} faces"
    print(f"{path}: balance {f.balance:g} for --prior balanced ({shares}: "
          + ", ".join(f"{n} {p:.3f}" for n, p in zip(labels, f.class_prior)) + f"); on {args.split}: "
          f"accuracy {f.accuracy[0]:.4f} -> {f.accuracy[1]:.4f}, balanced accuracy "
          f"{f.balanced_accuracy[0]:.4f} -> {f.balanced_accuracy[1]:.4f}")
    return 0


def cmd_serve(args) -> int:
    from ..serve import main as serve
    return serve(args)


def cmd_configure(args) -> int:
    from ..api import configure
    c = configure(args.model, tta=args.tta, margin=args.margin, temperature=args.temperature, prior=args.prior,
                  fitted_from=args.fitted_from)
    print(f"{Path(args.model)}: tta {c.tta or 'none'}, margin {c.crop.margin}, temperature {c.temperature:g}, "
          f"prior {c.prior}" + (f" (balance {c.balance:g})" if c.class_prior else ""))
    return 0


def cmd_export(args) -> int:
    from ..api import export
    done = export(args.model, args.out, float32=args.float32, int8=args.int8, calibration=args.calibration,
                  calibration_faces=args.calibration_faces, log=_log)
    print(f"wrote {done.path}" + (f" ({done.how})" if done.how else ""))
    if args.device:
        from ..network.export import check_export
        diff, provider, device = check_export(done.model, args.out, args.device)
        print(f"checked {args.out}: ONNX Runtime ({provider}) against PyTorch ({device}) on faces of the bundled "
              f"photo: largest probability difference {diff:.2e}")
    return 0


def cmd_interpolate(args) -> int:
    from ..api import interpolate
    out = interpolate(args.start, args.tuned, args.weight, args.out)
    print(f"wrote {out} ({1 - args.weight:g} x {args.start} + {args.weight:g} x {args.tuned})")
    return 0
