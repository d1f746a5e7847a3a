"""A trainable model (PyTorch): a network together with the configuration that travels with its
weights (architecture, labels, crop, normalization). Training, fine-tuning and export use it;
prediction can also run from its ONNX export without PyTorch (mimika/runtime.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import DEFAULT_MODEL, ModelConfig, resolve_model_path, shipped_models  # noqa: F401
from .crop import CropSpec
from .errors import MimikaError
from .labels import CKPLUS_EMOTIONS
from .modelfile import read_npz, write_npz
from .nets import build_net, get_architecture, glorot_init, head_of

class Model:
    """A network and its config. `predict_proba` takes face crops and gives class probabilities."""

    def __init__(self, config: ModelConfig, net: nn.Module):
        self.config = config
        self.net = net.eval()

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
    def load(cls, name_or_path: str | os.PathLike | None = None) -> "Model":
        """Rebuild a trained model from its file, or a shipped model by name."""
        path = resolve_model_path(name_or_path, prefer=(".npz",))
        if path.suffix == ".onnx":
            raise MimikaError(f"{path}: an ONNX export holds no trainable weights; use the .npz model file")
        meta, arrays = read_npz(path)
        return cls.from_file_contents(path, meta, arrays)

    @classmethod
    def from_file_contents(cls, path: Path, meta: dict, arrays: dict[str, np.ndarray]) -> "Model":
        try:
            config = ModelConfig.from_dict(meta["model"])
            net = build_net(config.arch, len(config.labels))
            state = {k[len("param/"):]: torch.from_numpy(v.astype(np.float32))
                     for k, v in arrays.items() if k.startswith("param/")}
            net.load_state_dict(state)
        except MimikaError as e:
            raise MimikaError(f"{path}: {e}") from None
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise MimikaError(f"{path}: model file does not fit its architecture ({type(e).__name__}: "
                              f"{str(e).splitlines()[0]})") from None
        return cls(config, net)

    # saving -------------------------------------------------------------------------------
    def file_contents(self, dtype: str = "float32") -> tuple[dict, dict[str, np.ndarray]]:
        arrays = {f"param/{k}": v.detach().cpu().numpy().astype(dtype)
                  for k, v in self.net.state_dict().items()}
        return {"model": self.config.to_dict()}, arrays

    def save(self, path: str | os.PathLike, dtype: str = "float32") -> Path:
        """Write the model file (atomically); float16 halves its size."""
        meta, arrays = self.file_contents(dtype)
        return write_npz(path, meta, arrays)

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

    def with_labels(self, labels: list[str]) -> "Model":
        """This model with a new label list: the head is reset (rows of kept labels copied),
        as when fine-tuning on classes the model was not trained for."""
        if list(labels) == self.labels:
            return self
        old = head_of(self.net)
        new = glorot_init(nn.Linear(old.in_features, len(labels)))
        with torch.no_grad():
            for i, name in enumerate(labels):
                if name in self.labels:
                    j = self.labels.index(name)
                    new.weight[i] = old.weight[j]
                    new.bias[i] = old.bias[j]
        self.net.head = new
        self.config.labels = list(labels)
        return self
