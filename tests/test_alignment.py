"""Landmarks and aligned crops: a tilted face reaches the model as an upright one."""

import json

import cv2
import numpy as np
import pytest

import mimika
from mimika.cli import main
from mimika.prepare.crop import ALIGN_TEMPLATE, CropSpec, aligned_crop, crop_face
from mimika.prepare.detection import get_detector


def rotated(gray, degrees):
    h, w = gray.shape
    M = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(gray, M, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _corr(a, b):
    a, b = a.astype(float).ravel(), b.astype(float).ravel()
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def gray(astronaut_bgr):
    return cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)


@pytest.mark.parametrize("degrees", [20, 35])
def test_a_tilted_face_is_cropped_upright(gray, degrees):
    spec = CropSpec(48, 48)
    cnn = get_detector("cnn")
    upright = cnn.detect(gray)[0]
    tilted = cnn.detect(rotated(gray, degrees))[0]
    ref = aligned_crop(gray, upright.landmarks, spec)
    aligned = aligned_crop(rotated(gray, degrees), tilted.landmarks, spec)
    boxed = crop_face(rotated(gray, degrees), tilted.box, spec)
    assert _corr(aligned, ref) > 0.85 and _corr(aligned, ref) > _corr(boxed, ref) + 0.1


def test_the_aligned_crop_puts_the_landmarks_on_the_template(gray):
    spec = CropSpec(96, 96)
    d = get_detector("cnn").detect(rotated(gray, 25))[0]
    M = mimika.prepare.crop.eye_level_similarity(np.array(d.landmarks), ALIGN_TEMPLATE * 96)
    mapped = np.array(d.landmarks) @ M[:, :2].T + M[:, 2]
    assert abs(mapped[0, 1] - mapped[1, 1]) < 1e-6  # the eyes level
    assert np.abs(mapped - ALIGN_TEMPLATE * 96).max() < 6  # each landmark within a few pixels of its place
    assert aligned_crop(gray, d.landmarks, spec).shape == (96, 96)


def test_landmarks_in_json_and_on_annotated_copies(astronaut_path, tmp_path, capsys):
    assert main(["predict", str(astronaut_path), "--json", "--annotate", str(tmp_path / "a"), "--landmarks"]) == 0
    face, = json.loads(capsys.readouterr().out)[0]["faces"]
    (rx, ry), (lx, ly), (nx, ny), (mx1, my1), (mx2, my2) = face["landmarks"]
    x, y, w, h = face["box"]
    assert rx < lx and max(ry, ly) < ny < min(my1, my2)  # right eye on the image's left; eyes, nose, mouth
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in face["landmarks"])
    drawn = cv2.imread(str(tmp_path / "a" / "astronaut.jpg"))
    b, g, r = drawn[round(ny), round(nx)]
    assert r > 150 and g < 100  # a red dot on the nose tip
    assert main(["predict", str(astronaut_path), "--json", "--detector", "haar"]) == 0
    assert "landmarks" not in json.loads(capsys.readouterr().out)[0]["faces"][0]  # a cascade gives none


def test_a_tilted_face_reads_as_the_upright_one(gray):
    rec = mimika.Recognizer()
    upright = rec.classify(gray)[0]
    for degrees in (-40, 30):
        face, = rec.classify(rotated(gray, degrees))
        assert face.label == upright.label and abs(face.score - upright.score) < 0.05
    boxed = mimika.Recognizer(align=False).classify(rotated(gray, 40))
    assert len(boxed) == 1  # found, and cropped as a box (no alignment)


def test_models_can_refuse_alignment(gray):
    rec = mimika.Recognizer()
    rec.model.config.crop = CropSpec(**{**rec.model.config.crop.to_dict(), "align": False})
    d = rec.detector.detect(gray)[0]
    assert np.array_equal(crop_face(gray, d.box, rec.model.config.crop, d.landmarks),
                          crop_face(gray, d.box, rec.model.config.crop))
