"""Module 1: reading images, grayscale, face detection, crops, and the CK+ loader."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from mimika import CropSpec, MimikaError, crop_face, detect_faces, load_ckplus, load_gray
from mimika.prepare.datasets import load_class_folders, load_dataset
from mimika.prepare.datasets.ckplus import peak_frames

ASTRONAUT_FACE_CENTER = (235, 125)  # roughly, in the 512x512 photo


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp", ".tiff", ".webp"])
@pytest.mark.parametrize("kind", ["gray", "bgr", "bgra", "gray16", "bgr16"])
def test_reads_formats_depths_and_channels(tmp_path, astronaut_bgr, suffix, kind):
    img = {"gray": cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY), "bgr": astronaut_bgr,
           "bgra": cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2BGRA)}.get(kind)
    if kind.endswith("16"):
        if suffix not in (".png", ".tiff"):
            pytest.skip("16-bit is stored in PNG and TIFF")
        base = astronaut_bgr if kind == "bgr16" else cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
        img = base.astype(np.uint16) * 257
    path = tmp_path / f"a{suffix}"
    assert cv2.imwrite(str(path), img)
    gray = load_gray(path)
    assert gray.dtype == np.uint8 and gray.shape == (512, 512)
    expect = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY).astype(int)
    assert np.abs(gray.astype(int) - expect).mean() < 6  # lossy formats differ a little
    assert len(detect_faces(gray)) == 1


def test_arrays_are_rgb_gray_or_float(astronaut_bgr):
    rgb = astronaut_bgr[:, :, ::-1]
    g1 = load_gray(rgb)
    g2 = load_gray(rgb.astype(np.float32) / 255)
    g3 = load_gray(cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY))
    assert np.abs(g1.astype(int) - g2).max() <= 1
    assert np.abs(g1.astype(int) - g3).max() <= 1


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("hello, not an image"), "not a readable image"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100)), "not a readable image"),
])
def test_bad_image_files_name_file_and_problem(tmp_path, make, message):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(MimikaError, match=message) as e:
        load_gray(path)
    assert str(path) in str(e.value)


def test_bad_arrays():
    with pytest.raises(MimikaError, match="shape"):
        load_gray(np.zeros((0, 5), np.uint8))
    with pytest.raises(MimikaError, match="shape"):
        load_gray(np.zeros((4, 4, 2), np.uint8))


def test_finds_the_astronaut_and_every_face_of_a_group(astronaut_bgr):
    gray = load_gray(astronaut_bgr[:, :, ::-1])
    (x, y, w, h), = detect_faces(gray)
    cx, cy = x + w / 2, y + h / 2
    assert abs(cx - ASTRONAUT_FACE_CENTER[0]) < 40 and abs(cy - ASTRONAUT_FACE_CENTER[1]) < 40
    assert 80 < w < 200
    small = np.pad(cv2.resize(gray, (256, 256)), ((0, 256), (0, 0)), mode="edge")
    boxes = detect_faces(np.hstack([gray, gray[:, ::-1], small]))
    assert len(boxes) == 3
    assert detect_faces(np.full((480, 640), 128, np.uint8)) == []


def test_crop_size_margin_and_border(astronaut_bgr):
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    spec = CropSpec(96, 96, margin=0.2)
    assert crop_face(gray, (200, 100, 50, 50), spec).shape == (96, 96)
    corner = crop_face(gray, (-20, -20, 60, 60), CropSpec(48, 48))  # partly outside: replicated
    assert corner.shape == (48, 48)
    tight = crop_face(gray, (0, 0, 512, 512), CropSpec(64, 64))
    assert np.abs(tight.astype(int) - cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)).max() <= 1


def test_peak_frames_takes_last_30_percent_at_least_one():
    frames = [Path(f"{i}") for i in range(10)]
    assert peak_frames(frames, 0.3) == frames[-3:]
    assert peak_frames(frames[:2], 0.3) == frames[1:2]
    assert peak_frames(frames[:1], 0.3) == frames[:1]


def test_ckplus_loader(ckplus_tree):
    spec = CropSpec(96, 96)
    data = load_ckplus(ckplus_tree, spec=spec, crop="detect")
    # frames: 10->3, 4->1, 6->2, unlabelled 5->0, 8->2, 3->1
    assert len(data) == 9
    assert data.faces.shape == (9, 96, 96) and data.faces.dtype == np.uint8
    assert sorted(set(data.subjects)) == ["S001", "S002", "S003", "S004"]
    assert data.class_counts()["happiness"] == 6 and data.class_counts()["surprise"] == 3
    assert all("S002_002" not in s for s in data.sources)  # unlabelled sequence not loaded
    assert all(s.endswith(("08.png", "09.png", "10.png")) for s in data.sources if "S001_001" in s)
    same = load_ckplus(ckplus_tree / "cohn-kanade-images", ckplus_tree / "Emotion", spec, crop="whole")
    assert len(same) == 9
    train, val = data.split_by_subject(0.25, seed=1)
    assert not set(train.subjects) & set(val.subjects) and len(train) + len(val) == len(data)


def test_ckplus_bad_labels_and_empty(ckplus_tree, tmp_path):
    bad = next((ckplus_tree / "Emotion").rglob("*_emotion.txt"))
    bad.write_text("happy\n")
    with pytest.raises(MimikaError, match="not a CK\\+ emotion file") as e:
        load_ckplus(ckplus_tree)
    assert bad.name in str(e.value)
    bad.write_text("9.0\n")
    with pytest.raises(MimikaError, match="not a CK\\+ emotion code"):
        load_ckplus(ckplus_tree)
    (tmp_path / "empty" / "cohn-kanade-images").mkdir(parents=True)
    (tmp_path / "empty" / "Emotion").mkdir()
    with pytest.raises(MimikaError, match="no labelled sequences"):
        load_ckplus(tmp_path / "empty")


def test_class_folders(tmp_path, astronaut_face):
    for name in ["happy", "Surprise", "6"]:
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "S005_001_00000001.png"), astronaut_face)
    (tmp_path / "happy" / "broken.png").write_bytes(b"junk")
    data = load_class_folders(tmp_path, CropSpec(48, 48))
    assert data.labels == ["happiness", "sadness", "surprise"] and len(data) == 3
    assert list(data.subjects) == ["S005"] * 3
    assert len(data.skipped) == 1 and "broken.png" in data.skipped[0]
    (tmp_path / "sleepy").mkdir()
    with pytest.raises(MimikaError, match="sleepy"):
        load_dataset(tmp_path, CropSpec(48, 48))


def test_empty_training_folder(tmp_path):
    with pytest.raises(MimikaError, match="no class folders"):
        load_dataset(tmp_path, CropSpec())


def test_detector_presets_and_overrides(astronaut_bgr, tmp_path):
    from mimika.prepare.detection import PRESETS, get_detector
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    for name in ("cnn", "cnn-fast", "haar", "haar-thorough", "haar-fast", "haar-baseline"):
        (x, y, w, h), = PRESETS[name](gray)
        assert abs(x + w / 2 - ASTRONAUT_FACE_CENTER[0]) < 40
    assert get_detector("haar-fast", min_size=60).min_size == 60 and get_detector("haar-fast", min_size=None).min_size == 48
    small = cv2.resize(gray, (200, 200), interpolation=cv2.INTER_AREA)  # face ~40 px: below haar-fast's 48
    assert len(PRESETS["haar"](small)) == 1 and PRESETS["haar-fast"](small) == []
    # trust: candidates with that many votes skip the second look; trust 1 = no second look at all
    from dataclasses import replace
    big = cv2.resize(gray, None, fx=1.5, fy=1.5)  # the coarse pass finds the face and a false candidate
    unverified = replace(PRESETS["haar"], verify=0)(big)
    assert len(unverified) == 2 and replace(PRESETS["haar"], trust=1)(big) == unverified
    (x, y, w, h), = PRESETS["haar"](big)  # the weakly backed false one still gets the second look
    assert abs(x + w / 2 - 1.5 * ASTRONAUT_FACE_CENTER[0]) < 40
    smaller = cv2.resize(gray, (160, 160), interpolation=cv2.INTER_AREA)  # face ~32 px: only thorough's
    assert len(PRESETS["haar-thorough"](smaller)) == 1 and PRESETS["haar"](smaller) == []
    # a shipped cascade by file name, a user's cascade by path
    assert len(get_detector("haar", cascade="haarcascade_frontalface_alt.xml")(gray)) == 1
    with pytest.raises(MimikaError, match="nope.xml: no such cascade file"):
        get_detector("haar", cascade=str(Path("nowhere") / "nope.xml"))
    with pytest.raises(MimikaError, match="nope.xml: no such cascade file, nor one OpenCV ships"):
        get_detector("haar", cascade="nope.xml")
    for junk in (b"junk", b"<?xml version='1.0'?><opencv_storage></opencv_storage>"):
        (tmp_path / "junk.xml").write_bytes(junk)
        with pytest.raises(MimikaError, match="junk.xml: not an OpenCV cascade file"):
            get_detector("haar-fast", cascade=str(tmp_path / "junk.xml"))
    with pytest.raises(MimikaError, match="unknown detector"):
        get_detector("nope")
    with pytest.raises(MimikaError, match="scale_factor: not a setting of the cnn detector"):
        get_detector("cnn", scale_factor=1.2)
    assert get_detector("default") == PRESETS["cnn"] and get_detector("cnn", min_size=40).min_size == 40
