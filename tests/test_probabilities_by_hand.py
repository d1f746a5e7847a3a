"""Probabilities against figures worked out by hand (issue #29: tests that compared the code with
itself, a softmax recomputed from the same helpers, are replaced by these): a model whose
"network" answers a known logit, through normalization, test-time augmentation, temperature and
the balanced prior, gives the probabilities written below."""

import math

import numpy as np
import pytest

from mimika.network.config import ModelConfig
from mimika.prepare.crop import CropSpec

LN4 = math.log(4)


def top_left_logits(x: np.ndarray) -> np.ndarray:
    """A stand-in network over normalized input N x 1 x H x W: label "a" scores ln 4 times the
    top-left input value, label "b" scores 0."""
    return np.stack([LN4 * x[:, 0, 0, 0], np.zeros(len(x))], axis=1)


def config(**fields) -> ModelConfig:
    return ModelConfig(arch="seed", labels=["a", "b"], crop=CropSpec(width=3, height=3), **fields)


def face(**pixels) -> np.ndarray:
    """One 3 x 3 crop, all 0 but the named pixels (a..i, row by row) at 255."""
    names = "abcdefghi"
    img = np.zeros((1, 3, 3), np.uint8)
    for name in pixels:
        img[0].flat[names.index(name)] = 255
    return img


def p_a(cfg: ModelConfig, crops: np.ndarray) -> float:
    p = cfg.predict_proba(top_left_logits, crops)
    assert p.shape == (1, 2) and abs(p.sum() - 1) < 1e-12
    return float(p[0, 0])


def test_no_augmentation_no_temperature():
    # the top-left pixel 255 -> input 1.0 -> logits (ln 4, 0) -> p = 4 / (4 + 1)
    assert p_a(config(), face(a=1)) == pytest.approx(0.8, abs=1e-9)
    assert p_a(config(), face(c=1)) == pytest.approx(0.5, abs=1e-9)  # logits (0, 0)


def test_normalization_uses_mean_and_std():
    # input = (1.0 - 0.5) / 0.25 = 2 -> logits (2 ln 4, 0) -> p = 16 / 17
    assert p_a(config(mean=0.5, std=0.25), face(a=1)) == pytest.approx(16 / 17, abs=1e-6)
    # a zero pixel: (0 - 0.5) / 0.25 = -2 -> p = (1/16) / (1/16 + 1) = 1 / 17
    assert p_a(config(mean=0.5, std=0.25), face()) == pytest.approx(1 / 17, abs=1e-6)


def test_the_temperature_divides_the_logits():
    # (ln 4, 0) / 2 = (ln 2, 0) -> p = 2 / 3; times 0.5: (ln 16, 0) -> 16 / 17
    assert p_a(config(temperature=2.0), face(a=1)) == pytest.approx(2 / 3, abs=1e-9)
    assert p_a(config(temperature=0.5), face(a=1)) == pytest.approx(16 / 17, abs=1e-9)


def test_flip_averages_the_logits_of_the_face_and_its_mirror_image():
    # the mirror image's top-left pixel is the face's top-right one (c): logits (ln 4 + 0) / 2 = ln 2 -> 2 / 3
    assert p_a(config(tta="flip"), face(a=1)) == pytest.approx(2 / 3, abs=1e-9)
    assert p_a(config(tta="flip"), face(c=1)) == pytest.approx(2 / 3, abs=1e-9)
    assert p_a(config(tta="flip"), face(a=1, c=1)) == pytest.approx(0.8, abs=1e-9)
    # averaged before the temperature, then divided: ln 2 / 0.5 = ln 4 -> 0.8 (averaged probabilities would not)
    assert p_a(config(tta="flip", temperature=0.5), face(a=1)) == pytest.approx(0.8, abs=1e-9)


def test_shift_averages_ten_views():
    """The ten views' top-left pixels, for crop rows (a b c / d e f / g h i) moved by one pixel with
    the border repeated: the face a, its mirror c; moved right a (mirror b), moved left b (mirror c),
    moved down a (mirror c), moved up d (mirror f). So a counts 3 times, b 2, c 3, d 1, f 1 of 10."""
    for pixel, share in {"a": 3, "b": 2, "c": 3, "d": 1, "f": 1, "e": 0, "g": 0, "h": 0, "i": 0}.items():
        want = 1 / (1 + math.exp(-LN4 * share / 10))
        assert p_a(config(tta="shift"), face(**{pixel: 1})) == pytest.approx(want, abs=1e-9), pixel


def test_the_balanced_prior_adds_minus_balance_log_share():
    # logits (ln 4, 0) are what a training prior of shares (0.8, 0.2) alone gives; balanced with
    # balance 1 adds (-ln 0.8, -ln 0.2): (ln 4 + ln 1.25, ln 5) = (ln 5, ln 5) -> 0.5
    cfg = config(class_prior=[0.8, 0.2], balance=1.0, prior="balanced")
    assert p_a(cfg, face(a=1)) == pytest.approx(0.5, abs=1e-9)
    # balance 0.5 adds half of it: (ln 4 + 0.5 ln 1.25, 0.5 ln 5) -> 4 sqrt(1.25) / (4 sqrt(1.25) + sqrt(5)) = 2 / 3
    cfg.balance = 0.5
    assert p_a(cfg, face(a=1)) == pytest.approx(2 / 3, abs=1e-9)
    cfg.prior = "training"
    assert p_a(cfg, face(a=1)) == pytest.approx(0.8, abs=1e-9)
