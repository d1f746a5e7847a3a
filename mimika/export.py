"""Export a trained model to ONNX for the light prediction runtime (mimika/runtime.py).

The ONNX file carries the model config as metadata; float16 weights are stored as float16
initializers followed by Cast nodes, so the export is as small as the `.npz` and computes
exactly what the PyTorch model loaded from that `.npz` computes.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .fileio import write_bytes
from .model import Model
from .runtime import METADATA_KEY

OPSET = 17


def export_onnx(model: Model, path: str | os.PathLike, half: bool = True) -> Path:
    """Write `model` as ONNX (batch size free) with its config inside; atomically."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    net = model.net.eval()
    c = model.config.crop
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but exact and dependency-light
        torch.onnx.export(net, torch.zeros(1, 1, c.height, c.width), buf, dynamo=False, opset_version=OPSET,
                          input_names=["faces"], output_names=["logits"],
                          dynamic_axes={"faces": {0: "n"}, "logits": {0: "n"}},
                          do_constant_folding=False)  # keeps BN apart: fp16-exact weights; ORT fuses it
    proto = onnx.load_from_string(buf.getvalue())
    if half:
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
    meta = proto.metadata_props.add()
    meta.key, meta.value = METADATA_KEY, json.dumps(model.config.to_dict())
    proto.producer_name = "mimika"
    onnx.checker.check_model(proto)
    return write_bytes(path, proto.SerializeToString())
