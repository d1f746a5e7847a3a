"""Prediction without PyTorch: models exported to ONNX, run by ONNX Runtime.

An exported file carries the model config (labels, crop, normalization) as ONNX metadata, so
it is used exactly like the `.npz` it came from, and the SHA-256 of its graph and config, so damaged
weights or labels are refused instead of giving other answers. Files are read into memory and handed to ONNX
Runtime as bytes: a graph cannot make it read other files (ONNX "external data"). A new model is
run once on two blank faces at load, so a graph that cannot run on faces of its input size fails
there, with one line, not in the middle of a batch. `load_predictor` picks the back end: ONNX for
`.onnx` files and shipped models, PyTorch for `.npz` training files (when PyTorch is installed).

ONNX Runtime runs on the GPU through its CUDA provider when the installed package has one
(`onnxruntime-gpu`, the `gpu` extra) and on the CPU otherwise; `device` picks ("auto": the GPU
when there is one). `OnnxModel.provider` says which one a model runs on.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..common.container import check_unchecked
from ..common.errors import MimikaError, first_line
from ..common.sessions import providers, session_options
from .config import METADATA_KEY, ModelConfig, Predictor, resolve_model_path

CHECKSUM_KEY = "mimika_sha256"  # of the graph and the config together
MAX_MODEL_BYTES = 1 << 30


def graph_bytes(model: bytes) -> bytes:
    """The serialized graph (field 7 of ONNX's ModelProto), found by walking the protobuf's top-level
    fields (every wire type, groups too, as the protobuf parser ONNX Runtime uses skips them); the
    checksum covers it and the config (in the metadata, field 14). A second graph field would be
    merged into the first by that parser, so it is refused: the checksum covers one."""
    pos, n = 0, len(model)
    graph = None

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= n or shift > 63:
                raise ValueError("truncated protobuf")
            b = model[pos]
            pos += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                return value

    def skip(wire: int) -> None:
        nonlocal pos
        if wire == 0:
            varint()
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            size = varint()  # read first: `pos += varint()` would add to the position before the length
            pos += size
        else:
            raise ValueError(f"protobuf wire type {wire} where a field's value belongs")
        if pos > n:
            raise ValueError("truncated protobuf")

    while pos < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if field == 7 and wire == 2:
            size = varint()
            if pos + size > n:
                raise ValueError("truncated protobuf")
            if graph is not None:
                raise ValueError("two graphs in one model")
            graph = model[pos:pos + size]
            pos += size
        elif wire == 3:  # a group: fields up to its end marker, groups nested in it included
            open_groups = [field]
            while open_groups:
                if pos >= n:
                    raise ValueError("truncated protobuf group")
                inner = varint()
                if inner & 7 == 3:
                    open_groups.append(inner >> 3)
                elif inner & 7 == 4:
                    if inner >> 3 != open_groups.pop():
                        raise ValueError("protobuf group ends with another field number")
                else:
                    skip(inner & 7)
        else:
            skip(wire)
    if graph is None:
        raise ValueError("no graph in the file")
    return graph


def model_checksum(model: bytes, config_json: str) -> str:
    """SHA-256 of the serialized graph and the config stored beside it: other weights or another
    label list both make a file damaged."""
    return hashlib.sha256(graph_bytes(model) + b"\0" + config_json.encode()).hexdigest()


class OnnxModel:
    """A model exported to ONNX: `predict_proba(crops)` like `mimika.model.Model`. `threads`: ONNX
    Runtime's intra-op threads (None: one per core); `device`: see `providers`; `allow_unchecked`:
    load a file without a checksum (None: $MIMIKA_ALLOW_UNCHECKED; see `common/container.py`)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None, device: str = "auto",
                 allow_unchecked: bool | None = None):
        import onnxruntime as ort

        self.path, self.device = Path(path), device
        if not self.path.is_file():
            raise MimikaError(f"{self.path}: no such model file")
        if self.path.stat().st_size > MAX_MODEL_BYTES:
            raise MimikaError(f"{self.path}: larger than {MAX_MODEL_BYTES >> 20} MiB: not a mimika model")
        data = self.path.read_bytes()
        try:
            self.session = ort.InferenceSession(data, session_options(threads), providers=providers(device))
            meta = self.session.get_modelmeta().custom_metadata_map
            if METADATA_KEY not in meta:
                raise MimikaError(f"{self.path}: an ONNX model without mimika's configuration (export it with "
                                  "`mimika export`)")
            self.config = ModelConfig.from_dict(json.loads(meta[METADATA_KEY]))
        except MimikaError as e:
            raise MimikaError(str(e) if str(e).startswith(str(self.path)) else f"{self.path}: {e}") from None
        except Exception as e:  # onnxruntime and json raise their own exception types for bad files
            raise MimikaError(f"{self.path}: not a readable ONNX model ({type(e).__name__}: "
                              f"{first_line(e)})") from None
        if CHECKSUM_KEY not in meta:
            check_unchecked(self.path, "an ONNX model", allow_unchecked)
        else:
            try:
                stored = model_checksum(data, meta[METADATA_KEY])
            except ValueError as e:
                raise MimikaError(f"{self.path}: not a readable ONNX model (protobuf: {e})") from None
            if meta[CHECKSUM_KEY] != stored:
                raise MimikaError(f"{self.path}: damaged model file (its graph or config does not match the "
                                  "checksum stored with it)")
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise MimikaError(f"{self.path}: the graph takes {len(inputs)} inputs, not one batch of faces")
        self.input_name = inputs[0].name
        self.provider = self.session.get_providers()[0]  # the one it runs on (CUDA may fall back to the CPU)
        if device == "cuda" and self.provider != "CUDAExecutionProvider":
            raise MimikaError(f"{self.path}: --device cuda, but ONNX Runtime could not start its CUDA provider "
                              "(no usable GPU or CUDA libraries)")
        c = self.config.crop
        self.predict_proba(np.stack([np.zeros((c.height, c.width), np.uint8),
                                     np.full((c.height, c.width), 128, np.uint8)]))  # fails here if it cannot run

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    def logits(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: x})[0]
        except Exception as e:  # onnxruntime's own exception types
            raise MimikaError(f"{self.path}: the model failed to run ({type(e).__name__}: {first_line(e)})") from None

    def predict_proba(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities N x C (rows sum to 1) for uint8 face crops N x H x W of the input size."""
        try:
            return self.config.predict_proba(self.logits, crops, batch_size)
        except MimikaError as e:
            raise MimikaError(str(e) if str(e).startswith(str(self.path)) else f"{self.path}: {e}") from None


def provider_summary() -> str:
    """Which ONNX Runtime providers this installation has, and which one prediction uses."""
    import onnxruntime as ort
    available = ort.get_available_providers()
    used = providers("auto")[0]
    hint = "" if used == "CUDAExecutionProvider" else "; for a GPU install the gpu extra (onnxruntime-gpu)"
    return (f"prediction runs on {used} (ONNX Runtime {ort.__version__}, {ort.get_device()} build; "
            f"providers here: {', '.join(available)}{hint})")


def load_predictor(name_or_path: str | os.PathLike | None = None, threads: int | None = None,
                   device: str = "auto", allow_unchecked: bool | None = None) -> Predictor:
    """A model ready to predict: an OnnxModel, or a PyTorch Model for a `.npz` training file (which
    stays on the CPU: `network.model.predict_proba` runs one on a GPU). `allow_unchecked`: load a
    file without a checksum (None: $MIMIKA_ALLOW_UNCHECKED)."""
    path = resolve_model_path(name_or_path, prefer=(".onnx", ".npz"))
    if path.suffix == ".onnx":
        return OnnxModel(path, threads, device, allow_unchecked)
    try:
        from .model import Model
    except ImportError:
        raise MimikaError(f"{path}: a training model file needs PyTorch (pip install 'mimika[train]'), "
                          "or export it once with `mimika export` and use the .onnx") from None
    return Model.load(path, allow_unchecked)
