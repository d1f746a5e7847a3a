"""`--min-face` / `min_size` drops smaller faces for every detector, the CNN too (issue #29 item 12),
through the API as the CLI calls it."""

import cv2
import numpy as np
import pytest

from mimika import Recognizer
from mimika.prepare.detection import get_detector


@pytest.fixture(scope="module")
def big_and_small(astronaut_bgr) -> np.ndarray:
    """The astronaut (her face about 100 px) and beside her the photo shrunk to 0.4 (a face of about 40 px)."""
    small = cv2.resize(astronaut_bgr, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 512 + 60 + small.shape[1], 3), 127, np.uint8)
    canvas[:, :512] = astronaut_bgr
    canvas[150:150 + small.shape[0], 572:572 + small.shape[1]] = small
    return canvas


def face_sides(detector, image) -> list[int]:
    return sorted(max(f.box[2:]) for f in Recognizer(detector=detector).get(image, color="bgr"))


@pytest.mark.parametrize("name", ["cnn", "cnn-thorough", "cnn-fast", "haar-thorough"])
def test_min_face_drops_the_smaller_face(big_and_small, name):
    everything = face_sides(get_detector(name, min_size=24), big_and_small)
    assert len(everything) == 2 and everything[0] < 60 < everything[1], everything  # both faces found
    kept = face_sides(get_detector(name, min_size=60), big_and_small)
    assert len(kept) == 1 and kept[0] > 80, kept  # the big face only (its box as that scale frames it)
    assert face_sides(get_detector(name, min_size=2 * everything[1]), big_and_small) == []


def test_the_presets_keep_what_they_find_below_their_scale():
    """Without --min-face the CNN presets drop no box (their published recall counts those faces)."""
    assert get_detector("cnn").min_face == 0 and get_detector("cnn", min_size=30).min_face == 30


def test_the_cli_flag_reaches_the_cnn(big_and_small, tmp_path, capsys):
    import json

    from mimika.cli import main
    cv2.imwrite(str(tmp_path / "two.png"), big_and_small)
    assert main(["predict", str(tmp_path / "two.png"), "--json", "--min-face", "60"]) == 0
    assert len(json.loads(capsys.readouterr().out)[0]["faces"]) == 1
    assert main(["predict", str(tmp_path / "two.png"), "--json", "--min-face", "250"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["faces"] == []
