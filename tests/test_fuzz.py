"""Fuzzing (issue #9, items 13-19): seeded hostile input must never break mimika.

Over 2,000 mutated images (JPEG, PNG, BMP, TIFF, WebP, GIF, PGM) go through
`Recognizer.get_files` in batches with good files mixed in; crafted bombs and special files
(FIFO, folder, symlink loop, devices) through `get_files` and `recognize`; 300 mutated model
files (.npz and .onnx) through `load_predictor` and a `Recognizer`; malformed FER / FER+ / CK+
sets through `load_dataset`. Each case runs in a child process with a time limit and an
address-space limit (tests/fuzzing.py), so a hang or a crash fails a test instead of
blocking or killing the run. Training is killed with SIGKILL (also while a checkpoint is
being written) and resumed; a full disk must give one clear line and keep the checkpoint.

The seed is fixed (MIMIKA_FUZZ_SEED overrides it); `bench/fuzz.py` runs the long campaigns.
"""

from __future__ import annotations

import os
from pathlib import Path

import fuzzing as F
import numpy as np
import pytest

SEED = int(os.environ.get("MIMIKA_FUZZ_SEED", "20240917"))
N_IMAGES = 2100
N_MODELS = 300
MODEL_FILES = ("ferplus.npz", "seed.npz", "ferplus.onnx", "ferplus.float.onnx", "seed.onnx")


def explain(tally: F.Tally, statuses=F.FAILURES, limit: int = 12) -> str:
    bad = tally.failures(statuses)
    counts = {s: sum(o.status == s for o in bad) for s in statuses}
    head = f"{len(bad)} of {len(tally.outcomes)} {tally.category} cases: " + \
        ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    return "\n".join([head] + ["  " + o.line()[:300] for o in bad[:limit]])


def explain_unclear(tally: F.Tally, limit: int = 8) -> str:
    bad = [o for o in tally.outcomes if o.unclear]
    return "\n".join([f"{len(bad)} errors are not one line naming the file:"]
                     + ["  " + o.line()[:300] for o in bad[:limit]])


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def worker(folder):
    with F.Worker(mem_limit=3 * F.GiB, init={"op": "init"}, env={"MIMIKA_CACHE": str(folder / "cache")},
                  log=folder / "worker.log") as w:
        yield w


@pytest.fixture(scope="module")
def good_files(folder) -> list[Path]:
    return [p for p, _ in F.write_samples(F.good_images(), folder / "good")]


@pytest.fixture(scope="module")
def reference(worker, good_files) -> dict:
    """Each good file's faces, alone."""
    return F.reference_results(worker, good_files)


@pytest.fixture(scope="module")
def image_tally(worker, folder, good_files, reference) -> F.Tally:
    rng = np.random.default_rng(SEED)
    bad = F.write_samples(F.mutated_images(F.good_images(), N_IMAGES, rng), folder / "mutated")
    tally = F.Tally("mutated images, batches of 50")
    F.run_image_batches(worker, bad, good_files, tally, rng, batch_size=50, good_per_batch=12, timeout=120,
                        single_timeout=30, reference=reference)
    return tally


@pytest.fixture(scope="module")
def hostile_tally(worker, folder, good_files, reference) -> F.Tally:
    rng = np.random.default_rng(SEED + 1)
    hostile = F.write_samples(F.hostile_images(big=False), folder / "hostile")
    special = [(p, F.Sample(p.name, p.suffix[1:], b"", desc)) for p, desc in F.make_special_files(folder / "special")]
    tally = F.Tally("crafted and special files")
    F.run_image_batches(worker, hostile, good_files, tally, rng, batch_size=18, good_per_batch=6, timeout=120,
                        single_timeout=30, reference=reference)
    F.run_single_files(worker, special, tally, op="files", timeout=5)
    F.run_single_files(worker, special, tally, op="recognize", timeout=5)
    F.run_single_files(worker, hostile[:6], tally, op="recognize", timeout=30)
    return tally


@pytest.fixture(scope="module")
def model_tally(folder, good_files) -> F.Tally:
    rng = np.random.default_rng(SEED + 2)
    files = F.shipped_model_files()
    cases = F.model_cases({k: files[k] for k in MODEL_FILES}, N_MODELS, rng)
    tally = F.Tally("mutated model files")
    images = [p for p in good_files if p.stem in ("jpeg_colour", "png_gray16")]
    with F.Worker(mem_limit=3 * F.GiB, log=folder / "model-worker.log") as w:
        F.run_model_files(w, cases, folder / "models", tally, images, timeout=60)
    return tally


@pytest.fixture(scope="module")
def dataset_tally(folder) -> F.Tally:
    rng = np.random.default_rng(SEED + 3)
    cases = F.dataset_cases(folder / "datasets", rng, n_random=12, bomb_size=1 << 30)
    tally = F.Tally("malformed datasets")
    with F.Worker(mem_limit=2 * F.GiB, log=folder / "dataset-worker.log") as w:
        F.run_dataset_api(w, cases, tally, timeout=15)
    return tally


# images -------------------------------------------------------------------------------------

def test_fuzz_covers_every_format(image_tally):
    per_format = {f: sum(o.fmt == f for o in image_tally.outcomes) for f in F.IMAGE_FORMATS}
    assert len(image_tally.outcomes) >= 2000
    assert min(per_format.values()) >= 250, per_format
    assert image_tally.good_checked >= 500


def test_mutated_images_raise_no_uncaught_exception(image_tally):
    assert not image_tally.failures(("uncaught", "memory")), explain(image_tally, ("uncaught", "memory"))


def test_mutated_images_never_crash_or_hang(image_tally):
    assert not image_tally.failures(("crash", "hang")), explain(image_tally, ("crash", "hang"))


def test_mutated_images_give_no_nan(image_tally):
    assert not image_tally.failures(("nan",)), explain(image_tally, ("nan",))


def test_good_files_keep_their_results_beside_bad_ones(image_tally):
    assert not image_tally.lost, (f"{len(image_tally.lost)} of {image_tally.good_checked} good files lost or "
                                  f"changed their result ({image_tally.extra.get('batches_failed')} batches failed, "
                                  f"{image_tally.extra.get('poisoned')} left the recognizer broken):\n  "
                                  + "\n  ".join(image_tally.lost[:10]))


def test_bad_image_errors_are_one_line_naming_the_file(image_tally):
    assert not any(o.unclear for o in image_tally.outcomes), explain_unclear(image_tally)


def test_bombs_and_special_files_give_clean_errors(hostile_tally):
    assert not hostile_tally.failures(), explain(hostile_tally, limit=40)
    assert not hostile_tally.lost, "\n".join(hostile_tally.lost[:10])
    assert not any(o.unclear for o in hostile_tally.outcomes), explain_unclear(hostile_tally)


# model files --------------------------------------------------------------------------------

def test_model_fuzz_covers_both_formats(model_tally):
    assert len(model_tally.outcomes) >= N_MODELS
    assert sum(o.fmt == "npz" for o in model_tally.outcomes) >= 100
    assert sum(o.fmt == "onnx" for o in model_tally.outcomes) >= 100


def test_mutated_models_raise_no_uncaught_exception(model_tally):
    assert not model_tally.failures(("uncaught", "memory")), explain(model_tally, ("uncaught", "memory"), 30)


def test_mutated_models_never_crash_or_hang(model_tally):
    assert not model_tally.failures(("crash", "hang")), explain(model_tally, ("crash", "hang"))


def test_mutated_models_never_give_nan_probabilities(model_tally):
    assert not model_tally.failures(("nan",)), explain(model_tally, ("nan",), 30)


def test_damaged_models_are_refused_not_silently_different(model_tally):
    assert not model_tally.failures(("changed",)), explain(model_tally, ("changed",), 40)


def test_model_errors_are_one_line(model_tally):
    assert not any(o.unclear for o in model_tally.outcomes), explain_unclear(model_tally)


# datasets -----------------------------------------------------------------------------------

def test_malformed_datasets_give_one_clear_error_in_bounded_memory(dataset_tally):
    assert len(dataset_tally.outcomes) >= 90
    assert not dataset_tally.failures(), explain(dataset_tally, limit=40)
    assert not any(o.unclear for o in dataset_tally.outcomes), explain_unclear(dataset_tally)


def test_good_datasets_still_load(dataset_tally):
    controls = [o for o in dataset_tally.outcomes if o.case.startswith("good_")]
    assert len(controls) >= 4 and all(o.status == "ok" for o in controls), [o.line() for o in controls]


# training -----------------------------------------------------------------------------------

def test_sigkilled_training_resumes_to_the_uninterrupted_weights(tmp_path):
    rep = F.sigkill_training(tmp_path, np.random.default_rng(SEED + 4), runs=1, kills_per_run=3, epochs=4,
                             n_faces=12)
    assert rep.kills >= 3 and rep.kills_during_write >= 1, rep  # the test did what it claims
    assert not rep.problems(), "\n".join(rep.problems())
    assert rep.resumed_ok == rep.runs


def test_full_disk_while_saving_is_one_clear_line_and_keeps_the_checkpoint(tmp_path):
    for case in F.full_disk(tmp_path, n_faces=12):
        assert case["status"] == "clean" and case["stderr_error_lines"] == 1, case
        assert case["previous_checkpoint_intact"] in (True, None), case
        assert not case["left_behind"], case
