"""The decisions the command line used to make alone, taken by the API and called from Python
(no CLI): which model a run starts from, where a resumed run checkpoints, which sets take the
neutral frames, what calibration may be fitted on, which settings each model file format takes,
what an export needs, and when a batch of predictions failed as a whole."""

import argparse
import shutil

import cv2
import numpy as np
import pytest
from conftest import two_class_faces

from mimika import CropSpec, MimikaError, TrainOptions, api, create_model
from mimika.common import choices
from mimika.network.config import shipped_models
from mimika.prepare.datasets import faces_from_arrays
from mimika.recognition.results import BatchOutcome, Face, ImageResult


def quiet(_):
    pass


# which model a run starts from -----------------------------------------------------------
def test_a_trained_start_brings_its_architecture_and_margin_and_a_conflict_is_one_line(tmp_path):
    init = create_model("seed", seed=0).save(tmp_path / "init.npz")
    assert api.starting_model(init, "seed", 0.0).config.arch == "seed"  # agreeing values are fine
    with pytest.raises(MimikaError, match=r"init\.npz: .*--arch vgg48 differs"):
        api.starting_model(init, arch="vgg48")
    with pytest.raises(MimikaError, match=r"--margin 0\.2 differs"):
        api.starting_model(init, margin=0.2)
    fresh = api.starting_model(arch=None, margin=None, labels=["happiness", "surprise"])
    assert (fresh.config.arch, fresh.config.crop.margin, fresh.labels) == ("seed", 0.0, ["happiness", "surprise"])
    assert api.starting_model(init, labels=["happiness", "surprise"]).labels == ["happiness", "surprise"]


# where a resumed run checkpoints ---------------------------------------------------------
def _epoch_of(checkpoint) -> int:
    from mimika.common.container import read_container
    from mimika.network.config import MODEL_FORMAT
    from mimika.training.checkpoint import WHAT
    return int(read_container(checkpoint, MODEL_FORMAT, WHAT)[0]["training"]["epoch"])


def test_a_network_with_global_pooling_takes_another_input_size_and_others_refuse(tmp_path):
    import torch
    big = api.starting_model(arch="vgg48", input_size=64)
    assert (big.config.crop.width, big.config.crop.height) == (64, 64)
    assert big.net(torch.zeros(2, 1, 64, 64)).shape == (2, len(big.labels))
    big.save(tmp_path / "big.npz")
    again = api.starting_model(tmp_path / "big.npz", input_size=80)  # a trained model goes on at another size
    assert again.config.crop.width == 80 and api.starting_model(tmp_path / "big.npz").config.crop.width == 64
    with pytest.raises(MimikaError, match="--input-size 64: the seed network takes 96x96 faces only"):
        api.starting_model(arch="seed", input_size=64)


def test_a_resumed_run_goes_on_checkpointing_to_the_file_it_resumed_from(tmp_path, astronaut_face):
    faces, codes = two_class_faces(astronaut_face, n=8)
    data = faces_from_arrays(faces[:, None], codes, CropSpec(96, 96), crop="whole")
    ckpt = tmp_path / "run.ckpt.npz"
    opts = dict(batch_size=8, seed=0)
    api.train(create_model("seed", labels=data.labels, seed=0), data, options=TrainOptions(epochs=1, **opts),
              checkpoint=ckpt, log=quiet)
    assert _epoch_of(ckpt) == 1
    api.train(create_model("seed", labels=data.labels, seed=0), data, options=TrainOptions(epochs=2, **opts),
              resume=ckpt, log=quiet)  # no checkpoint given
    assert _epoch_of(ckpt) == 2
    assert api.checkpoint_of(None, ckpt) == ckpt and api.checkpoint_of(tmp_path / "other", ckpt) == tmp_path / "other"


def test_the_files_of_a_run_are_checked_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MimikaError, match="model file"):
        api.check_run_files(blocker / "model.npz")
    with pytest.raises(MimikaError, match="no such training checkpoint"):
        api.check_run_files(tmp_path / "m.npz", resume=tmp_path / "missing.ckpt.npz")
    assert api.check_run_files(tmp_path / "m.npz", tmp_path / "c.ckpt.npz") == tmp_path / "m.npz"


# which sets take the neutral frames ------------------------------------------------------
def test_neutral_frames_go_to_the_ckplus_sets_of_several_and_to_a_lone_set(ckplus_tree, astronaut_face, tmp_path):
    assert api.neutral_frames(["ckplus"], True) == [True]
    assert api.neutral_frames(["ferplus", "ckplus", "folders"], True) == [False, True, False]
    assert api.neutral_frames(["ckplus", "folders"], False) == [False, False]
    folders = tmp_path / "mine"
    for name in ("happiness", "surprise"):
        (folders / name).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(folders / name / f"s{i}.png"), np.roll(astronaut_face, 2 * i, axis=1))
    spec = CropSpec(96, 96)
    ck, mine = api.load_sets([ckplus_tree, folders], spec, crop="whole", with_neutral=True, log=quiet)
    assert "neutral" in ck.labels and "neutral" not in mine.labels
    with pytest.raises(MimikaError, match="CK\\+ option"):  # a lone set of another layout refuses it
        api.load_sets(folders, spec, crop="whole", with_neutral=True, log=quiet)
    with pytest.raises(MimikaError, match="--labels names the Emotion tree of one"):
        api.load_sets([ckplus_tree, folders], spec, labels=ckplus_tree / "Emotion", log=quiet)


# what calibration may be fitted on -------------------------------------------------------
@pytest.mark.parametrize("split", ["PrivateTest", "test", "private_test", "Private-Test", "all", "ALL"])
def test_calibration_refuses_every_spelling_of_a_test_split(split):
    from mimika.training.calibration import validation_split
    with pytest.raises(MimikaError, match="never on a test split"):
        validation_split(split)
    with pytest.raises(MimikaError, match="never on a test split"):  # before it reads the model or the data
        api.calibrate("no-such-model.onnx", None, split)


def test_calibration_takes_validation_splits(tmp_path):
    from mimika.training.calibration import validation_split
    assert [validation_split(s) for s in ("PublicTest", "val", "heldout")] == ["PublicTest", "val", "heldout"]


# which settings each model file format takes ---------------------------------------------
def test_configure_rewrites_an_onnx_file_only_with_what_calibration_fits(tmp_path):
    onnx = shutil.copy(shipped_models()["seed"][".onnx"], tmp_path / "seed.onnx")
    for setting in api.NPZ_ONLY_SETTINGS:
        with pytest.raises(MimikaError, match="rewrite a .npz model file"):
            api.configure(onnx, **{setting: "flip" if setting == "tta" else 0.1})
    with pytest.raises(MimikaError, match="nothing to change"):
        api.configure(onnx)
    assert api.configure(onnx, temperature=0.5).temperature == 0.5
    npz = shutil.copy(shipped_models()["seed"][".npz"], tmp_path / "seed.npz")
    c = api.configure(npz, tta="flip", margin=0.1)
    assert (c.tta, c.crop.margin) == ("flip", 0.1)


# what an export needs --------------------------------------------------------------------
def test_export_refuses_int8_without_calibration_faces_and_calibration_without_int8(tmp_path):
    with pytest.raises(MimikaError, match="--int8 needs --calibration"):
        api.export("seed", tmp_path / "o.onnx", int8=True)
    with pytest.raises(MimikaError, match="--calibration is for --int8"):
        api.export("seed", tmp_path / "o.onnx", calibration="faces.csv")
    done = api.export("seed", tmp_path / "o.onnx")
    assert done.path == tmp_path / "o.onnx" and done.path.is_file() and done.how == ""


# when a batch failed as a whole ----------------------------------------------------------
def test_a_batch_fails_only_when_nothing_could_be_done():
    face = Face((0, 0, 10, 10), {"happiness": 1.0})
    ok, bad = ImageResult("a.jpg", [face]), ImageResult("b.jpg", error="b.jpg: not an image")
    frame, cut = ImageResult("v.mp4", [face], frame=0, time=0.0), ImageResult("v.mp4", error="v.mp4: cut short")

    def outcome(results):
        tally = BatchOutcome()
        for r in results:
            assert tally.add(r) is r
        return tally
    assert outcome([bad, ImageResult("c.png", error="c.png: empty")]).nothing_done
    assert not outcome([ok, bad]).nothing_done
    # a video read in part, then cut short, beside a bad image: as many errors as inputs, yet work was done
    partial = outcome([frame, cut, bad])
    assert not partial.nothing_done and partial.done == 1 and partial.failed == [cut, bad]
    assert not outcome([]).nothing_done


# the choice lists, written once ----------------------------------------------------------
def test_the_command_line_and_the_service_offer_the_lists_of_choices_py():
    from mimika.cli import _parser
    from mimika.serve import engine, inputs
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    offered = {(cmd, a.dest): tuple(a.choices) for cmd, p in sub.items() for a in p._actions if a.choices}
    assert offered[("predict", "crop")] == offered[("finetune", "crop")] == choices.CROP_MODES
    assert offered[("train", "crop")] == offered[("evaluate", "crop")] == choices.DATASET_CROP_MODES
    assert offered[("predict", "tta")] == offered[("evaluate", "tta")] == choices.TTA_CHOICES
    assert offered[("predict", "prior")] == choices.PRIOR_CHOICES and offered[("configure", "prior")] == choices.PRIORS
    assert offered[("configure", "tta")] == choices.TTA_NAMES and offered[("evaluate", "device")] == choices.DEVICES
    assert (engine.TTA_CHOICES, engine.PRIOR_CHOICES) == (choices.TTA_CHOICES, choices.PRIOR_CHOICES)
    with pytest.raises(inputs.RequestError, match="must be one of model, none, flip, shift"):
        inputs.parse_options({"tta": "mirror"})


def test_the_detector_help_quotes_each_presets_own_face_size(monkeypatch):
    from dataclasses import replace

    from mimika.cli import _parser
    from mimika.prepare import detection
    assert set(detection.PRESET_NOTES) == set(detection.PRESETS)  # a new preset needs its few words
    monkeypatch.setitem(detection.PRESETS, "cnn-fast", replace(detection.PRESETS["cnn-fast"], min_size=44))
    predict = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["predict"]
    text = next(a.help for a in predict._actions if a.dest == "detector")
    assert "cnn-fast: fewer small faces, faster, faces from 44 px" in text
    for name, preset in detection.PRESETS.items():
        assert f"{name}: " in text and f"faces from {preset.min_size} px" in text
