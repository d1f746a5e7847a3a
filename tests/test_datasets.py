"""Dataset readers (FER2013, FER+, class folders), the prepared-face cache, protocols, reports."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mimika import CropSpec, MimikaError
from mimika.cli import main
from mimika.common.metrics import report
from mimika.prepare.datasets import load_dataset
from mimika.prepare.datasets.fer2013 import ferplus_majority, load_fer2013, read_fer2013_csv
from mimika.training.crossval import subject_folds

USAGES = ["Training"] * 6 + ["PublicTest"] * 2 + ["PrivateTest"] * 2


def fer_rows(face: np.ndarray, n: int = 10):
    faces = [cv2.resize(np.rot90(face, k % 4), (48, 48), interpolation=cv2.INTER_AREA) for k in range(n)]
    return [(i % 7, " ".join(map(str, f.reshape(-1))), USAGES[i]) for i, f in enumerate(faces)], faces


@pytest.fixture
def fer_dir(tmp_path, astronaut_face):
    rows, faces = fer_rows(astronaut_face)
    text = "emotion,pixels,Usage\n" + "".join(f"{e},{p},{u}\n" for e, p, u in rows)
    (tmp_path / "fer2013.csv").write_text(text)
    votes = [  # neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF
        [10, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # neutral
        [4, 6, 0, 0, 0, 0, 0, 0, 0, 0],  # happiness
        [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # no majority: skipped
        [1, 1, 1, 0, 7, 0, 0, 0, 0, 0],  # single votes dropped: anger 7 of 7
        [0, 0, 0, 0, 0, 0, 0, 0, 6, 4],  # unknown: skipped
        [3, 0, 0, 0, 0, 0, 0, 4, 3, 0],  # contempt 4 of 10: no majority
        [0, 0, 8, 0, 0, 0, 0, 0, 0, 2],  # surprise
        [2, 0, 0, 6, 0, 0, 1, 0, 1, 0],  # sadness 6 of 8
        [0, 0, 0, 0, 0, 9, 0, 0, 1, 0],  # disgust
        [0, 0, 0, 0, 0, 0, 7, 3, 0, 0],  # fear
    ]
    head = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    (tmp_path / "fer2013new.csv").write_text(head + "".join(
        f"{USAGES[i]},fer{i:07d}.png," + ",".join(map(str, v)) + "\n" for i, v in enumerate(votes)))
    return tmp_path


def test_fer2013_plain_and_gzip(fer_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    pixels, emotion, usage = read_fer2013_csv(fer_dir / "fer2013.csv")
    assert pixels.shape == (10, 48, 48) and list(emotion) == [i % 7 for i in range(10)]
    gz = fer_dir / "copy.csv.gz"
    gz.write_bytes(gzip.compress((fer_dir / "fer2013.csv").read_bytes()))
    data = load_dataset(gz, CropSpec(48, 48))
    assert len(data) == 10 and data.labels == ["neutral", "anger", "disgust", "fear", "happiness", "sadness",
                                               "surprise"]
    assert data.labels[data.y[3]] == "happiness" and data.labels[data.y[6]] == "neutral"  # FER codes 3, 6
    assert np.array_equal(data.faces, pixels)
    assert len(data.split("PrivateTest")) == 2 and len(data.split("train")) == 6
    big = load_dataset(gz, CropSpec(96, 96))  # resized to a model's input
    assert big.faces.shape == (10, 96, 96)


def test_ferplus_majority_rule_and_soft_labels(fer_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    data = load_dataset(fer_dir / "fer2013new.csv", CropSpec(48, 48))
    names = [data.labels[i] for i in data.y]
    assert names == ["neutral", "happiness", "anger", "surprise", "sadness", "disgust", "fear"]
    assert [s.split(":")[1] for s in data.sources] == ["2", "3", "5", "8", "9", "10", "11"]
    assert len(data.labels) == 8 and data.soft.shape == (7, 8)
    assert np.allclose(data.soft.sum(1), 1) and data.soft[1, data.labels.index("happiness")] == pytest.approx(0.6)
    assert list(ferplus_majority(np.array([[0, 0, 0, 0, 0, 0, 0, 0, 10, 0]]))) == [-1]


def test_ferplus_out_of_step_and_bad_rows(fer_dir):
    lines = (fer_dir / "fer2013new.csv").read_text().splitlines()
    (fer_dir / "fer2013new.csv").write_text("\n".join(lines[:4] + [lines[4].replace("Training", "PublicTest")]
                                                      + lines[5:]) + "\n")
    with pytest.raises(MimikaError, match="line 5: .*out of step"):
        load_dataset(fer_dir / "fer2013new.csv", CropSpec(48, 48), use_cache=False)
    (fer_dir / "fer2013new.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(MimikaError, match="9 label rows but fer2013.csv has 10"):
        load_dataset(fer_dir / "fer2013new.csv", CropSpec(48, 48), use_cache=False)
    fer = (fer_dir / "fer2013.csv").read_text().splitlines()
    bad = fer[:3] + [fer[3].replace(" ", " 7 ", 1)] + fer[4:]
    (fer_dir / "fer2013.csv").write_text("\n".join(bad) + "\n")
    with pytest.raises(MimikaError, match="fer2013.csv: line 4:"):
        load_fer2013(fer_dir / "fer2013.csv")
    (fer_dir / "fer2013.csv").write_text("\n".join(fer[:2] + [fer[2].replace("0 ", "999 ", 1)] + fer[3:]) + "\n")
    with pytest.raises(MimikaError, match="line 3: grey levels outside"):
        load_fer2013(fer_dir / "fer2013.csv")
    (fer_dir / "fer2013.csv").write_text("label,pixels,Usage\n" + "\n".join(fer[1:]))
    with pytest.raises(MimikaError, match="line 1: expected the header"):
        load_fer2013(fer_dir / "fer2013.csv")


def test_cache_skips_preparation_the_second_time(ckplus_tree, tmp_path, monkeypatch):
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    import mimika.prepare.datasets.ckplus as ck
    calls = []
    real = ck.crop_files
    monkeypatch.setattr(ck, "crop_files", lambda *a, **k: calls.append(1) or real(*a, **k))
    a = load_dataset(ckplus_tree, CropSpec(96, 96))
    b = load_dataset(ckplus_tree, CropSpec(96, 96))
    assert len(calls) == 1
    assert np.array_equal(a.faces, b.faces) and list(a.subjects) == list(b.subjects) and a.sources == b.sources
    load_dataset(ckplus_tree, CropSpec(96, 96, margin=0.1))  # other settings: prepared again
    assert len(calls) == 2
    f = next(ckplus_tree.rglob("*.png"))  # data changed: prepared again
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    load_dataset(ckplus_tree, CropSpec(96, 96))
    assert len(calls) == 3


def test_subject_folds_are_disjoint_and_cover_all():
    subjects = np.array([f"S{i % 13:03d}" for i in range(100)])
    folds = subject_folds(subjects, 10, seed=0)
    flat = np.concatenate(folds)
    assert len(folds) == 10 and len(flat) == 13 and len(set(flat)) == 13
    with pytest.raises(MimikaError, match="folds need"):
        subject_folds(subjects, 20)


def test_report_metrics_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 1, 0])
    rep = report(y_true, y_pred, ["a", "b", "c"])
    assert rep["n"] == 6 and rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert rep["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert rep["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert rep["confusion"]["matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_crossval_cli_writes_reports(ckplus_tree, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "cv"
    assert main(["crossval", "--data", str(ckplus_tree), "--folds", "2", "--epochs", "1", "--out-dir", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fold 1/2" in text and "mean accuracy" in text
    summary = json.loads((out / "crossval.json").read_text())
    assert len(summary["folds"]) == 2 and summary["pooled"]["n"] == 9
    answers = {src: a for f in summary["folds"] for src, a in f["answers"].items()}
    assert len(answers) == 9 and set(answers.values()) <= set(summary["pooled"]["per_class"])
    assert main(["crossval", "--data", str(ckplus_tree), "--with-neutral", "--folds", "2", "--epochs", "1",
                 "--out-dir", str(tmp_path / "cv8")]) == 0
    with_neutral = json.loads((tmp_path / "cv8" / "crossval.json").read_text())["pooled"]
    assert with_neutral["n"] > 9 and with_neutral["per_class"]["neutral"]["support"] == with_neutral["n"] - 9
    subjects = [set(f["subjects"]) for f in summary["folds"]]
    assert not subjects[0] & subjects[1]
    assert cv2.imread(str(out / "confusion.png")) is not None and (out / "fold-2.json").exists()


def test_crossval_trains_every_fold_beside_another_set_and_tests_only_the_first(fer_dir, ckplus_tree, tmp_path,
                                                                              capsys, monkeypatch):
    """crossval --data CK+ --data FER+: FER+'s Training faces join every fold's training, the folds and
    every test face come from CK+ alone, and the models answer in the union of both sets' classes."""
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    ferplus, out = fer_dir / "fer2013new.csv", tmp_path / "cv"
    assert main(["crossval", "--data", str(ckplus_tree), "--data", str(ferplus), "--arch", "vgg48", "--folds", "2",
                 "--epochs", "1", "--soft-labels", "--out-dir", str(out)]) == 0
    fer, ck = load_dataset(ferplus, CropSpec(48, 48)), load_dataset(ckplus_tree, CropSpec(48, 48))
    summary = json.loads((out / "crossval.json").read_text())
    n_fer = len(fer.split("Training"))
    text = capsys.readouterr().out
    for fold in summary["folds"]:
        n_test = int(np.isin(ck.subjects, fold["subjects"]).sum())
        assert fold["n"] == n_test
        assert f"{len(ck) - n_test + n_fer} training faces ({n_fer} beside the folds), {n_test} test faces" in text
    assert summary["pooled"]["n"] == len(ck) and "neutral" in summary["pooled"]["per_class"]
    assert "neutral" not in ck.labels and "neutral" in fer.labels
    assert main(["crossval", "--data", str(ferplus), "--data", str(ckplus_tree), "--folds", "2", "--epochs", "1",
                 "--out-dir", str(out)]) == 2
    assert "needs a subject id for every face" in capsys.readouterr().err


def test_train_on_fer_csv_follows_the_protocol(fer_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.npz"
    assert main(["train", "--data", str(fer_dir / "fer2013.csv"), "--arch", "vgg48", "--epochs", "2",
                 "--out", str(model)]) == 0
    captured = capsys.readouterr()
    assert "training on Training (6 faces), validating on PublicTest (2 faces)" in captured.err
    assert "val acc" in captured.out
    hist = json.loads((tmp_path / "m.history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2] and (tmp_path / "m.history.png").exists()
    assert main(["evaluate", "--model", str(model), "--data", str(fer_dir / "fer2013.csv"),
                 "--split", "PrivateTest", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 2


def test_joint_training_splits_each_set_by_its_own_protocol(fer_dir, ckplus_tree, tmp_path, capsys, monkeypatch):
    """Several --data: FER+ trains on Training and validates on PublicTest, CK+ holds out subjects (asked
    for: --val-subjects, rather than its own fixed split); the model knows the union of their classes
    and records both rules, so each set's held-out faces are found again and none of them trained."""
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    from mimika import Model
    from mimika.prepare.datasets import joint_split, training_faces
    ferplus, spec = fer_dir / "fer2013new.csv", CropSpec(48, 48)
    out = tmp_path / "joint.npz"
    assert main(["train", "--data", str(ferplus), "--data", str(ckplus_tree), "--with-neutral", "--arch", "vgg48",
                 "--val-subjects", "0.25", "--epochs", "1", "--soft-labels", "--out", str(out)]) == 0
    fer, ck = load_dataset(ferplus, spec), load_dataset(ckplus_tree, spec, with_neutral=True)
    assert "neutral" in ck.class_counts() and fer.splits is not None and ck.splits is not None
    model = Model.load(out)
    split = model.config.info["split"]
    held = split["val_subjects"]
    assert split["train"] == "Training" and len(held) == 1 and held[0] in set(ck.subjects)
    n_ck_train = int(np.sum(~np.isin(ck.subjects, held)))
    err = capsys.readouterr().err
    assert f"jointly: {len(fer.split('Training')) + n_ck_train} training faces" in err
    assert model.labels == ["neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise"]
    assert len(training_faces(fer, model.config.info)) == len(fer.split("Training"))
    assert len(training_faces(ck, model.config.info)) == n_ck_train
    direct = joint_split([fer, ck], 0.25, 0)
    assert len(direct.val) == len(fer.split("PublicTest")) + len(ck) - n_ck_train
    assert direct.val.labels == direct.train.labels and direct.train.soft.shape == (len(direct.train), 8)
    assert main(["evaluate", "--model", str(out), "--data", str(ckplus_tree), "--with-neutral", "--split", "heldout",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == len(ck) - n_ck_train
    (tmp_path / "baseline.npz").write_bytes((tmp_path / "joint.npz").read_bytes())  # stands for a model without CK+
    from mimika.network.export import update_model_config
    update_model_config(tmp_path / "baseline.npz", info={})
    assert main(["evaluate", "--model", str(tmp_path / "baseline.npz"), "--data", str(ckplus_tree), "--with-neutral",
                 "--split", "heldout", "--held-out-by", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == len(ck) - n_ck_train
    assert main(["train", "--data", str(ferplus), "--data", str(ckplus_tree / "cohn-kanade-images"),
                 "--labels", str(ckplus_tree / "Emotion"), "--out", str(out)]) == 2
    assert "--labels names the Emotion tree of one CK+ image tree" in capsys.readouterr().err
    assert main(["train", "--data", str(ferplus), "--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip().endswith("missing: no such file or folder")


def test_joining_sets_records_every_set_s_held_out_people_and_changes_none():
    """Two sets split by subjects: both sets' held-out people are recorded (and none trains); the sets
    joined are left as they were (a set without votes gets one-hot targets in the joined copy only)."""
    from mimika.prepare.datasets import FaceSet, joined, joint_split
    rng = np.random.default_rng(0)

    def faceset(prefix, labels, soft):
        n = 12
        y = np.arange(n) % len(labels)
        return FaceSet(rng.integers(0, 255, (n, 48, 48), dtype=np.uint8), y, labels,
                       np.array([f"{prefix}{i % 6}" for i in range(n)]), [f"{prefix}{i}.png" for i in range(n)],
                       soft=np.eye(len(labels), dtype=np.float32)[y] if soft else None)
    a, b = faceset("A", ["happiness", "sadness"], soft=True), faceset("B", ["neutral", "sadness", "anger"], soft=False)
    split = joint_split([a, b], 0.3, seed=0)
    held = split.info["val_subjects"]
    assert {h[0] for h in held} == {"A", "B"} and len(held) == 4  # ceil(0.3 x 6) of each
    assert not np.isin(split.train.subjects, held).any() and np.isin(split.val.subjects, held).all()
    both = joined([a, b])
    assert both.labels == ["neutral", "anger", "happiness", "sadness"] and both.soft.shape == (24, 4)
    assert np.array_equal(both.soft.argmax(1), both.y) and b.soft is None and len(a.labels) == 2


def test_train_from_a_model_with_other_classes(fer_dir, tmp_path, capsys, monkeypatch):
    """--init: the data's classes become the model's (rows of shared classes kept)."""
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    from mimika import Model, create_model
    init = create_model("vgg48", labels=["neutral", "anger", "contempt", "disgust", "fear", "happiness",
                                         "sadness", "surprise"])
    init.save(tmp_path / "init.npz")
    assert main(["train", "--data", str(fer_dir / "fer2013.csv"), "--init", str(tmp_path / "init.npz"),
                 "--epochs", "1", "--out", str(tmp_path / "m.npz")]) == 0
    m = Model.load(tmp_path / "m.npz")
    assert "contempt" not in m.labels and len(m.labels) == 7 and m.net.head.out_features == 7


def test_evaluate_on_another_dataset_scores_the_classes_the_model_knows(fer_dir, tmp_path, capsys, monkeypatch):
    """Cross-dataset protocol: --known-classes leaves out (and counts) faces of classes the model never
    learnt; without it such data is refused in one line."""
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    from mimika import create_model
    create_model("vgg48", labels=["anger", "contempt", "disgust", "fear", "happiness", "sadness",
                                  "surprise"]).save(tmp_path / "no-neutral.npz")
    args = ["evaluate", "--model", str(tmp_path / "no-neutral.npz"), "--data", str(fer_dir / "fer2013.csv"), "--json"]
    assert main(args) == 2 and "does not know: neutral" in capsys.readouterr().err
    assert main(args + ["--known-classes"]) == 0
    out, err = capsys.readouterr()
    assert "left out, classes the model does not know: neutral (1)" in err  # FER code 6 once in 10 rows
    assert json.loads(out)["n"] == 9


def test_evaluate_can_answer_only_among_the_data_classes(fer_dir, tmp_path, capsys, monkeypatch):
    """--data-classes-only: a model whose every answer is a class the data lacks (contempt; FER2013
    has none) is scored by its best class among the data's: no prediction lands in contempt."""
    import torch
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    from mimika import create_model
    model = create_model("vgg48", labels=["anger", "contempt", "disgust", "fear", "happiness", "sadness",
                                          "surprise"])
    with torch.no_grad():
        model.net.head.bias[1] = 100.0  # contempt, whatever the face
    model.save(tmp_path / "contempt.npz")
    args = ["evaluate", "--model", str(tmp_path / "contempt.npz"), "--data", str(fer_dir / "fer2013.csv"), "--json",
            "--known-classes"]
    contempt_column = []
    for extra in ([], ["--data-classes-only"]):
        assert main(args + extra) == 0
        rep = json.loads(capsys.readouterr().out)
        contempt_column.append(sum(row[1] for row in rep["confusion"]["matrix"]))
    assert contempt_column == [9, 0]


# --- malformed datasets: one clear line naming the file (and line), no hang, bounded memory ---

def _fer(tmp_path, rows, name="fer2013.csv", head="emotion,pixels,Usage", eol="\n", bom=""):
    path = tmp_path / name
    path.write_bytes((bom + head + eol + "".join(r + eol for r in rows)).encode())
    return path


GOOD_PIXELS = " ".join(["128"] * 2304)


@pytest.mark.parametrize("row, message", [
    ("0," + " ".join(["12.5"] * 2304) + ",Training", "line 3: pixels are not 2304 whole numbers"),
    ("0," + " ".join(["nan"] * 2304) + ",Training", "line 3: pixels are not 2304 whole numbers"),
    ("0," + GOOD_PIXELS[:-3] + "abc,Training", "line 3: pixels are not 2304 whole numbers"),
    ("0," + GOOD_PIXELS[:-3] + "999,Training", "line 3: grey levels outside 0..255"),
    ("0," + GOOD_PIXELS[:-3] + "-12,Training", "line 3: grey levels outside 0..255"),
    ("0," + " ".join(["1"] * 2303) + ",Training", "line 3: pixels are not 2304"),
    ("9," + GOOD_PIXELS + ",Training", "line 3: emotion code '9' is not one of 0..6"),
    ("nan," + GOOD_PIXELS + ",Training", "line 3: emotion code 'nan'"),
    ("0," + GOOD_PIXELS + ",Holdout", "line 3: unknown Usage 'Holdout'"),
    ("0," + GOOD_PIXELS + "\0,Training", "line 3"),
    ("0,\"" + GOOD_PIXELS, "line 3"),  # a quote never closed
    ("0," + GOOD_PIXELS, "line 3: expected 'emotion,<2304 grey levels>,Usage', found 2 fields"),
])
def test_malformed_fer_rows_name_the_line(tmp_path, row, message):
    path = _fer(tmp_path, ["3," + GOOD_PIXELS + ",Training", row])
    with pytest.raises(MimikaError, match=message) as e:
        read_fer2013_csv(path)
    assert str(e.value).startswith(str(path))


def test_fer_csv_with_bom_crlf_and_quoted_fields_is_read(tmp_path):
    path = _fer(tmp_path, ['3,"' + GOOD_PIXELS + '",Training', "0," + GOOD_PIXELS + ",PublicTest"], eol="\r\n",
                bom="\ufeff")
    pixels, emotion, usage = read_fer2013_csv(path)
    assert pixels.shape == (2, 48, 48) and list(emotion) == [3, 0] and list(usage) == ["Training", "PublicTest"]


def test_gzip_cut_short_and_gzip_bomb(tmp_path, monkeypatch):
    text = ("emotion,pixels,Usage\n" + "".join(f"0,{GOOD_PIXELS},Training\n" for _ in range(50))).encode()
    cut = tmp_path / "cut.csv.gz"
    packed = gzip.compress(text)
    cut.write_bytes(packed[:len(packed) // 2])
    with pytest.raises(MimikaError, match="cut.csv.gz: line") as e:
        read_fer2013_csv(cut)
    assert "Compressed file ended" in str(e.value) or "end-of-stream" in str(e.value)
    import mimika.prepare.datasets.fer2013 as fer
    monkeypatch.setattr(fer, "MAX_TEXT_BYTES", 1 << 20)  # the real cap is 2 GiB; the mechanism is the same
    bomb = tmp_path / "bomb.csv.gz"  # many rows, more text than a FER CSV holds
    bomb.write_bytes(gzip.compress(b"emotion,pixels,Usage\n" + f"0,{GOOD_PIXELS},Training\n".encode() * 400))
    with pytest.raises(MimikaError, match="bomb.csv.gz: line .*decompression bomb"):
        read_fer2013_csv(bomb)
    endless = tmp_path / "endless.csv.gz"  # one line that never ends
    endless.write_bytes(gzip.compress(b"emotion,pixels,Usage\n0," + b"0" * (8 << 20)))
    with pytest.raises(MimikaError, match="endless.csv.gz: line 2: a line longer than"):
        read_fer2013_csv(endless)


@pytest.mark.parametrize("votes, message", [
    ("10,0,0,0,0,0,0,0,0,-1", "vote counts must be whole numbers >= 0"),
    ("99999999999999999999,0,0,0,0,0,0,0,0,0", "vote counts must be whole numbers"),
    ("5000,0,0,0,0,0,0,0,0,0", "a vote count over 1000"),
    ("1.5,0,0,0,0,0,0,0,0,0", "vote counts must be whole numbers"),
])
def test_malformed_ferplus_votes(fer_dir, votes, message):
    from mimika.prepare.datasets.fer2013 import read_ferplus_votes
    path = fer_dir / "fer2013new.csv"
    lines = path.read_text().splitlines()
    usage, name = lines[1].split(",")[:2]
    lines[1] = f"{usage},{name},{votes}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MimikaError, match=f"line 2: {message}"):
        read_ferplus_votes(path)


def test_a_split_without_rows_is_one_line(fer_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    only_train = _fer(tmp_path, [f"3,{GOOD_PIXELS},Training", f"0,{GOOD_PIXELS},Training"], name="train_only.csv")
    rc = main(["evaluate", "--model", "fer2013", "--data", str(only_train), "--split", "PrivateTest"])
    err = capsys.readouterr().err
    assert rc == 2 and "no faces to evaluate in split 'PrivateTest'" in err and "Traceback" not in err


@pytest.mark.parametrize("code, message", [("nan", "not a CK\\+ emotion code"), ("inf", "not a CK\\+ emotion code"),
                                           ("junk", "not a CK\\+ emotion file"), ("9.0", "not a CK\\+ emotion code")])
def test_ckplus_bad_codes_name_the_file(ckplus_tree, code, message):
    from mimika.prepare.datasets import load_ckplus
    label = next((ckplus_tree / "Emotion").rglob("*_emotion.txt"))
    label.write_text(f"   {code}\n")
    with pytest.raises(MimikaError, match=message) as e:
        load_ckplus(ckplus_tree, crop="whole")
    assert label.name in str(e.value)


def test_ckplus_fifo_label_and_fifo_frame_do_not_hang(ckplus_tree):
    from mimika.prepare.datasets import load_ckplus
    label = next((ckplus_tree / "Emotion").rglob("*_emotion.txt"))
    label.unlink()
    os.mkfifo(label)
    with pytest.raises(MimikaError, match="not a regular file"):
        load_ckplus(ckplus_tree, crop="whole")
    label.unlink()
    label.write_text("5\n")
    frames = sorted((ckplus_tree / "cohn-kanade-images" / "S001" / "001").iterdir())
    frames[-1].unlink()
    os.mkfifo(frames[-1])  # a FIFO named like the peak frame
    data = load_ckplus(ckplus_tree, crop="whole")
    assert any(frames[-1].name in s for s in data.skipped) and len(data) > 0


def test_a_new_layout_is_one_table_entry():
    from mimika.prepare.datasets import LAYOUTS
    from mimika.prepare.datasets.registry import Layout
    assert [layout.name for layout in LAYOUTS] == ["ferplus", "fer2013", "ckplus", "expw", "taiwanese", "one-class",
                                                   "folders"]
    assert all(isinstance(layout, Layout) and layout.default_crop in ("whole", "detect") for layout in LAYOUTS)


def run_script(name: str, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    """One of scripts/ run as its users run it (its own process), with its own face cache if given."""
    script = Path(__file__).resolve().parents[1] / "scripts" / name
    env = {**os.environ, "MIMIKA_CACHE": str(cache)} if cache else None
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120, env=env)


def test_the_package_has_no_import_circle_and_no_import_against_the_wings_order():
    out = run_script("module_map.py").stdout
    assert "import circles: 0" in out and "imports against the wings' order: 0" in out, out
    for wing in ("common", "prepare", "network", "training", "recognition", "shell"):
        assert f"{wing} (level" in out


def test_the_wing_check_sees_an_import_upwards_or_sideways():
    import importlib.util
    spec = importlib.util.spec_from_file_location("module_map", Path(__file__).resolve().parents[1] / "scripts"
                                                  / "module_map.py")
    module_map = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module_map)
    graph = {"mimika.prepare.centerface": {"mimika.network.predictor", "mimika.common.sessions"},
             "mimika.recognition.parallel": {"mimika.training.distributed"},
             "mimika.training.loop": {"mimika.network.model", "mimika.prepare.datasets"},
             "mimika.cli": {"mimika.training.loop", "mimika.recognition.recognizer"}}
    assert module_map.against_order(graph) == [("mimika.prepare.centerface", "mimika.network.predictor"),
                                              ("mimika.recognition.parallel", "mimika.training.distributed")]


def test_the_import_paths_before_the_wings_still_work_and_say_where_they_went():
    code = ("import warnings; warnings.simplefilter('error');\n"
            "import mimika.prepare.images as new\n"
            "try:\n import mimika.images\nexcept DeprecationWarning as w: print(w)\n"
            "warnings.simplefilter('ignore'); import mimika.images as old; from mimika.datasets.registry import LAYOUTS\n"
            "from mimika.prepare.datasets.registry import LAYOUTS as L2; from mimika.training import Trainer\n"
            "from mimika.recognition import Recognizer; print(old is new, LAYOUTS is L2, Trainer.__module__,"
            " Recognizer.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == ["mimika.images is now mimika.prepare.images; the old name goes in the next release",
                                       "True True mimika.training.loop mimika.recognition.recognizer"], out.stderr


def test_mcnemar_p_by_hand():
    """The exact two-sided test on the faces only one model gets right (scripts/compare_models.py)."""
    from mimika.common.metrics import mcnemar_p
    assert mcnemar_p(10, 0) == pytest.approx(2 / 2 ** 10) and mcnemar_p(0, 10) == mcnemar_p(10, 0)
    assert mcnemar_p(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 2 ** 10)  # 0.109: 8 of 10 is not yet a win
    assert mcnemar_p(5, 5) == 1.0 and mcnemar_p(0, 0) == 1.0
    from mimika.common.metrics import format_p
    assert format_p(mcnemar_p(8, 2)) == "0.109" and format_p(mcnemar_p(20, 0)) == "1.9e-06"  # never 0.000


def test_the_faces_only_one_model_gets_right_and_a_reports_recall_line():
    from mimika.common.metrics import mcnemar_cells, only_right
    from mimika.reports.evaluation import recall_line, report
    a, b = np.array([1, 1, 0, 0, 1], bool), np.array([1, 0, 1, 0, 0], bool)
    assert only_right(a, b) == (2, 1) and only_right(b, a) == (1, 2)
    assert mcnemar_cells(a, b) == "2 / 1 | 1.000"  # the two table cells every comparison script prints
    rep = report(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["anger", "happiness", "surprise"])
    assert recall_line(rep) == "an 0.50 ha 1.00"  # surprise has no face: left out


def test_compare_models_pairs_the_same_faces_under_each_prior(fer_dir, ckplus_tree, tmp_path, capsys,
                                                            monkeypatch):
    """The replacement gate of issue #11 (scripts/compare_models.py): a model against itself splits
    no face under either prior, at every tau, and reads CK+ as `mimika evaluate` does; models with
    other labels are refused in one line."""
    data = str(fer_dir / "fer2013new.csv")
    out = run_script("compare_models.py", "ferplus", "--data", data, cache=tmp_path / "cache")
    assert out.returncode == 0, out.stderr
    rows = [r for r in out.stdout.splitlines() if r.startswith("| ") and r[2].isdigit()]
    assert [r.split(" | ")[0] for r in rows] == ["| 0", "| 0.2", "| 0.4", "| 0.6"]
    for row in rows:
        cells = row.strip("| ").split(" | ")
        first, second = cells[1].split(" vs ")
        assert first == second and cells[3:] == ["0 / 0", "1.000"], row
    assert out.stdout.startswith("PublicTest, 2 faces, training prior")
    balanced = run_script("compare_models.py", "ferplus", "--data", str(ckplus_tree), "--prior", "balanced",
                                  cache=tmp_path / "cache")
    assert balanced.returncode == 0 and "balanced prior" in balanced.stdout, balanced.stderr
    assert balanced.stdout.splitlines()[-1].endswith("| 0 / 0 | 1.000 |")
    monkeypatch.setenv("MIMIKA_CACHE", str(tmp_path / "cache"))
    assert main(["evaluate", "--data", str(ckplus_tree), "--detector", "cnn", "--prior", "balanced"]) == 0
    accuracy = capsys.readouterr().out.split("accuracy ")[1].split()[0]
    assert balanced.stdout.splitlines()[-1].startswith(f"| 0 | {accuracy} vs {accuracy} |")
    refused = run_script("compare_models.py", "ferplus", "--against", "fer2013", "--data", data,
                         cache=tmp_path / "cache")
    assert refused.returncode != 0 and refused.stderr.strip().splitlines() == [
        "ferplus and fer2013 answer different labels: nothing to compare"]
