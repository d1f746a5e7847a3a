"""Prediction without PyTorch: models exported to ONNX, run by ONNX Runtime.

An exported file carries the model config (labels, crop, normalization) as ONNX metadata, so
it is used exactly like the `.npz` it came from. `load_predictor` picks the back end: ONNX for
`.onnx` files and shipped models, PyTorch for `.npz` training files (when PyTorch is installed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .config import ModelConfig, resolve_model_path
from .errors import MimikaError

METADATA_KEY = "mimika_config"


class OnnxModel:
    """A model exported to ONNX: `predict_proba(crops)` like `mimika.model.Model`."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise MimikaError(f"{self.path}: no such model file")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # no busy-waiting between runs: spinning threads would steal the cores from face detection
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
            meta = self.session.get_modelmeta().custom_metadata_map
            self.config = ModelConfig.from_dict(json.loads(meta[METADATA_KEY]))
        except KeyError:
            raise MimikaError(f"{self.path}: an ONNX model without mimika's configuration (export it with "
                              "`mimika export`)") from None
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise MimikaError(f"{self.path}: not a readable ONNX model ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None
        self.input_name = self.session.get_inputs()[0].name

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]

    def predict_proba(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities N x C (rows sum to 1) for uint8 face crops N x H x W of the input size."""
        return self.config.predict_proba(self.logits, crops, batch_size)


def load_predictor(name_or_path: str | os.PathLike | None = None):
    """A model ready to predict: an OnnxModel, or a PyTorch Model for a `.npz` training file."""
    path = resolve_model_path(name_or_path, prefer=(".onnx", ".npz"))
    if path.suffix == ".onnx":
        return OnnxModel(path)
    try:
        from .model import Model
    except ImportError:
        raise MimikaError(f"{path}: a training model file needs PyTorch (pip install 'mimika[train]'), "
                          "or export it once with `mimika export` and use the .onnx") from None
    return Model.load(path)
