"""A trainable model (PyTorch): a network together with the configuration that travels with its
weights (architecture, labels, crop, normalization). Training, fine-tuning and export use it;
prediction can also run from its ONNX export without PyTorch (mimika/runtime.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..common.container import read_container, write_container
from ..common.errors import MimikaError
from ..common.labels import CKPLUS_EMOTIONS
from ..prepare.crop import CropSpec
from .architectures import build_net, get_architecture, glorot_init, head_of
from .config import MODEL_FORMAT, ModelConfig, resolve_model_path


class Model:
    """A network and its config. `predict_proba` takes face crops and gives class probabilities."""

    def __init__(self, config: ModelConfig, net: nn.Module, stored_dtype: str = "float32"):
        self.config = config
        self.net = net.eval()
        self.stored_dtype = stored_dtype  # how the file it came from stores the weights

    # construction -------------------------------------------------------------------------
    @classmethod
    def create(cls, arch: str = "seed", labels: list[str] | None = None, margin: float = 0.0,
               seed: int | None = None) -> "Model":
        """A new, untrained model (Glorot-uniform init)."""
        spec = get_architecture(arch)
        labels = list(labels or CKPLUS_EMOTIONS)
        if seed is not None:
            torch.manual_seed(seed)
        crop = CropSpec(width=spec.input_size[0], height=spec.input_size[1], margin=margin)
        return cls(ModelConfig(arch=arch, labels=labels, crop=crop), build_net(arch, len(labels)))

    @classmethod
    def load(cls, name_or_path: str | os.PathLike | None = None, allow_unchecked: bool | None = None) -> "Model":
        """Rebuild a trained model from its file, or a shipped model by name. `allow_unchecked`: load
        a file without a checksum (None: $MIMIKA_ALLOW_UNCHECKED)."""
        path = resolve_model_path(name_or_path, prefer=(".npz",))
        if path.suffix == ".onnx":
            raise MimikaError(f"{path}: an ONNX export holds no trainable weights; use the .npz model file")
        meta, arrays = read_container(path, MODEL_FORMAT, allow_unchecked=allow_unchecked)
        return cls.from_file_contents(path, meta, arrays)

    @classmethod
    def from_file_contents(cls, path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> "Model":
        try:
            config = ModelConfig.from_dict(meta.get("model"))
            net = build_net(config.arch, len(config.labels))
            state = {k[len("param/"):]: torch.from_numpy(v.astype(np.float32))
                     for k, v in arrays.items() if k.startswith("param/")}
            net.load_state_dict(state)
        except MimikaError as e:
            raise MimikaError(f"{path}: {e}") from None
        except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as e:
            raise MimikaError(f"{path}: model file does not fit its architecture ({type(e).__name__}: "
                              f"{str(e).splitlines()[0]})") from None
        half = all(v.dtype == np.float16 for k, v in arrays.items() if k.startswith("param/") and v.dtype.kind == "f")
        return cls(config, net, "float16" if half else "float32")

    # saving -------------------------------------------------------------------------------
    def file_contents(self, dtype: str = "float32") -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"param/{k}": v.detach().cpu().numpy().astype(dtype)
                  for k, v in self.net.state_dict().items()}
        return {"model": self.config.to_dict()}, arrays

    def save(self, path: str | os.PathLike, dtype: str = "float32") -> Path:
        """Write the model file (atomically); float16 halves its size."""
        meta, arrays = self.file_contents(dtype)
        return write_container(path, MODEL_FORMAT, meta, arrays)

    def rounded(self, dtype: str = "float16") -> "Model":
        """A copy whose weights are what a file saved with `dtype` holds: validation scores this,
        so its figure is the saved model's."""
        import copy
        net = copy.deepcopy(self.net)
        if dtype != "float32":
            with torch.no_grad():
                for t in net.state_dict().values():
                    if t.is_floating_point():
                        t.copy_(t.to(getattr(torch, dtype)).float())
        return Model(copy.deepcopy(self.config), net)

    # use ----------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return self.config.labels

    def to_input(self, crops: np.ndarray) -> torch.Tensor:
        """uint8 crops N x H x W -> normalized float tensor N x 1 x H x W."""
        return torch.from_numpy(self.config.normalize(crops))

    @torch.no_grad()
    def logits(self, x: np.ndarray) -> np.ndarray:
        self.net.eval()
        return self.net(torch.from_numpy(x)).numpy()

    def predict_proba(self, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities N x C (rows sum to 1) for uint8 face crops N x H x W of the input size."""
        return self.config.predict_proba(self.logits, crops, batch_size)

    def with_labels(self, labels: list[str], seed: int = 0) -> "Model":
        """This model with a new label list: the head is reset (rows of kept labels copied),
        as when fine-tuning on classes the model was not trained for. The new rows are drawn with
        `seed`, not from PyTorch's global random state, so a run does not depend on what ran before
        it in the process (each fold of a cross-validation starts alike)."""
        if list(labels) == self.labels:
            return self
        old = head_of(self.net)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            new = glorot_init(nn.Linear(old.in_features, len(labels)))
        with torch.no_grad():
            for i, name in enumerate(labels):
                if name in self.labels:
                    j = self.labels.index(name)
                    new.weight[i] = old.weight[j]
                    new.bias[i] = old.bias[j]
        self.net.head = new
        self.config.labels = list(labels)
        self.config.forget_calibration()
        return self


def device_logits(net, device: str):
    """A `logits(x)` function (numpy in, numpy out) running `net` on `device`, for
    `ModelConfig.predict_proba`; the model file stays device-independent."""
    import torch

    def logits(x: np.ndarray) -> np.ndarray:
        net.eval()
        with torch.no_grad():
            return net(torch.from_numpy(x).to(device)).float().cpu().numpy()
    return logits


def predict_proba(model, crops: np.ndarray, device: str = "cpu") -> np.ndarray:
    """`model.predict_proba(crops)` with a PyTorch model's network on `device`."""
    if device == "cpu" or not hasattr(model, "net"):
        return model.predict_proba(crops)
    model.net.to(device)
    try:
        return model.config.predict_proba(device_logits(model.net, device), crops, 256)
    finally:
        model.net.to("cpu")
