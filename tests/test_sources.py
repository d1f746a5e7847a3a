"""The sets from other cameras and people (issue #28): ExpW-, Taiwanese- and one-class-layout folders
made from the astronaut photo, their fixed splits, and the sampling that balances sets and classes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mimika.cli import main
from mimika.common.errors import MimikaError
from mimika.prepare.crop import CropSpec
from mimika.prepare.datasets import LAYOUTS, joined, load_dataset
from mimika.prepare.datasets.faceset import fixed_split
from mimika.prepare.detection import PRESETS
from mimika.training.sampling import draw_weights, drawn_class_shares, epoch_order

SPEC = CropSpec(48, 48)
CNN = PRESETS["cnn"]


@pytest.fixture
def face_bgr(astronaut_bgr) -> np.ndarray:
    """The astronaut's head and shoulders, 160 x 160, colour."""
    return cv2.resize(astronaut_bgr[20:300, 120:400], (160, 160), interpolation=cv2.INTER_AREA)


def _write(path, image) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


@pytest.fixture
def expw_root(tmp_path, face_bgr):
    """An ExpW-layout folder: crops of two faces side by side (a bright one, a dark one), the annotated
    box naming one of them; two photos hold two faces each; one crop is a copy of another."""
    root = tmp_path / "expw"
    bright, dark = face_bgr, (face_bgr * 0.35).astype(np.uint8)
    rows = ["image,source_image,face_id,label,left,top,width,height,confidence"]
    pair = np.hstack([bright, dark])
    for i in range(12):
        label = ["happiness", "surprise", "neutral"][i % 3]
        photo = f"{label}_photo_{i // 2}.jpg"
        name = f"{label}/{photo[:-4]}_f{i % 2}.jpg"
        _write(root / name, pair)
        box = (30, 28, 60, 60) if i % 2 == 0 else (193, 30, 56, 56)  # the bright face, or the dark one
        rows.append(f"{name},{photo},{i % 2},{label},{','.join(map(str, box))},9.9")
    _write(root / "neutral/copy_f0.jpg", pair)  # the same bytes as neutral/neutral_photo_1_f0.jpg...
    (root / "neutral/copy_f0.jpg").write_bytes((root / "neutral/neutral_photo_1_f0.jpg").read_bytes())
    rows.append("neutral/copy_f0.jpg,copy.jpg,0,neutral,30,28,60,60,9.9")
    blank = np.full((160, 320, 3), 128, np.uint8)  # no face anywhere: the annotated box is cropped
    _write(root / "anger/blank_f0.jpg", blank)
    rows.append("anger/blank_f0.jpg,blank.jpg,0,anger,100,40,60,60,1.0")
    (root / "faces.csv").write_text("\n".join(rows) + "\n")
    return root


def test_expw_takes_the_detected_face_that_the_annotated_box_names(expw_root):
    data = load_dataset(expw_root, SPEC, detector=CNN, use_cache=False)
    assert data.labels == ["neutral", "anger", "happiness", "surprise"] and len(data) == 14
    mean = data.faces.reshape(len(data), -1).mean(axis=1)
    names = [s.rsplit("/", 1)[-1] for s in data.sources]
    bright = [m for n, m in zip(names, mean) if n.endswith("_f0.jpg") and not n.startswith("blank")]
    dark = [m for n, m in zip(names, mean) if n.endswith("_f1.jpg")]
    assert min(bright) > 2 * max(dark)  # each crop is the face its box names, not its neighbour
    assert np.ptp(data.faces[names.index("blank_f0.jpg")]) < 10  # no face found: its box, a blank patch
    assert any("no face detected in 1 of 14" in n for n in data.notes)
    assert set(data.origins) == {"expw"} and set(data.splits) <= {"Training", "PublicTest", "PrivateTest"}
    part = dict(zip(names, data.splits))
    for i in range(0, 12, 2):  # the two faces of a photo are on one side
        label = ["happiness", "surprise", "neutral"][i % 3]
        assert part[f"{label}_photo_{i // 2}_f0.jpg"] == part[f"{['happiness', 'surprise', 'neutral'][(i + 1) % 3]}"
                                                             f"_photo_{i // 2}_f1.jpg"]
    assert part["copy_f0.jpg"] == part["neutral_photo_1_f0.jpg"]  # identical crops: one side


@pytest.mark.parametrize("row, message", [
    ("happiness/a.jpg,a.jpg,0,glee,1,1,5,5,1", "line 2: unknown label 'glee'"),
    ("happiness/a.jpg,a.jpg,0,happiness,1,1,five,5,1", "line 2: the box must be four whole numbers"),
    ("happiness/a.jpg,a.jpg,0,happiness,1,1,0,5,1", "line 2: the box has no area"),
])
def test_a_bad_expw_row_is_one_line_naming_it(tmp_path, row, message):
    (tmp_path / "happiness").mkdir()
    (tmp_path / "faces.csv").write_text("image,source_image,face_id,label,left,top,width,height,confidence\n"
                                        + row + "\n")
    with pytest.raises(MimikaError, match=message):
        load_dataset(tmp_path, SPEC, use_cache=False)


@pytest.fixture
def taiwanese_root(tmp_path, face_bgr):
    """A Taiwanese-corpus folder: 7 performers, each with a happy and a surprised face; votes given."""
    root = tmp_path / "tw"
    rows = ["image,subject,performance,view,label,votes_happiness,votes_surprise,votes_neutral"]
    for s in range(1, 8):
        for label, votes in (("happiness", "0.7,0.2,0.3"), ("surprise", "0.1,0.5,0.0")):
            name = f"{label}/{s:02d}{'b' if label == 'happiness' else 'g'}.jpg"
            image = np.roll(face_bgr, s, axis=1) if label == "happiness" else face_bgr[::-1].copy()
            _write(root / name, image)
            rows.append(f"{name},{s:02d},facs,front,{label},{votes}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_taiwanese_faces_carry_their_performer_and_the_observers_votes(taiwanese_root):
    data = load_dataset(taiwanese_root, SPEC, detector=CNN, use_cache=False)
    assert [layout.name for layout in LAYOUTS if layout.probe(taiwanese_root, None)][0] == "taiwanese"
    assert data.labels == ["neutral", "happiness", "surprise"] and len(data) == 14
    assert np.allclose(data.soft.sum(axis=1), 1)  # each row's shares normalised
    happy = data.y == data.labels.index("happiness")
    assert np.allclose(data.soft[happy][0], np.array([0.3, 0.7, 0.2]) / 1.2)  # neutral, happiness, surprise
    assert sorted(set(data.subjects)) == [f"{s:02d}" for s in range(1, 8)]
    for s in set(data.subjects):  # a performer is on one side only
        assert len(set(data.splits[data.subjects == s])) == 1
    assert list(data.splits).count("PrivateTest") == 2 * round(0.3 * 7)


def test_a_one_class_folder_has_a_fixed_split_that_keeps_copies_together(tmp_path, face_bgr):
    root = tmp_path / "contempt_extra"
    for i in range(20):
        _write(root / "contempt" / f"{i}.png", np.roll(face_bgr, i, axis=0))
    (root / "contempt" / "copy.png").write_bytes((root / "contempt" / "3.png").read_bytes())
    data = load_dataset(root, SPEC, crop="whole", use_cache=False)
    assert [layout.name for layout in LAYOUTS if layout.probe(root, None)][0] == "one-class"
    assert data.labels == ["contempt"] and set(data.origins) == {"contempt_extra"}
    part = {s.rsplit("/", 1)[-1]: p for s, p in zip(data.sources, data.splits)}
    assert part["copy.png"] == part["3.png"] and list(data.splits).count("PrivateTest") == round(0.2 * 20)
    (root / "happiness").mkdir()
    assert [layout.name for layout in LAYOUTS if layout.probe(root, None)][0] == "folders"  # two classes: a user's


def test_the_fixed_split_depends_on_the_names_only():
    groups = [f"S{i:03d}" for i in range(40)]
    split = fixed_split(groups, groups, val=0.15, test=0.3, salt="x")
    assert (split == "PrivateTest").sum() == 12 and (split == "PublicTest").sum() == 6
    again = fixed_split(groups[::-1][:25], groups, val=0.15, test=0.3, salt="x")  # a subset, in another order
    assert list(again) == list(split[::-1][:25])
    assert list(fixed_split(groups, groups, 0.15, 0.3, "y")) != list(split)  # another set's salt: another order
    with pytest.raises(MimikaError, match="outside the set's listing"):
        fixed_split(["S999"], groups, 0.15, 0.3, "x")


def test_ckplus_has_a_fixed_split_by_subject_with_or_without_its_neutral_frames(ckplus_tree):
    peaks = load_dataset(ckplus_tree, SPEC, use_cache=False)
    every = load_dataset(ckplus_tree, SPEC, use_cache=False, with_neutral=True)
    part = dict(zip(every.subjects, every.splits))
    assert all(part[s] == p for s, p in zip(peaks.subjects, peaks.splits))
    for s in set(every.subjects):
        assert len(set(every.splits[every.subjects == s])) == 1


def test_sampling_weights_by_hand():
    origins = np.array(["a"] * 6 + ["b"] * 2)
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    assert np.allclose(draw_weights(origins, y, 0, 0), 1 / 8)  # as the faces come
    w = draw_weights(origins, y, 1, 1)  # a holds 2 of the 3 classes, b 1: a 2/3, b 1/3; a's classes equal
    assert np.allclose(w[:4], 1 / 3 / 4) and np.allclose(w[4:6], 1 / 3 / 2) and np.allclose(w[6:], 1 / 3 / 2)
    w = draw_weights(origins, y, 0.5, 0)  # a: sqrt(6) sqrt(2/3) = 2, b: sqrt(2) sqrt(1/3); within a by count
    share_a = 2 / (2 + np.sqrt(2 / 3))
    assert np.isclose(w[:6].sum(), share_a) and np.allclose(w[:6], share_a / 6)
    assert np.allclose(drawn_class_shares(draw_weights(origins, y, 1, 1), y, 4), [1 / 3, 1 / 3, 1 / 3, 0])
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    order = epoch_order(rng_a, w, 8)
    assert len(order) == 8 and list(order) == list(epoch_order(rng_b, w, 8))
    assert sorted(epoch_order(np.random.default_rng(0), None, 8)) == list(range(8))  # unweighted: a permutation


def test_a_balanced_joint_run_records_what_it_draws_and_resumes_exactly(expw_root, taiwanese_root, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    from mimika.network.model import Model
    common = ["train", "--data", str(expw_root), "--data", str(taiwanese_root), "--detector", "cnn", "--arch",
              "vgg48", "--batch-size", "8", "--soft-labels", "--augment", "--source-balance", "0.5",
              "--class-balance", "1"]
    assert main(common + ["--epochs", "2", "--out", str(tmp_path / "whole.npz")]) == 0
    assert main(common + ["--epochs", "1", "--out", str(tmp_path / "half.npz"), "--checkpoint",
                          str(tmp_path / "run.ckpt.npz")]) == 0
    assert main(common + ["--epochs", "2", "--out", str(tmp_path / "resumed.npz"), "--resume",
                          str(tmp_path / "run.ckpt.npz")]) == 0
    whole, resumed = Model.load(tmp_path / "whole.npz"), Model.load(tmp_path / "resumed.npz")
    for (k, a), b in zip(whole.net.state_dict().items(), resumed.net.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), k
    shares = whole.config.info["training"]["class_shares"]
    assert len(shares) == len(whole.labels) and np.isclose(sum(shares), 1)
    data = joined([load_dataset(expw_root, SPEC, detector=CNN), load_dataset(taiwanese_root, SPEC, detector=CNN)])
    train = data.split("Training")
    expected = drawn_class_shares(draw_weights(train.origins, train.relabel(whole.labels).y, 0.5, 1),
                                  train.relabel(whole.labels).y, len(whole.labels))
    assert np.allclose(shares, expected, atol=1e-6)
    json.dumps(whole.config.info)  # the record stays plain JSON


def test_calibrating_a_balanced_run_uses_the_class_shares_it_drew(astronaut_face, tmp_path):
    """The prior `mimika calibrate` stores for --prior balanced is what the network learned: the
    shares the run drew, not the shares of the faces it held; fitted on the validation faces of
    every set given."""
    from conftest import variants

    from mimika.api import calibrate, create_model, train
    from mimika.prepare.datasets import FaceSet
    from mimika.training.options import TrainOptions

    def one_set(name, n_happy, n_surprise, seed):
        faces = [cv2.resize(f, (48, 48), interpolation=cv2.INTER_AREA)
                 for f in variants(astronaut_face, n_happy, seed) + [v[::-1] for v in variants(astronaut_face,
                                                                                               n_surprise, seed + 1)]]
        n = n_happy + n_surprise
        splits = np.array((["Training", "PublicTest"] * n)[:n])
        return FaceSet(np.stack(faces), np.array([0] * n_happy + [1] * n_surprise), ["happiness", "surprise"],
                       np.full(n, ""), [f"{name}{i}" for i in range(n)], splits=splits,
                       origins=np.full(n, name))
    data = joined([one_set("a", 90, 10, 0), one_set("b", 20, 20, 5)])
    model = create_model("vgg48", labels=["happiness", "surprise"])
    model.config.info["split"] = {"train": "Training", "val": "PublicTest"}  # as `mimika train` records it
    train(model, data.split("Training"), None, TrainOptions(epochs=1, batch_size=16, source_balance=1,
                                                            class_balance=1), out=tmp_path / "m.npz", log=lambda s: 0)
    run = calibrate(tmp_path / "m.npz", data)
    assert run.drawn_shares and run.validation_faces == 70
    assert np.allclose(run.fitted.class_prior, [0.5, 0.5], atol=1e-6)  # every class of every set equally often
    assert run.training_faces == 70 and np.mean(data.split("Training").y == 0) > 0.7  # the faces held: mostly happy


def test_teachers_answer_only_the_faces_of_the_sets_named(astronaut_face, tmp_path):
    """--teacher-sets: the starting model keeps answering the faces of the set it learned, the other
    sets' faces are learned from their labels alone."""
    import torch
    from conftest import variants

    from mimika.api import create_model
    from mimika.prepare.datasets import FaceSet
    from mimika.training.loop import Trainer
    from mimika.training.options import TrainOptions

    faces = np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_AREA) for f in variants(astronaut_face, 8, 0)])
    data = FaceSet(faces, np.array([0, 1] * 4), ["happiness", "surprise"], np.full(8, ""),
                   [f"f{i}" for i in range(8)], origins=np.array(["ferplus"] * 4 + ["expw"] * 4))
    create_model("vgg48", labels=["happiness", "surprise"], seed=1).save(tmp_path / "teacher.npz")
    student = create_model("vgg48", labels=["happiness", "surprise"], seed=2)
    trainer = Trainer(student, data, options=TrainOptions(teacher=str(tmp_path / "teacher.npz"), teacher_weight=0.5,
                                                         teacher_sets="ferplus"), log=lambda s: 0)
    x = student.to_input(data.faces)
    y = torch.from_numpy(data.y)
    targets = trainer.distilled(x, y, False, trainer.taught).numpy()
    one_hot = np.eye(2)[data.y]
    assert np.allclose(targets[4:], one_hot[4:])  # expw: its labels
    assert not np.allclose(targets[:4], one_hot[:4]) and np.allclose(targets.sum(1), 1)  # ferplus: half the teacher's
    with pytest.raises(MimikaError, match="no training set is named ckplus"):
        Trainer(student, data, options=TrainOptions(teacher=str(tmp_path / "teacher.npz"), teacher_sets="ckplus"))
