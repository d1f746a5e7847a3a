"""Model configuration and shipped-model lookup, without PyTorch: what prediction needs to know
about a model (labels, crop, normalization) travels with its weights in the model file."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from ..common.choices import PRIORS, TTA_NAMES, tta_mode
from ..common.errors import MimikaError
from ..prepare.crop import CropSpec

DEFAULT_MODEL = "ferplus"
MODEL_FORMAT = "mimika-model"  # the format tag of `.npz` model files and training checkpoints
METADATA_KEY = "mimika_config"  # the ONNX metadata entry that holds the config (written by export.py)
TTA_MODES = tuple(tta_mode(name) for name in TTA_NAMES)  # as stored in a config
TTA_SHIFT = 0.04  # "shift" moves the face by this share of the crop's width and height (2 pixels of 48)


def tta_views(crops: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views of face crops N x H x W whose logits test-time augmentation averages: the faces
    alone (""); with their mirror images ("flip"); or both, each also moved left, right, up and
    down by TTA_SHIFT of the crop size, the border pixels repeated ("shift": 10 views)."""
    if mode not in TTA_MODES:
        raise MimikaError(f"unknown test-time augmentation {mode!r}")
    views = [crops] if mode == "" else [crops, crops[:, :, ::-1]]
    if mode == "shift":
        dy, dx = (max(1, round(TTA_SHIFT * n)) for n in crops.shape[1:])
        h, w = crops.shape[1:]
        pad = np.pad(crops, ((0, 0), (dy, dy), (dx, dx)), mode="edge")
        moved = [pad[:, dy:dy + h, :w], pad[:, dy:dy + h, 2 * dx:], pad[:, :h, dx:dx + w], pad[:, 2 * dy:, dx:dx + w]]
        views += [v for m in moved for v in (m, m[:, :, ::-1])]
    return views


@dataclass
class ModelConfig:
    """Everything needed to use the weights, stored in the model file beside them."""

    arch: str
    labels: list[str]
    crop: CropSpec
    mean: float = 0.0  # input = (pixel / 255 - mean) / std
    std: float = 1.0
    tta: str = ""  # test-time augmentation: the views whose logits are averaged (`tta_views`)
    temperature: float = 1.0  # logits are divided by it before the softmax: fitted on validation data
    #                           (`mimika calibrate`) so that a probability says how often it is right
    class_prior: list[float] | None = None  # each label's share of the training faces (`mimika calibrate`)
    balance: float = 0.0  # how much of the training prior "balanced" answers remove, fitted on validation
    prior: str = "training"  # "training": classes as common as in training; "balanced": all equally likely
    info: dict = field(default_factory=dict)  # provenance: data, command, metrics

    @property
    def precision(self) -> str:
        """How the prediction file stores the network: "int8" (recorded by `mimika export --int8`) or "float"."""
        return self.info.get("onnx", {}).get("precision", "float")

    def to_dict(self) -> dict:
        d = {"arch": self.arch, "labels": list(self.labels), "crop": self.crop.to_dict(),
             "mean": self.mean, "std": self.std, "tta": self.tta, "info": self.info}
        if self.temperature != 1.0:  # written only when set: files without it read as before
            d["temperature"] = self.temperature
        if self.class_prior is not None:
            d["class_prior"], d["balance"] = list(self.class_prior), self.balance
        if self.prior != "training":
            d["prior"] = self.prior
        return d

    def forget_calibration(self) -> None:
        """Drop what `mimika calibrate` fitted: it belongs to the weights (and labels) it was fitted on."""
        self.temperature, self.class_prior, self.balance, self.prior = 1.0, None, 0.0, "training"

    def logit_offset(self) -> np.ndarray | None:
        """What answers under the "balanced" prior add to the logits: -balance x log(class prior)
        (logit adjustment, Menon et al. 2021): a class rare in training is no longer answered less
        often for being rare. None under the training prior."""
        if self.prior == "training":
            return None
        if self.class_prior is None:
            raise MimikaError("balanced answers need the training class shares: the model has none (`mimika "
                              "calibrate` fits them, with the balance, on validation data)")
        return -self.balance * np.log(np.asarray(self.class_prior, np.float64))

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """The config stored in a model file, checked field by field: a file is untrusted input."""
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise MimikaError(f"model config: {what}")
        need(isinstance(d, dict), "not a JSON object")
        need(isinstance(d.get("arch"), str) and d["arch"] != "", "'arch' must be a name")
        labels = d.get("labels")
        need(isinstance(labels, list) and 0 < len(labels) <= 1000
             and all(isinstance(n, str) and n for n in labels) and len(set(labels)) == len(labels),
             "'labels' must be a list of distinct names")
        crop = d.get("crop")
        need(isinstance(crop, dict) and set(crop) <= {"width", "height", "margin", "align"}, "'crop' must be "
             "{width, height, margin, align}")
        need(isinstance(crop.get("align", True), bool), "crop align must be true or false")
        size_ok = all(type(crop.get(k, 96)) is int and 8 <= crop.get(k, 96) <= 1024 for k in ("width", "height"))
        need(size_ok, "crop width and height must be whole numbers from 8 to 1024")
        margin = crop.get("margin", 0.0)
        need(_number(margin) and -0.4 <= margin <= 2, "crop margin must be a number from -0.4 to 2")
        mean, std = d.get("mean", 0.0), d.get("std", 1.0)
        need(_number(mean) and _number(std) and std > 0, "'mean' and 'std' must be numbers, std > 0")
        need(d.get("tta", "") in TTA_MODES, f"'tta' must be one of {TTA_MODES}")
        temperature = d.get("temperature", 1.0)
        need(_number(temperature) and 0.01 <= temperature <= 100, "'temperature' must be a number from 0.01 to 100")
        prior = d.get("class_prior")
        need(prior is None or (isinstance(prior, list) and len(prior) == len(labels)
                               and all(_number(v) and 0 < v <= 1 for v in prior) and abs(sum(prior) - 1) < 1e-3),
             "'class_prior' must be one share per label, each above 0, summing to 1")
        balance = d.get("balance", 0.0)
        need(_number(balance) and 0 <= balance <= 5, "'balance' must be a number from 0 to 5")
        need(d.get("prior", "training") in PRIORS, f"'prior' must be one of {', '.join(PRIORS)}")
        need(isinstance(d.get("info", {}), dict), "'info' must be a JSON object")
        return cls(arch=d["arch"], labels=list(labels), crop=CropSpec(**crop), mean=float(mean), std=float(std),
                   tta=d.get("tta", ""), temperature=float(temperature),
                   class_prior=None if prior is None else [float(v) for v in prior], balance=float(balance),
                   prior=d.get("prior", "training"), info=d.get("info", {}))

    def normalize(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops N x H x W -> float32 network input N x 1 x H x W."""
        x = np.asarray(crops, dtype=np.float32)[:, None]
        return (x * np.float32(1 / 255.0) - np.float32(self.mean)) * np.float32(1 / self.std)

    def prediction_logits(self, logits: Callable[[np.ndarray], np.ndarray], crops: np.ndarray,
                         batch_size: int = 256) -> np.ndarray:
        """The logits N x C that prediction turns into probabilities: `logits` (a network run on
        normalized input) on the face crops in batches, averaged over the views of the model's
        test-time augmentation (`tta_views`). Calibration fits on exactly these."""
        crops = np.asarray(crops)
        expect = (self.crop.height, self.crop.width)
        if crops.ndim != 3 or crops.shape[1:] != expect:
            raise MimikaError(f"face crops must be N x {expect[0]} x {expect[1]}, got {crops.shape}")
        views = len(tta_views(crops[:0], self.tta))
        step = max(1, batch_size // views)
        parts = [np.zeros((0, len(self.labels)))]
        for i in range(0, len(crops), step):
            chunk = np.concatenate(tta_views(crops[i:i + step], self.tta))  # all views in one run: one call's overhead
            z = np.asarray(logits(self.normalize(chunk)), np.float64)
            if z.shape != (len(chunk), len(self.labels)):
                raise MimikaError(f"the model's output has shape {z.shape}, expected {(len(chunk), len(self.labels))} "
                                  "(one score per label): the network does not fit its config")
            # the views' logits averaged: the temperature then never changes a decision
            parts.append(z.reshape(views, -1, z.shape[1]).mean(axis=0))
        return np.concatenate(parts)

    def predict_proba(self, logits: Callable[[np.ndarray], np.ndarray], crops: np.ndarray,
                      batch_size: int = 256) -> np.ndarray:
        """Probabilities N x C (rows sum to 1) for face crops: the softmax of the test-time logits,
        under the model's class prior and divided by its temperature. Shared by the PyTorch and
        ONNX back ends."""
        z = self.prediction_logits(logits, crops, batch_size)
        p = probabilities(z, self.temperature, self.logit_offset())
        if not np.isfinite(p).all():
            raise MimikaError("the model's output is not a number (NaN or infinite) for some faces: "
                              "the model file is damaged or was trained into divergence")
        return p / p.sum(axis=1, keepdims=True)


def with_settings(model: Predictor, **changes) -> Predictor:
    """The model with other `ModelConfig` fields (tta, prior, temperature, ...): a copy sharing the
    network, so the given object, perhaps used elsewhere, is left as it was. The new config is
    checked as a loaded one would be; a prior the model cannot give is one clear error."""
    import copy
    from dataclasses import replace
    other = copy.copy(model)
    other.config = ModelConfig.from_dict(replace(model.config, **changes).to_dict())
    other.config.logit_offset()
    return other


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@runtime_checkable
class Predictor(Protocol):
    """What recognition needs of a model: its config, its labels, and probabilities for face crops.
    `OnnxModel` (runtime.py) and the PyTorch `Model` (model.py) both provide it."""

    config: ModelConfig

    @property
    def labels(self) -> list[str]: ...

    def predict_proba(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray: ...


def probabilities(z: np.ndarray, temperature: float = 1.0, offset: np.ndarray | None = None) -> np.ndarray:
    """Softmax probabilities of prediction logits `z` N x C, plus a logit `offset` (the balanced
    prior's) and divided by the temperature: the one formula prediction and calibration share."""
    z = np.asarray(z, np.float64)
    z = (z if offset is None else z + offset) / temperature
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def shipped_models() -> dict[str, dict[str, Path]]:
    """Models shipped inside the package: name -> {".onnx": prediction file, ".npz": training file}."""
    folder = resources.files("mimika") / "models"
    found: dict[str, dict[str, Path]] = {}
    for p in folder.iterdir():
        suffix = Path(p.name).suffix
        if suffix in (".npz", ".onnx"):
            found.setdefault(Path(p.name).stem, {})[suffix] = Path(str(p))
    return found


def resolve_model_path(name_or_path: str | os.PathLike | None, prefer: tuple[str, ...] = (".onnx", ".npz")
                       ) -> Path:
    """A shipped model's name (None: the default) or a file path, as a path; for a shipped model
    the first of its files in `prefer` (prediction prefers ONNX, training the .npz)."""
    name = DEFAULT_MODEL if name_or_path is None else str(name_or_path)
    shipped = shipped_models()
    if name in shipped and not Path(name).exists():
        files = shipped[name]
        for suffix in prefer:
            if suffix in files:
                return files[suffix]
        raise MimikaError(f"shipped model {name!r} has no {' or '.join(prefer)} file")
    p = Path(name)
    if p.exists() or p.suffix or os.sep in name:
        return p
    raise MimikaError(f"{name}: no such model file or shipped model (shipped: {', '.join(sorted(shipped)) or 'none'})")
