"""The CNN face detector (CenterFace, INT8, ONNX Runtime) on the astronaut photo and images made from it."""

from __future__ import annotations

import dataclasses
import hashlib

import cv2
import numpy as np
import pytest

from mimika.common.errors import MimikaError
from mimika.prepare.boxes import LANDMARKS, Detection
from mimika.prepare.centerface import CnnDetector, detector_path
from mimika.prepare.detection import get_detector as get_cnn_detector

FACE_CENTRE = (235, 125)  # the astronaut's face in the 512x512 photo, roughly (between the eyes, nose)


@pytest.fixture(scope="module")
def detector() -> CnnDetector:
    return get_cnn_detector("cnn")


@pytest.fixture(scope="module")
def gray(astronaut_bgr) -> np.ndarray:
    return cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)


def covers(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_finds_the_astronaut_with_landmarks_in_order(detector, gray):
    found = detector.detect(gray)
    assert len(found) == 1
    d = found[0]
    assert isinstance(d, Detection) and 0.4 < d.score <= 1.0
    assert all(isinstance(v, int) for v in d.box)
    assert covers(d.box, FACE_CENTRE) and 70 <= d.box[2] <= 140 and 70 <= d.box[3] <= 140
    assert len(d.landmarks) == len(LANDMARKS) == 5
    p = dict(zip(LANDMARKS, d.landmarks))
    assert all(covers(d.box, xy) for xy in d.landmarks)
    assert p["right_eye"][0] < p["left_eye"][0]  # the person's right eye is on the image's left
    assert p["right_mouth_corner"][0] < p["left_mouth_corner"][0]
    eyes_y = max(p["right_eye"][1], p["left_eye"][1])
    assert eyes_y < p["nose_tip"][1] < min(p["right_mouth_corner"][1], p["left_mouth_corner"][1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.score = 1.0


def test_boxes_only_like_a_haar_detector(detector, gray, astronaut_bgr):
    boxes = detector(gray)
    assert boxes == [detector.detect(gray)[0].box]
    colour = detector(astronaut_bgr)  # BGR works too, and finds the same face
    assert len(colour) == 1 and np.abs(np.subtract(colour[0], boxes[0])).max() <= 6


def test_small_faces_in_a_group(detector, gray):
    """Four copies of the photo with faces about 35 px wide on a 640x480 canvas."""
    f = 35 / 98
    small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    canvas = np.full((480, 640), 120, np.uint8)
    centres = []
    for x, y in [(20, 30), (230, 60), (440, 20), (200, 290)]:
        canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
        centres.append((x + FACE_CENTRE[0] * f, y + FACE_CENTRE[1] * f))
    boxes = detector(canvas)
    assert len(boxes) == 4
    assert boxes == sorted(boxes)  # left to right
    for c in centres:
        assert sum(covers(b, c) for b in boxes) == 1


def test_frame_filling_face(detector, gray):
    crop = cv2.resize(gray[60:190, 170:300], (350, 350), interpolation=cv2.INTER_CUBIC)  # passport-like
    boxes = detector(crop)
    assert len(boxes) == 1 and covers(boxes[0], (175, 175)) and boxes[0][2] > 200


def test_a_48x48_face_crop_as_it_is(detector, gray):
    crop = cv2.resize(gray[75:175, 180:280], (48, 48), interpolation=cv2.INTER_AREA)  # like CK+48 / FER
    boxes = detector(crop)
    assert len(boxes) == 1 and covers(boxes[0], (24, 24))


@pytest.mark.parametrize("angle", [30, -30])
def test_tilted_face(detector, gray, angle):
    M = cv2.getRotationMatrix2D((256, 256), angle, 1.0)
    rotated = cv2.warpAffine(gray, M, (512, 512), borderMode=cv2.BORDER_REPLICATE)
    centre = M @ [*FACE_CENTRE, 1]
    boxes = detector(rotated)
    assert sum(covers(b, centre) for b in boxes) == 1


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_image_has_no_face(detector, value):
    assert detector(np.full((480, 640), value, np.uint8)) == []


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (1, 3000), (3000, 1), (31, 33), (7, 5, 3), (9, 9, 4), (9, 9, 1),
                                   (8000, 8000)])
def test_any_image_size(detector, shape):
    assert detector(np.full(shape, 90, np.uint8)) == []


def test_work_is_bounded_on_huge_images(detector):
    for h, w in [(8000, 8000), (100_000, 50), (3, 200_000)]:
        s = detector.scale_for(h, w)
        assert max(h, w) * s <= detector.max_side + 1e-6


@pytest.mark.parametrize("bad", [np.zeros((0, 5), np.uint8), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros((2, 4, 4, 3), np.uint8), np.zeros((8, 8), np.float32)])
def test_bad_arrays_are_one_clear_error(detector, bad):
    with pytest.raises(MimikaError, match="face detection"):
        detector(bad)


def test_missing_or_corrupt_weights_are_one_clear_error(tmp_path, gray):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a network" * 100)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(detector_path().read_bytes()[:100_000])
    for path in (garbage, truncated, tmp_path / "missing.onnx"):
        with pytest.raises(MimikaError) as e:
            CnnDetector(model=str(path)).detect(gray)
        assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_presets_and_settings():
    with pytest.raises(MimikaError, match="unknown detector"):
        get_cnn_detector("nope")
    with pytest.raises(MimikaError):
        CnnDetector(min_size=0)
    assert get_cnn_detector("cnn", min_size=40).min_size == 40


def test_shipped_weights_match_their_provenance():
    """PROVENANCE.md names the sha256 of the shipped file: regenerate both with scripts/make_detector.py."""
    path = detector_path()
    text = (path.parent / "PROVENANCE.md").read_text()
    assert hashlib.sha256(path.read_bytes()).hexdigest() in text
    assert (path.parent / "LICENSE-centerface.txt").read_text().startswith("MIT License")


def test_another_network_with_the_same_names_is_one_clear_error(tmp_path, gray):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 32, 32])  # 1 channel, fixed size
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("heatmap", "scale", "offset", "landmarks")]
    nodes = [helper.make_node("Identity", ["image"], [n]) for n in ("heatmap", "scale", "offset", "landmarks")]
    model = helper.make_model(helper.make_graph(nodes, "other", [image], outs), opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "other.onnx"
    onnx.save(model, str(path))
    with pytest.raises(MimikaError, match="failed to run") as e:
        CnnDetector(model=str(path)).detect(gray)
    assert str(path) in str(e.value)
