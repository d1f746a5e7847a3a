"""Export a trained model to ONNX for the light prediction runtime (mimika/runtime.py).

The ONNX file carries the model config as metadata; float16 weights are stored as float16
initializers followed by Cast nodes, so the export is as small as the `.npz` and computes
exactly what the PyTorch model loaded from that `.npz` computes.

`quantize=True` writes an INT8 model instead (ONNX Runtime static quantization: int8 weights per
channel, uint8 activations whose ranges are calibrated on real faces): about 3x faster on CPUs
with VNNI and half the size, at the price of probabilities that differ slightly from PyTorch's;
its accuracy must be measured again (`mimika evaluate`), and the file records how it was made.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..common.errors import MimikaError
from ..common.fileio import write_bytes
from .config import METADATA_KEY, tta_views
from .model import Model
from .predictor import CHECKSUM_KEY, model_checksum

OPSET = 17


def export_onnx(model: Model, path: str | os.PathLike, half: bool = True, quantize: bool = False,
                calibration: np.ndarray | None = None, calibration_source: str = "") -> Path:
    """Write `model` as ONNX (batch size free) with its config inside; atomically.

    quantize: INT8, with activation ranges calibrated on `calibration` (uint8 face crops N x H x W
    of the model's input size, a few hundred real faces from the training data)."""
    if quantize:
        if calibration is None or len(calibration) == 0:
            raise MimikaError("INT8 export needs calibration faces (--calibration DATA)")
        config = model.config.to_dict()
        config["info"] = dict(config["info"], onnx={
            "precision": "int8", "calibration": calibration_source, "calibration_faces": int(len(calibration))})
        return _finish(_quantized(model, calibration), config, path)
    proto = _exported(model)
    if half:
        _store_half(proto)
    return _finish(proto, model.config.to_dict(), path)


def check_export(model: Model, path: str | os.PathLike, device: str = "auto",
                 faces: np.ndarray | None = None) -> tuple[float, str, str]:
    """Run the exported file through ONNX Runtime on `device` (its provider for it) and the model
    through PyTorch on that device, on real faces (`faces`, or crops of the bundled astronaut photo
    around its face): (largest probability difference, ONNX Runtime's provider, PyTorch's device)."""
    from ..common.devices import resolve_device
    from .model import predict_proba
    from .predictor import OnnxModel
    onnx_model = OnnxModel(path, device=device)
    torch_device = resolve_device(device)
    if faces is None:
        faces = sample_faces(model.config.crop)
    diff = np.abs(onnx_model.predict_proba(faces) - predict_proba(model, faces, torch_device))
    return float(diff.max()), onnx_model.provider, torch_device


def sample_faces(crop, n: int = 16) -> np.ndarray:
    """n crops of the bundled public-domain astronaut photo's face, its box shifted and scaled a little."""
    from ..prepare.crop import crop_face
    from ..prepare.detection import detect_faces
    from ..prepare.images import load_gray
    gray = load_gray(Path(str(resources.files("mimika") / "samples" / "astronaut.jpg")))
    x, y, w, h = max(detect_faces(gray), key=lambda b: b[2] * b[3])
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        s = rng.uniform(0.9, 1.1)
        dx, dy = rng.uniform(-0.08, 0.08, 2) * w
        box = (int(x + dx), int(y + dy), int(w * s), int(h * s))
        out.append(crop_face(gray, box, crop))
    return np.stack(out)


def calibration_faces(data: str | os.PathLike, crop, n: int = 1024, log=None) -> tuple[np.ndarray, str]:
    """n faces drawn (seed 0) from a labelled set's Training split, or from all of it when it has
    none, to calibrate an INT8 export; with a description of where they came from."""
    from ..prepare.datasets import load_dataset
    faces = load_dataset(data, crop, log=log)
    split = "Training" if faces.splits is not None and "Training" in set(faces.splits) else ""
    if split:
        faces = faces.split(split)
    n = min(n, len(faces))
    idx = np.sort(np.random.default_rng(0).choice(len(faces), n, replace=False))
    return faces.faces[idx], f"{Path(data).name}{' ' + split if split else ''}, {n} faces drawn with seed 0"


def _exported(model: Model):
    """The network as an ONNX graph, float32, batch size free."""
    import onnx

    net = model.net.eval()
    c = model.config.crop
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but exact and dependency-light
        torch.onnx.export(net, torch.zeros(1, 1, c.height, c.width), buf, dynamo=False, opset_version=OPSET,
                          input_names=["faces"], output_names=["logits"],
                          dynamic_axes={"faces": {0: "n"}, "logits": {0: "n"}},
                          do_constant_folding=False)  # keeps BN apart: fp16-exact weights; ORT fuses it
    return onnx.load_from_string(buf.getvalue())


def _store_half(proto) -> None:
    """Float32 weights that float16 holds exactly become float16 initializers plus a Cast."""
    from onnx import TensorProto, helper, numpy_helper
    graph = proto.graph
    casts, keep = [], []
    for init in graph.initializer:
        arr = numpy_helper.to_array(init)
        if init.data_type == TensorProto.FLOAT and arr.size > 16:
            half_arr = arr.astype(np.float16)
            if not np.array_equal(half_arr.astype(np.float32), arr):
                keep.append(init)  # not float16-exact: stays float32 so outputs match
                continue
            keep.append(numpy_helper.from_array(half_arr, init.name + "__fp16"))
            casts.append(helper.make_node("Cast", [init.name + "__fp16"], [init.name], to=TensorProto.FLOAT))
        else:
            keep.append(init)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)


def _quantized(model: Model, calibration: np.ndarray):
    """INT8 graph by ONNX Runtime's static quantizer (QDQ format, per-channel weights)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    # calibrate on what the network will see: every view of the model's test-time augmentation
    faces = np.concatenate(tta_views(np.asarray(calibration), model.config.tta))
    batches = [{"faces": model.config.normalize(faces[i:i + 64])} for i in range(0, len(faces), 64)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, out = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(_exported(model), fp32)
        quant_pre_process(fp32, pre)  # shape inference and BN folding, so convolutions quantize whole
        quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return onnx.load(out)


def _finish(proto, config: dict, path: str | os.PathLike) -> Path:
    import onnx
    meta = proto.metadata_props.add()
    meta.key, meta.value = METADATA_KEY, json.dumps(config)
    proto.producer_name = "mimika"
    onnx.checker.check_model(proto)
    checksum = proto.metadata_props.add()  # the SHA-256 of the graph and the config, verified on load
    checksum.key, checksum.value = CHECKSUM_KEY, model_checksum(proto.SerializeToString(), meta.value)
    return write_bytes(path, proto.SerializeToString())


def update_model_config(path: str | os.PathLike, model=None, **fields):
    """Change `ModelConfig` fields of a model file (what `calibrate` fitted, how it is used): a `.npz`
    is saved again (its weights as they were), an `.onnx` gets its config metadata and checksum
    rewritten (the graph untouched). The new config is checked as a loaded one would be (a balanced
    prior without class shares is refused here, not at prediction). `model`: the file already
    loaded, if the caller has it. Returns the new config."""
    from .config import with_settings
    from .predictor import load_predictor
    path = Path(path)
    changed = with_settings(model or load_predictor(path), **fields)
    if path.suffix == ".npz":
        changed.save(path, dtype=changed.stored_dtype)
    else:
        rewrite_config(path, changed.config.to_dict())
    return changed.config


def rewrite_config(path: str | os.PathLike, config: dict) -> Path:
    """Replace the config stored in an exported file (and its checksum); the graph is not touched."""
    import onnx
    path = Path(path)
    proto = onnx.load_from_string(path.read_bytes())
    kept = [p for p in proto.metadata_props if p.key not in (METADATA_KEY, CHECKSUM_KEY)]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    return _finish(proto, config, path)
