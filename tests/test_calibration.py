"""Probabilities you can trust: the calibration error, the temperature fit, and the temperature
stored in model files (issue #11)."""

from types import SimpleNamespace

import numpy as np
import pytest

from mimika import MimikaError, Model, OnnxModel, create_model, export_onnx
from mimika.calibration import expected_calibration_error, fit_temperature, probabilities
from mimika.cli import main


class LogitsAsFaces:
    """A stand-in network whose "faces" are its logits: the fit sees exactly the logits we drew."""
    config = SimpleNamespace(tta="", normalize=lambda v: v)

    def logits(self, x):
        return x


def test_calibration_error_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.6, 0.4]])
    y = np.array([0, 1, 0, 0])
    # bins: 0.9 (right: gap 0.1), 0.8 (wrong: gap 0.8), 0.6 x2 (both right: gap 0.4); weights 1/4, 1/4, 1/2
    assert expected_calibration_error(probs, y) == pytest.approx(0.25 * 0.1 + 0.25 * 0.8 + 0.5 * 0.4)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_t):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (6000, 8))
    p = probabilities([z], true_t)
    y = np.array([rng.choice(8, p=row) for row in p])
    t = fit_temperature(LogitsAsFaces(), z, y)
    assert t == pytest.approx(true_t, rel=0.1)
    over = expected_calibration_error(probabilities([z], 1.0), y)
    assert expected_calibration_error(probabilities([z], t), y) < over
    with pytest.raises(MimikaError, match="at least 50 faces"):
        fit_temperature(LogitsAsFaces(), z[:10], y[:10])


def test_temperature_travels_in_npz_and_onnx_files_and_keeps_the_decision(tmp_path, astronaut_face, capsys):
    import cv2
    model = create_model("vgg48", seed=1)
    model.save(tmp_path / "m.npz")
    onnx_path = export_onnx(model, tmp_path / "m.onnx", half=False)
    faces = np.stack([cv2.resize(astronaut_face, (48, 48)), cv2.resize(astronaut_face[::2, ::2], (48, 48))])
    before = OnnxModel(onnx_path).predict_proba(faces)
    assert main(["configure", str(onnx_path), "--temperature", "0.25"]) == 0
    assert main(["configure", str(tmp_path / "m.npz"), "--temperature", "0.25"]) == 0
    assert "temperature 0.25" in capsys.readouterr().out
    onnx_model, npz_model = OnnxModel(onnx_path), Model.load(tmp_path / "m.npz")  # checksums still hold
    assert onnx_model.config.temperature == npz_model.config.temperature == 0.25
    after = onnx_model.predict_proba(faces)
    assert (after.max(1) > before.max(1)).all() and (after.argmax(1) == before.argmax(1)).all()
    assert np.allclose(npz_model.predict_proba(faces), after, atol=1e-3)
    with pytest.raises(SystemExit) as e:  # out of range: argparse's one line
        main(["configure", str(onnx_path), "--temperature", "0"])
    assert e.value.code == 2 and "--temperature: 0 is out of range" in capsys.readouterr().err
