"""Probabilities you can trust: the calibration error, the temperature fit, and the temperature
stored in model files (issue #11)."""

from pathlib import Path

import numpy as np
import pytest

import mimika
from mimika import MimikaError, Model, OnnxModel, create_model, export_onnx
from mimika.cli import main
from mimika.common.metrics import expected_calibration_error
from mimika.training.calibration import probabilities, temperature_for


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
    p = probabilities(z, true_t)
    y = np.array([rng.choice(8, p=row) for row in p])
    t = temperature_for(z, y)
    assert t == pytest.approx(true_t, rel=0.1)
    over = expected_calibration_error(probabilities(z, 1.0), y)
    assert expected_calibration_error(probabilities(z, t), y) < over
    with pytest.raises(MimikaError, match="at least 50 faces"):
        temperature_for(z[:10], y[:10])


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


def test_the_fitted_balance_removes_a_prior_baked_into_the_logits():
    """Logits that add log(training share) to an even evidence: on validation faces of even
    classes the best balanced accuracy is found by subtracting about that prior, and the rare
    classes' recall comes back."""
    from mimika.common.metrics import balanced_accuracy
    from mimika.training.calibration import balance_for, class_prior
    rng = np.random.default_rng(1)
    shares = np.array([0.7, 0.2, 0.07, 0.03])
    y = rng.integers(0, 4, 4000)
    z = 1.5 * np.eye(4)[y] + rng.normal(0, 1, (4000, 4)) + np.log(shares)
    prior = class_prior(rng.choice(4, 20000, p=shares), 4)
    assert np.allclose(prior, shares, atol=0.01)
    b = balance_for(z, y, 1.0, prior)
    assert 0.7 <= b <= 1.3, b
    plain = balanced_accuracy(y, z.argmax(1), 4)
    balanced = balanced_accuracy(y, probabilities(z, 1.0, -b * np.log(prior)).argmax(1), 4)
    assert balanced > plain + 0.1, (plain, balanced)
    assert class_prior(np.array([0, 0, 1]), 3)[2] == pytest.approx(1 / 4)  # a class without faces counts as one


def test_calibrate_stores_the_prior_and_prediction_can_answer_balanced(tmp_path, astronaut_face, capsys):
    """`calibrate` writes the temperature, the training shares and the balance into the file;
    `--prior balanced` (CLI) / `prior="balanced"` (API) then subtracts balance x log(share) from
    the logits, so the rarest class gains probability on every face; `configure --fitted-from`
    copies it all to the other file of the same weights; a file without shares refuses it in
    one line. `fit_calibration` fits the same for a model in memory and writes nothing."""
    import cv2

    from mimika import Recognizer
    from mimika.training.calibration import calibrate, fit_calibration
    model = create_model("vgg48", seed=2)
    model.save(tmp_path / "m.npz")
    onnx_path = export_onnx(model, tmp_path / "m.onnx", half=False)
    photo = str(Path(mimika.__file__).parent / "samples" / "astronaut.jpg")
    assert main(["predict", photo, "--model", str(tmp_path / "m.onnx"), "--prior", "balanced"]) == 2
    assert "m.onnx: --prior balanced: balanced answers need the training class shares" in capsys.readouterr().err
    rng = np.random.default_rng(0)
    faces = np.stack([cv2.resize(np.roll(astronaut_face, (int(dy), int(dx)), (0, 1)), (48, 48))
                      for dy, dx in rng.integers(-20, 20, (60, 2))])
    y = rng.integers(0, 7, 60)
    train_y = rng.choice(7, 5000, p=[0.4, 0.1, 0.01, 0.02, 0.05, 0.3, 0.12])
    fitted = calibrate(onnx_path, faces, y, train_y)
    stored = Path(onnx_path).read_bytes()
    again = fit_calibration(OnnxModel(onnx_path), faces, y, train_y)  # for a model in memory: no file written
    assert (again.temperature, again.class_prior, again.balance) == (fitted.temperature, fitted.class_prior,
                                                                     fitted.balance)
    assert Path(onnx_path).read_bytes() == stored
    onnx_model = OnnxModel(onnx_path)
    c = onnx_model.config
    assert c.class_prior == fitted.class_prior and c.balance == fitted.balance and c.prior == "training"
    c.balance = 1.0  # a clear shift, whatever this random network's fit gave
    trained = onnx_model.predict_proba(faces)
    c.prior = "balanced"
    balanced = onnx_model.predict_proba(faces)
    # the formula itself, by hand: tests/test_probabilities_by_hand.py
    assert (balanced[:, 2] > trained[:, 2]).all() and (balanced[:, 0] < trained[:, 0]).all()
    assert main(["configure", str(tmp_path / "m.npz"), "--fitted-from", str(onnx_path)]) == 0
    npz = Model.load(tmp_path / "m.npz")
    assert (npz.config.class_prior, npz.config.balance) == (fitted.class_prior, fitted.balance)
    rec = Recognizer(onnx_path, prior="balanced")
    assert rec.model.config.prior == "balanced" and Recognizer(onnx_path).model.config.prior == "training"
    assert main(["configure", str(onnx_path), "--prior", "balanced"]) == 0
    assert OnnxModel(onnx_path).config.prior == "balanced"
    other = export_onnx(create_model("vgg48", seed=3), tmp_path / "other.onnx", half=False)
    assert main(["configure", str(other), "--prior", "balanced"]) == 2
    assert "balanced answers need the training class shares" in capsys.readouterr().err


@pytest.mark.parametrize("field, value, why", [
    ("class_prior", [0.5, 0.5], "one share per label"), ("class_prior", [0.0, 0.5] + [0.1] * 5, "each above 0"),
    ("balance", -1, "'balance' must be"), ("prior", "uniform", "'prior' must be one of")])
def test_bad_prior_fields_are_refused(field, value, why):
    from mimika.network.config import ModelConfig
    d = create_model("vgg48").config.to_dict()
    d.update({"class_prior": [1 / 7] * 7, "balance": 0.5, field: value})
    with pytest.raises(MimikaError, match=why):
        ModelConfig.from_dict(d)
