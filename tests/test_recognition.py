"""Module 4: recognition with the shipped model, from Python and from the command line."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import mimika
from mimika.cli import main


def check_face(face, labels):
    x, y, w, h = face.box
    assert w > 0 and h > 0
    assert set(face.scores) == set(labels)
    values = list(face.scores.values())
    assert all(0 <= v <= 1 for v in values) and abs(sum(values) - 1) < 1e-6
    assert values == sorted(values, reverse=True) and face.label == next(iter(face.scores))


def test_recognize_the_astronaut(astronaut_path, shipped_model):
    faces = mimika.recognize(astronaut_path)
    assert len(faces) == 1
    check_face(faces[0], shipped_model.labels)
    rgb = cv2.imread(str(astronaut_path))[:, :, ::-1]
    again = mimika.Recognizer().get(rgb)  # an RGB array gives the same as the file
    assert again[0].box == faces[0].box
    assert abs(again[0].scores[faces[0].label] - faces[0].score) < 1e-6


def test_every_face_of_a_group_and_none_in_a_blank_image(astronaut_bgr):
    group = np.hstack([astronaut_bgr, astronaut_bgr[:, ::-1]])
    faces = mimika.Recognizer().get(group[:, :, ::-1])
    assert len(faces) == 2 and faces[0].box[0] < faces[1].box[0]
    assert mimika.recognize(np.full((480, 640, 3), 200, np.uint8)) == []


def test_cli_json(astronaut_path, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320), 90, np.uint8))
    assert main(["predict", str(astronaut_path), str(blank), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in out] == [str(astronaut_path), str(blank)]
    face, = out[0]["faces"]
    assert len(face["box"]) == 4 and face["label"] == max(face["scores"], key=face["scores"].get)
    assert abs(sum(face["scores"].values()) - 1) < 1e-6
    assert out[1]["faces"] == []
    assert main(["predict", str(astronaut_path), "--json", "--tta", "none"]) == 0  # one pass, not two
    single, = json.loads(capsys.readouterr().out)[0]["faces"]
    assert single["label"] == face["label"] and single["scores"] != face["scores"]
    assert abs(sum(single["scores"].values()) - 1) < 1e-6


def test_cli_table_and_annotated_copy(astronaut_path, tmp_path, capsys):
    assert main(["predict", str(astronaut_path), "--annotate", str(tmp_path / "ann")]) == 0
    out = capsys.readouterr().out
    assert "1 face" in out and "face 1" in out and "box" in out
    written = cv2.imread(str(tmp_path / "ann" / "astronaut.jpg"))  # JPEG in, JPEG out
    original = cv2.imread(str(astronaut_path))
    assert written.shape == original.shape
    assert (np.abs(written.astype(int) - original).sum(axis=2) > 80).sum() > 500  # box and caption drawn


def test_batch_goes_on_past_bad_files(astronaut_path, tmp_path, capsys):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    missing = tmp_path / "missing.png"
    rc = main(["predict", str(bad), str(astronaut_path), str(missing), "--json"])
    captured = capsys.readouterr()
    assert rc == 0
    out = json.loads(captured.out)
    assert len(out[1]["faces"]) == 1 and "error" in out[0] and "error" in out[2]
    assert "2 of 3 input(s) could not be read" in captured.err
    assert "corrupt.jpg: not a readable image" in captured.err and "missing.png: no such file" in captured.err
    assert main(["predict", str(bad)]) != 0  # nothing could be done


@pytest.mark.parametrize("args, message", [
    (["predict", "x.png", "--model", "{tmp}/foreign.npz"], "not a mimika model file"),
    (["train", "--data", "{tmp}/nothing"], "no such file or folder"),
    (["train", "--data", "{tmp}/emptydir"], "no class folders"),
    (["evaluate", "--data", "{tmp}/emptydir", "--model", "nope"], "no such model file or shipped model"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, args, message):
    np.savez(tmp_path / "foreign.npz", a=np.zeros(2))
    (tmp_path / "emptydir").mkdir()
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_installed_command_runs(astronaut_path):
    r = subprocess.run([sys.executable, "-m", "mimika.cli", "predict", str(astronaut_path), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)[0]["faces"]) == 1


def test_finetune_and_evaluate_from_the_command_line(tmp_path, astronaut_face, capsys):
    from conftest import variants
    for name, flip in [("happy", False), ("7", True)]:
        (tmp_path / "mine" / name).mkdir(parents=True)
        for i, f in enumerate(variants(astronaut_face, 6, hash(name) % 100)):
            cv2.imwrite(str(tmp_path / "mine" / name / f"S{i:03d}_001_0001.png"), f[::-1] if flip else f)
    out = tmp_path / "mine.npz"
    assert main(["finetune", "--data", str(tmp_path / "mine"), "--out", str(out), "--epochs", "2"]) == 0
    assert "epoch 2" in capsys.readouterr().out
    kept = tmp_path / "kept.npz"
    assert main(["finetune", "--data", str(tmp_path / "mine"), "--out", str(kept), "--epochs", "1",
                 "--augment", "--keep", "0.5"]) == 0
    capsys.readouterr()
    assert mimika.load_model(kept).config.info["fine_tuned"] == {"faces": 12, "epochs": 1, "lr": 0.001,
                                                                 "augment": True, "keep": 0.5}
    assert mimika.load_model(out).config.info["fine_tuned"]["keep"] == 0.0
    assert main(["evaluate", "--model", str(out), "--data", str(tmp_path / "mine"), "--json",
                 "--confusion", str(tmp_path / "cm.png")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["n"] == 12 and set(rep) >= {"accuracy", "balanced_accuracy", "per_class", "confusion"}
    assert sum(map(sum, rep["confusion"]["matrix"])) == 12
    assert cv2.imread(str(tmp_path / "cm.png")) is not None


def test_folders_are_classified_in_bounded_batches(astronaut_path, tmp_path, monkeypatch):
    import shutil
    for i in range(7):
        shutil.copy(astronaut_path, tmp_path / f"img{i}.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"no")
    rec = mimika.Recognizer()
    sizes = []
    real = rec.model.predict_proba
    monkeypatch.setattr(rec.model, "predict_proba", lambda crops: sizes.append(len(crops)) or real(crops))
    from mimika.recognition.recognizer import expand_inputs
    results = list(rec.get_files([s.path for s in expand_inputs([tmp_path])], batch_faces=3))
    assert [r.file.split("/")[-1] for r in results] == ["bad.jpg"] + [f"img{i}.jpg" for i in range(7)]
    assert results[0].error and all(len(r.faces) == 1 for r in results[1:])
    assert sum(sizes) == 7 and max(sizes) <= 3  # never more than batch_faces (+ one image's) held at once
    single = rec.get(astronaut_path)[0]
    assert all(abs(r.faces[0].score - single.score) < 1e-9 for r in results[1:])


def test_flip_tta_averages_the_mirror_images_logits(shipped_model, astronaut_face):
    """flip: the logits of the face and of its mirror image averaged, then the temperature: so the
    temperature cannot change which emotion comes first."""
    import cv2
    c = shipped_model.config.crop
    faces = np.stack([cv2.resize(astronaut_face, (c.width, c.height)),
                      cv2.resize(astronaut_face[40:, 30:], (c.width, c.height))])
    model = mimika.load_predictor()
    model.config.tta = "flip"  # the probabilities themselves: tests/test_probabilities_by_hand.py
    first = model.predict_proba(faces).argmax(1)
    for t in (0.3, 1.0, 3.0):
        model.config.temperature = t
        assert (model.predict_proba(faces).argmax(1) == first).all()


def test_shift_tta_averages_ten_views_moved_two_pixels_of_48(shipped_model, astronaut_face):
    """shift: the face and its mirror image, each also moved left, right, up and down by 2 of 48
    pixels with the border repeated (as OpenCV's replicate border moves them); the 10 views'
    logits averaged. Smaller than the batch or larger, the answer is the same."""
    import cv2

    from mimika.network.config import tta_views
    c = shipped_model.config.crop
    faces = np.stack([cv2.resize(astronaut_face, (c.width, c.height)),
                      cv2.resize(astronaut_face[40:, 30:], (c.width, c.height))])
    views = tta_views(faces, "shift")
    assert len(views) == 10 and all(v.shape == faces.shape for v in views)

    def moved(dx, dy):
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        return np.stack([cv2.warpAffine(f, m, (c.width, c.height), borderMode=cv2.BORDER_REPLICATE) for f in faces])

    expect = [faces, faces[:, :, ::-1]]
    for dx, dy in ((2, 0), (-2, 0), (0, 2), (0, -2)):
        expect += [moved(dx, dy), moved(dx, dy)[:, :, ::-1]]
    assert all(np.array_equal(v, e) for v, e in zip(views, expect))
    model = mimika.load_predictor()
    model.config.tta = "shift"  # the probabilities themselves: tests/test_probabilities_by_hand.py
    assert np.allclose(model.predict_proba(faces, batch_size=10), model.predict_proba(faces), atol=1e-6)
    flip = mimika.load_predictor()
    shifted, mirrored = (m.config.prediction_logits(m.logits, faces) for m in (model, flip))
    assert np.abs(shifted - mirrored).max() > 0.05  # the moved views count


def test_progress_is_quiet_off_a_terminal(capsys):
    from mimika.common.progress import progress
    assert list(progress(range(3), "x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""  # pytest's stderr is not a terminal


def test_cli_csv(astronaut_path, tmp_path, capsys):
    import csv
    import io
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100), 50, np.uint8))
    assert main(["predict", str(blank), str(astronaut_path), "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["file"] == str(blank) and rows[0]["face"] == "" and rows[0]["label"] == ""  # a row, no face
    rows = rows[1:]
    assert len(rows) == 1 and rows[0]["file"] == str(astronaut_path) and rows[0]["face"] == "1"
    labels = mimika.load_predictor().labels
    assert abs(sum(float(rows[0][name]) for name in labels) - 1) < 1e-4
    assert rows[0]["label"] == max(labels, key=lambda n: float(rows[0][n]))


def test_video_frames_json_and_annotated_video(astronaut_bgr, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (512, 512))
    for i in range(10):
        writer.write(np.roll(astronaut_bgr, 3 * i, axis=1))
    writer.release()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    rc = main(["predict", str(video), str(broken), "--every", "2", "--json", "--annotate", str(tmp_path / "ann")])
    captured = capsys.readouterr()
    assert rc == 0
    out = json.loads(captured.out)
    frames = [r for r in out if r["file"] == str(video)]
    assert [r["frame"] for r in frames] == [0, 2, 4, 6, 8]
    assert [r["time"] for r in frames] == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert all(len(r["faces"]) == 1 for r in frames)
    assert "broken.mp4: not a readable video" in captured.err
    cap = cv2.VideoCapture(str(tmp_path / "ann" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5


def test_output_into_a_closed_pipe_ends_quietly():
    """`mimika models | head -c 1`: no traceback when the reader stops early."""
    r = subprocess.run(f"{sys.executable} -m mimika.cli models | head -c 1", shell=True,
                       capture_output=True, text=True, timeout=60)
    assert "Traceback" not in r.stderr and r.stdout


def test_the_cnn_detector_looks_at_colour_and_haar_at_gray(astronaut_path, astronaut_bgr, tmp_path):
    """The CNN finds more faces in colour (bench/detection.py), so recognition hands it the colour
    image, from files and arrays alike; Haar and crop="whole" get gray; the crops the
    model reads stay gray, so a colour photo and its gray copy give the same face."""
    from mimika.prepare.detection import get_detector
    seen = []

    class Spy:
        def __init__(self, name, color):
            self.inner, self.takes_color = get_detector(name), color

        def detect(self, image):
            seen.append(image.shape)
            return self.inner.detect(image)

    assert get_detector("cnn").takes_color and not getattr(get_detector("haar"), "takes_color", False)
    cnn = mimika.Recognizer(detector=Spy("cnn", True))
    faces = cnn.get(astronaut_path)
    cnn.get(astronaut_bgr, color="bgr")
    list(cnn.get_files([astronaut_path]))
    assert seen == [(512, 512, 3)] * 3 and len(faces) == 1
    seen.clear()
    gray_file = tmp_path / "gray.png"
    cv2.imwrite(str(gray_file), cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY))
    in_gray = cnn.get(gray_file)
    assert seen == [(512, 512)] and len(in_gray) == 1
    assert in_gray[0].box == faces[0].box or max(abs(a - b) for a, b in zip(in_gray[0].box, faces[0].box)) <= 3
    seen.clear()
    mimika.Recognizer(detector=Spy("haar", False)).get(astronaut_path)
    mimika.Recognizer(detector=Spy("cnn", True), crop="whole").get(astronaut_path)
    assert seen == [(512, 512)]  # Haar; crop="whole" runs no detector
