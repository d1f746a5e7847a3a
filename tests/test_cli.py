"""The command line as a new user meets it: outputs that never overwrite or run together, every
argument error one line (with the subcommand's usage), help for every flag."""

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

import mimika
from mimika.cli import _parser, main


def _clip(path, bgr, frames=6, fps=10):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, bgr.shape[1::-1])
    for i in range(frames):
        writer.write(np.roll(bgr, 2 * i, axis=1))
    writer.release()
    return path


def test_annotated_copies_mirror_the_inputs_and_never_overwrite(astronaut_path, astronaut_bgr, tmp_path, capsys):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(astronaut_path, tmp_path / "in" / sub / "face.jpg")
    cv2.imwrite(str(tmp_path / "in" / "b" / "face.png"), astronaut_bgr)  # same stem, other format
    shutil.copy(astronaut_path, tmp_path / "face.jpg")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in"), str(tmp_path / "face.jpg"), "--annotate", str(out)]) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["face.jpg", "in/a/face.jpg", "in/b/face.jpg", "in/b/face.png"]
    assert cv2.imread(str(out / "in/b/face.png")).shape == astronaut_bgr.shape
    assert open(out / "in/a/face.jpg", "rb").read(2) == b"\xff\xd8"  # JPEG in, JPEG out
    # the same file given twice gets two names, not one overwritten
    assert main(["predict", str(astronaut_path), str(astronaut_path), "--annotate", str(tmp_path / "twice")]) == 0
    assert sorted(p.name for p in (tmp_path / "twice").iterdir()) == ["astronaut-2.jpg", "astronaut.jpg"]


@pytest.mark.parametrize("target", ["file", "under_file"])
def test_annotate_into_a_file_is_one_line_before_any_work(astronaut_path, tmp_path, capsys, target):
    f = tmp_path / "f.txt"
    f.write_text("x")
    dest = f if target == "file" else f / "sub"
    assert main(["predict", str(astronaut_path), "--annotate", str(dest)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and str(f) in err


def test_csv_rows_for_video_frames_and_files_without_faces(astronaut_bgr, tmp_path, capsys):
    video = _clip(tmp_path / "clip.avi", astronaut_bgr, frames=4)
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160), 90, np.uint8))
    assert main(["predict", str(blank), str(video), "--csv", "--every", "2"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["file"], r["frame"], r["time"], r["face"]) for r in rows] == [
        (str(blank), "", "", ""), (str(video), "0", "0.000", "1"), (str(video), "2", "0.200", "1")]
    assert rows[0]["label"] == "" and rows[0]["error"] == ""


def test_jsonl_streams_one_object_per_input(astronaut_path, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    assert main(["predict", str(astronaut_path), str(bad), "--jsonl"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["file"] for o in objs] == [str(astronaut_path), str(bad)]
    assert len(objs[0]["faces"]) == 1 and "error" in objs[1]


def test_output_formats_are_mutually_exclusive(astronaut_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(astronaut_path), "--json", "--csv"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "not allowed with" in err and err.startswith("usage: mimika predict")


def test_table_columns_never_run_together():
    labels = ["neutral", "a-very-long-emotion-name", "happiness"]
    face = mimika.Face((12345, 67890, 23456, 34567), dict(zip(labels, [0.5, 0.3, 0.2])))
    table = mimika.ImageResult("x.jpg", [face]).table()
    for line in table.splitlines()[1:]:
        cells = line.split()
        assert any(c in labels for c in cells), line  # the label is a cell of its own
    assert "box 12345,67890,23456,34567  " in table


def test_results_convert_to_a_dataframe(astronaut_path, tmp_path):
    pd = pytest.importorskip("pandas")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((50, 50), 90, np.uint8))
    rec = mimika.Recognizer()
    results = mimika.Results(rec.get_files([astronaut_path, blank]))
    df = results.to_df(rec.model.labels)
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    assert list(df.columns[:11]) == ["file", "frame", "time", "face", "track", "x", "y", "w", "h", "label", "score"]
    assert abs(df.loc[0, rec.model.labels].sum() - 1) < 1e-6 and pd.isna(df.loc[1, "face"])


def test_dataframe_without_pandas_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(mimika.MimikaError, match="pip install pandas"):
        mimika.Results([]).to_df(["happiness"])


def test_whole_image_crop_takes_each_image_as_one_face(astronaut_face, tmp_path, capsys):
    face = tmp_path / "face.png"
    cv2.imwrite(str(face), cv2.resize(astronaut_face, (48, 48)))  # too small for the Haar cascade
    assert main(["predict", str(face), "--json", "--detector", "haar"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["faces"] == []
    assert main(["predict", str(face), "--json", "--crop", "whole"]) == 0
    got, = json.loads(capsys.readouterr().out)[0]["faces"]
    assert got["box"] == [0, 0, 48, 48]


@pytest.mark.parametrize("args, flag", [
    (["predict", "x.jpg", "--scale-factor", "1.0"], "--scale-factor"),
    (["predict", "x.jpg", "--min-face", "-5"], "--min-face"),
    (["predict", "x.jpg", "--downscale", "0"], "--downscale"),
    (["predict", "x.jpg", "--every", "0"], "--every"),
    (["predict", "x.jpg", "--min-neighbors", "x"], "--min-neighbors"),
    (["train", "--data", "d", "--margin", "-3"], "--margin"),
    (["train", "--data", "d", "--epochs", "0"], "--epochs"),
    (["train", "--data", "d", "--lr", "-1"], "--lr"),
    (["train", "--data", "d", "--val-subjects", "1.5"], "--val-subjects"),
    (["crossval", "--data", "d", "--out-dir", "o", "--folds", "1"], "--folds"),
    (["export", "m.npz", "o.onnx", "--calibration-faces", "0"], "--calibration-faces"),
])
def test_argument_errors_print_the_subcommand_usage(capsys, args, flag):
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err
    assert err.startswith(f"usage: mimika {args[0]}") and flag in err.splitlines()[-1]


def test_detector_settings_are_checked_in_the_api_too():
    with pytest.raises(mimika.MimikaError, match="scale_factor"):
        mimika.get_detector("default", scale_factor=1.0)
    with pytest.raises(mimika.MimikaError, match="downscale"):
        mimika.HaarDetector(downscale=0)


def _one_line(capsys, rc, expect_rc=2):
    err = capsys.readouterr().err
    assert rc == expect_rc and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_train_checks_its_outputs_before_training(ckplus_tree, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = _one_line(capsys, main(["train", "--data", str(ckplus_tree), "--epochs", "1",
                                  "--out", str(blocker / "model.npz")]))
    assert "model file" in err and "epoch" not in capsys.readouterr().out
    err = _one_line(capsys, main(["train", "--data", str(ckplus_tree), "--epochs", "1", "--out",
                                  str(tmp_path / "m.npz"), "--resume", str(tmp_path / "missing.ckpt.npz")]))
    assert "no such training checkpoint" in err


def test_confusion_without_matplotlib_is_checked_first(tmp_path, capsys, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    err = _one_line(capsys, main(["evaluate", "--data", str(tmp_path / "nothing"), "--confusion", "cm.png"]))
    assert "pip install matplotlib" in err


def test_int8_without_calibration_and_calibration_without_int8(tmp_path, capsys):
    assert "--int8 needs --calibration" in _one_line(capsys, main(["export", "seed", str(tmp_path / "o.onnx"), "--int8"]))
    assert "--calibration is for --int8" in _one_line(
        capsys, main(["export", "seed", str(tmp_path / "o.onnx"), "--calibration", "x"]))


def test_every_flag_is_described_with_examples():
    parser = _parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        assert "examples:" in (p.epilog or ""), name
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings}"
                if action.default not in (None, False) and not isinstance(action, argparse._StoreConstAction):
                    assert "(default:" in p.formatter_class(name)._get_help_string(action), action.dest


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version
    r = subprocess.run([sys.executable, "-m", "mimika", "--version"], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == f"mimika {version('mimika')}" == f"mimika {mimika.__version__}"


@pytest.mark.parametrize("shape", [(120, 160), (480, 640), (3000, 4000)])
def test_captions_scale_with_the_photo_and_stay_off_the_box_line(shape):
    from mimika.recognition.annotate import caption_layout
    H, W = shape
    for box in [(W // 3, H // 3, W // 4, W // 4), (5, 2, W // 5, W // 5)]:  # room above; none above
        (left, top, right, bottom), scale, thick = caption_layout(box, "happiness 0.99", shape)
        x, y, w, h = box
        line = (y - thick, y + h + thick)  # the rows the box's horizontal lines may cover
        assert bottom <= line[0] or top >= line[1]  # never over the box's line
        assert 0 <= left and right <= W and 0 <= top and bottom <= H
        assert (bottom - top) >= 0.02 * min(H, W) or (bottom - top) >= 14  # readable: grows with the photo


def test_faces_taken_whole_need_no_haar_cascade(astronaut_face, tmp_path, monkeypatch, capsys):
    """OpenCV 5 ships no Haar cascades: training and evaluating on pre-cropped faces must not ask
    for one (only cropping by the dataset detector does)."""
    import mimika.prepare.haar
    for name, face in [("happiness", astronaut_face), ("surprise", astronaut_face[::-1])]:
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(4):
            cv2.imwrite(str(tmp_path / "d" / name / f"s{i}_{name}.png"), np.roll(face, 3 * i, axis=1))
    monkeypatch.setattr(mimika.prepare.haar, "haar_cascade_path", lambda *a: str(tmp_path / "no-opencv-cascades.xml"))
    mimika.prepare.haar._cascade.cache_clear()
    data, model = str(tmp_path / "d"), str(tmp_path / "m.npz")
    assert main(["train", "--data", data, "--crop", "whole", "--epochs", "1", "--out", model]) == 0
    assert main(["evaluate", "--model", model, "--data", data, "--crop", "whole"]) == 0
    assert "faces 8" in capsys.readouterr().out
    assert main(["evaluate", "--model", model, "--data", data, "--crop", "detect"]) == 2
    assert "no-opencv-cascades.xml: no such cascade file" in capsys.readouterr().err
    mimika.prepare.haar._cascade.cache_clear()


def test_calibrate_refuses_a_test_split_in_any_spelling_before_reading_anything(tmp_path, capsys):
    err = _one_line(capsys, main(["calibrate", str(tmp_path / "none.onnx"), "--data", str(tmp_path / "none"),
                                  "--split", "Private-Test"]))
    assert "--split Private-Test: calibration is fitted on validation faces, never on a test split" in err


def test_init_with_another_architecture_or_margin_is_one_line_before_the_data_is_read(tmp_path, capsys):
    init = str(mimika.create_model("seed", seed=0).save(tmp_path / "init.npz"))
    for flag, value in (("--arch", "vgg48"), ("--margin", "0.2")):
        for command in (["train", "--out", str(tmp_path / "m.npz")], ["crossval", "--out-dir", str(tmp_path / "cv")]):
            err = _one_line(capsys, main([*command, "--data", str(tmp_path / "none"), "--init", init, flag, value]))
            assert f"{flag} {value} differs" in err, err


def _files(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_annotated_copies_stay_in_their_folder_whatever_the_inputs(astronaut_path, tmp_path, capsys, monkeypatch):
    """`..`, absolute paths, symbolic links and "-": every copy is planned below the --annotate
    folder, never over an input, never out of the folder (#29)."""
    photos = tmp_path / "photos"
    (photos / "work").mkdir(parents=True)
    shutil.copy(astronaut_path, photos / "p.jpg")
    original = (photos / "p.jpg").read_bytes()
    monkeypatch.chdir(photos / "work")
    # the input folder `..` is named by what it is (photos), so its copies go below the folder given
    assert main(["predict", "..", "--annotate", "../annotated"]) == 0
    assert (photos / "p.jpg").read_bytes() == original
    assert _files(photos) == ["annotated/photos/p.jpg", "p.jpg"]
    shutil.rmtree(photos / "annotated")
    assert main(["predict", "..", "--annotate", "annotated"]) == 0
    assert _files(photos) == ["p.jpg", "work/annotated/photos/p.jpg"]
    assert "annotated copies written below annotated/" in capsys.readouterr().err
    shutil.rmtree(photos / "work" / "annotated")

    # a folder whose copies would land on the inputs themselves: one line before any work
    monkeypatch.chdir(tmp_path)
    err = _one_line(capsys, main(["predict", "photos", "--annotate", "."]))
    assert "would overwrite the input" in err and "photos/p.jpg" in err
    err = _one_line(capsys, main(["predict", str(photos / "p.jpg"), str(photos), "--annotate", str(photos.parent)]))
    assert "would overwrite the input" in err  # one input's copy over another input
    assert (photos / "p.jpg").read_bytes() == original and _files(photos) == ["p.jpg"]
    # a symbolic link inside the folder leading out of it
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "photos").symlink_to(tmp_path / "elsewhere")
    err = _one_line(capsys, main(["predict", "photos", "--annotate", "out"]))
    assert "outside out" in err and "symbolic link" in err and _files(tmp_path / "elsewhere") == []

    # absolute paths and standard input
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(original)))
    assert main(["predict", str(photos.resolve() / "p.jpg"), "-", "--annotate", "abs"]) == 0
    assert _files(tmp_path / "abs") == ["p.jpg", "stdin.png"]


def test_a_planned_name_is_normalised_into_the_folder(tmp_path):
    """A Source named with `..` or as an absolute path (from Python) still lands below the folder."""
    from pathlib import Path

    from mimika.recognition.annotate import plan_copies
    from mimika.recognition.recognizer import Source
    sources = [Source("a.jpg", Path("../../a.jpg")), Source("b.jpg", Path("/etc/b.jpg")), Source("c", Path("..")),
               Source("a.jpg", Path("a.jpg")), Source("v.avi", Path("./x/../v.avi"), video=True)]
    targets = plan_copies(sources, tmp_path / "out").targets
    assert [str(t.relative_to(tmp_path / "out")) for t in targets] == ["a.jpg", "etc/b.jpg", "image.png", "a-2.jpg",
                                                                       "v.mp4"]


def test_a_failed_annotated_copy_is_in_the_csv_row_too(astronaut_path, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "astronaut.jpg").mkdir(parents=True)  # a folder where the copy should go: the write fails
    twice = [str(astronaut_path)] * 2  # the second copy (astronaut-2.jpg) is written
    assert main(["predict", *twice, "--csv", "--annotate", str(out)]) == 0
    row, other = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["face"] == "1" and row["label"] and f"{out / 'astronaut.jpg'}: cannot write" in row["error"]
    assert other["error"] == "" and (out / "astronaut-2.jpg").is_file()
    assert main(["predict", *twice, "--json", "--annotate", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["error"] == row["error"]
