"""What is fitted on validation data after training, and stored in the model's config: the
temperature that makes probabilities trustworthy, and the class prior with its balance for
answers that do not favour the classes common in training.

A network trained with cross-entropy is usually over-confident: of the faces it gives 0.9, fewer
than 90% are right. Dividing its logits by one number, the temperature (stored in the model's
config, `ModelConfig.temperature`), fitted to minimise the negative log-likelihood of a
validation set, fixes most of it without changing a single decision (the most likely emotion
stays the same: a model that averages its mirror image averages the two views' logits before
the temperature). Never fit it on a test split.

A network learns how common each class was in training (FER+: a third neutral, 0.5% contempt) and
answers a rare class only on strong evidence. On photos where the classes are spread otherwise
(posed expressions, other cameras) that costs the rare classes most of their recall. Subtracting
`balance` x log(the training share of each class) from the logits removes that preference (logit
adjustment, Menon et al. 2021); the balance is chosen for the best balanced accuracy on validation
data, and used when a prediction asks for the "balanced" prior (`ModelConfig.prior`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.errors import MimikaError
from ..common.metrics import balanced_accuracy, expected_calibration_error
from ..network.config import probabilities
from ..prepare.datasets.faceset import split_name

BALANCES = np.round(np.arange(0.0, 3.0001, 0.05), 2)  # the balances tried by `balance_for`


def validation_split(split: str) -> str:
    """`split` if calibration may be fitted on its faces: a validation split (PublicTest) or the
    subjects a model's training held out ("heldout"); a test split (PrivateTest, "test", in any of
    its spellings) and all of a set are refused, so no test face ever shapes what is fitted."""
    try:
        test = split_name(split) == "PrivateTest"
    except MimikaError:  # "heldout", or a name the split's reader refuses itself
        test = False
    if test or split.lower() == "all":
        raise MimikaError(f"--split {split}: calibration is fitted on validation faces, never on a test split")
    return split


def prediction_logits(model, faces: np.ndarray) -> np.ndarray:
    """The logits prediction turns into probabilities (mirror images averaged in when the model
    asks for them), computed once so that every temperature and balance is tried on them."""
    return model.config.prediction_logits(model.logits, faces)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1)).mean())


def temperature_for(z: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the NLL of test-time logits `z` for labels `y`: a log-scale
    search from 0.2 to 5, refined."""
    if len(y) < 50:
        raise MimikaError(f"calibration needs a validation set of at least 50 faces, got {len(y)}")
    loss = lambda t: nll(probabilities(z, t), y)  # noqa: E731
    best = min(np.exp(np.linspace(np.log(0.2), np.log(5.0), 161)), key=loss)
    return float(round(min(best * np.exp(np.linspace(-0.03, 0.03, 61)), key=loss), 4))


def class_shares(counts: np.ndarray) -> np.ndarray:
    """Each class's share of `counts` (faces, or summed vote distributions), a class without any
    counted as one face, so that its log is finite."""
    counts = np.maximum(np.asarray(counts, np.float64), 1.0)
    return counts / counts.sum()


def class_prior(y: np.ndarray, n: int) -> list[float]:
    """Each class's share of the training faces `y` (indices), as stored in a model's config."""
    return [float(round(v, 6)) for v in class_shares(np.bincount(np.asarray(y), minlength=n))]


def balance_for(z: np.ndarray, y: np.ndarray, temperature: float, prior: list[float]) -> float:
    """The balance (from `BALANCES`) whose answers have the best balanced accuracy on validation
    faces with labels `y`; the smallest of equals, so the answers move no further than they must."""
    log_prior = np.log(np.asarray(prior))
    score = [balanced_accuracy(y, probabilities(z, temperature, -b * log_prior).argmax(1), len(prior))
             for b in BALANCES]
    return float(BALANCES[int(np.argmax(score))])


@dataclass
class Fitted:
    """What `calibrate` fitted, and its validation figures before and after."""

    temperature: float
    ece_before: float
    ece_after: float
    class_prior: list[float]
    balance: float
    balanced_accuracy: tuple[float, float]  # training prior, balanced prior
    accuracy: tuple[float, float]


def calibrate(path, faces: np.ndarray, y: np.ndarray, train_y: np.ndarray, model=None,
              prior: list[float] | None = None) -> Fitted:
    """Fit the temperature and the balance of the model file at `path` on validation faces (labels
    `y`, indices into its labels), with the class prior of its training faces' labels `train_y`
    (or `prior`, the shares a balanced run drew), and store them in the file. `model`: the file
    already loaded, if the caller has it."""
    from ..network.export import update_model_config
    from ..network.predictor import load_predictor
    model = model or load_predictor(path)
    f = fit_calibration(model, faces, y, train_y, prior)
    update_model_config(path, model, temperature=f.temperature, class_prior=f.class_prior, balance=f.balance)
    return f


def fit_calibration(model, faces: np.ndarray, y: np.ndarray, train_y: np.ndarray,
                    prior: list[float] | None = None) -> Fitted:
    """What `calibrate` stores, fitted for a model in memory (`with_settings` applies it)."""
    n = len(model.labels)
    z = prediction_logits(model, faces)  # the network runs once; every fit is tried on its logits
    before = expected_calibration_error(probabilities(z, model.config.temperature), y)
    temperature = temperature_for(z, y)
    prior = prior or class_prior(train_y, n)
    balance = balance_for(z, y, temperature, prior)
    plain = probabilities(z, temperature).argmax(1)
    balanced = probabilities(z, temperature, -balance * np.log(prior)).argmax(1)
    return Fitted(temperature, before, expected_calibration_error(probabilities(z, temperature), y), prior, balance,
                  (balanced_accuracy(y, plain, n), balanced_accuracy(y, balanced, n)),
                  (float((plain == y).mean()), float((balanced == y).mean())))
