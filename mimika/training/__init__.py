"""3. Training: the options, the loop (cross-entropy, SGD with Nesterov momentum), learning-rate
schedules, checkpoints with exact resume, augmentation, torchrun, cross-validation, calibration.
Imports the ground, input preparation and the network.

Names are imported on first use: `mimika.training.options` is read by `mimika --help` without
loading PyTorch, which the loop needs.
"""

from importlib import import_module

_EXPORTS = {name: "loop" for name in ("EpochStats", "Trainer", "evaluate_loss", "history_json",
                                      "cpu_has_native_bf16", "save_dtype")}
_EXPORTS["TrainOptions"] = "options"
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'mimika.training' has no attribute {name!r}")
