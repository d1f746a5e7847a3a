"""Probabilities you can trust: temperature scaling fitted on validation data, and the expected
calibration error that measures it.

A network trained with cross-entropy is usually over-confident: of the faces it gives 0.9, fewer
than 90% are right. Dividing its logits by one number, the temperature (stored in the model's
config, `ModelConfig.temperature`), fitted to minimise the negative log-likelihood of a
validation set, fixes most of it without changing a single view's decision (the most likely
emotion stays the same; a model that averages its mirror image averages the scaled views'
probabilities, which can move a few borderline faces). Never fit it on a test split.
"""

from __future__ import annotations

import numpy as np

from .errors import MimikaError

ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """The share-weighted gap between confidence (top probability) and accuracy over `bins`
    equal-width confidence bins."""
    probs = np.asarray(probs, np.float64)
    if len(probs) == 0:
        return 0.0
    conf, pred = probs.max(1), probs.argmax(1)
    right = (pred == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            ece += inside.mean() * abs(conf[inside].mean() - right[inside].mean())
    return float(ece)


def view_logits(model, faces: np.ndarray, batch_size: int = 256) -> list[np.ndarray]:
    """The network's logits for the faces, one array per test-time view (the faces, and their mirror
    images when the model averages a flip), so a temperature can be tried without running it again."""
    faces = np.asarray(faces)
    views = [faces] + ([faces[:, :, ::-1]] if model.config.tta == "flip" else [])
    return [np.concatenate([np.asarray(model.logits(model.config.normalize(v[i:i + batch_size])), np.float64)
                            for i in range(0, len(v), batch_size)]) for v in views]


def probabilities(logits: list[np.ndarray], temperature: float) -> np.ndarray:
    """What `ModelConfig.predict_proba` gives with this temperature: the views' softmaxes averaged."""
    out = 0
    for z in logits:
        z = z / temperature
        e = np.exp(z - z.max(1, keepdims=True))
        out = out + e / e.sum(1, keepdims=True)
    return out / len(logits)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1)).mean())


def fit_temperature(model, faces: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the validation NLL of `model` (an OnnxModel or Model) on
    `faces` with labels `y` (indices into its labels)."""
    return temperature_for(view_logits(model, faces), y)


def temperature_for(logits: list[np.ndarray], y: np.ndarray) -> float:
    """The temperature that minimises the NLL of the views' `logits` (from `view_logits`) for labels
    `y`: a log-scale search from 0.2 to 5, refined."""
    if len(y) < 50:
        raise MimikaError(f"calibration needs a validation set of at least 50 faces, got {len(y)}")
    loss = lambda t: nll(probabilities(logits, t), y)  # noqa: E731
    best = min(np.exp(np.linspace(np.log(0.2), np.log(5.0), 161)), key=loss)
    return float(round(min(best * np.exp(np.linspace(-0.03, 0.03, 61)), key=loss), 4))


def write_temperature(path, temperature: float) -> None:
    """Store the temperature in a model file's config: a `.npz` is saved again (its weights as they
    were), an `.onnx` gets its config metadata and checksum rewritten (the graph untouched)."""
    from pathlib import Path
    path = Path(path)
    if path.suffix == ".npz":
        from .model import Model
        model = Model.load(path)
        model.config.temperature = float(temperature)
        model.save(path, dtype=model.stored_dtype)
    else:
        from .export import rewrite_config
        from .runtime import OnnxModel
        config = OnnxModel(path).config
        config.temperature = float(temperature)
        rewrite_config(path, config.to_dict())


def calibrate(path, faces: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Fit the temperature of the model file at `path` on validation faces (labels `y`, indices into
    its labels) and store it in the file. Returns (temperature, ECE before, ECE after)."""
    from .runtime import load_predictor
    model = load_predictor(path)
    z = view_logits(model, faces)  # the network runs once; every temperature is tried on its logits
    before = expected_calibration_error(probabilities(z, model.config.temperature), y)
    temperature = temperature_for(z, y)
    write_temperature(path, temperature)
    return temperature, before, expected_calibration_error(probabilities(z, temperature), y)

