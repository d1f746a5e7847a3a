"""mimika: find every face in an image and say how strongly it shows each emotion.

The four modules of the original design are its four wings, `prepare/`, `network/`, `training/` and
`recognition/`, over the ground they share (`common/`), with the shell above them: this API, the
command (`cli`), the service (`serve/`) and the reports (`reports/`). `python scripts/module_map.py`
prints every module by wing.

    >>> import mimika
    >>> faces = mimika.recognize("photo.jpg")
    >>> faces[0].box, faces[0].label, faces[0].scores

Names are imported on first use, so prediction never loads PyTorch (only training needs it).
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mimika")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_EXPORTS = {
    "create_model": "api", "fine_tune": "api", "interpolate": "api", "load_model": "api", "train": "api",
    "CropSpec": "prepare.crop", "crop_face": "prepare.crop",
    "FaceSet": "prepare.datasets", "load_ckplus": "prepare.datasets", "load_class_folders": "prepare.datasets",
    "load_dataset": "prepare.datasets", "train_val_split": "prepare.datasets", "evaluation_set": "prepare.datasets",
    "HaarDetector": "prepare.detection", "detect_faces": "prepare.detection", "get_detector": "prepare.detection",
    "MimikaError": "common.errors", "evaluate": "reports.evaluation", "load_gray": "prepare.images",
    "load_image": "prepare.images", "read_image": "prepare.images",
    "CKPLUS_CODES": "common.labels", "CKPLUS_EMOTIONS": "common.labels",
    "Model": "network.model", "shipped_models": "network.config", "ModelConfig": "network.config",
    "Predictor": "network.config",
    "Recognizer": "recognition.recognizer", "recognize": "recognition.recognizer",
    "Face": "recognition.results", "ImageResult": "recognition.results", "Results": "recognition.results",
    "OnnxModel": "network.predictor", "load_predictor": "network.predictor",
    "TrainOptions": "training.options", "export_onnx": "network.export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        try:
            module = import_module(f".{_EXPORTS[name]}", __name__)
        except ModuleNotFoundError as e:
            if e.name != "torch":
                raise
            from .common.errors import NEEDS_TORCH
            raise ModuleNotFoundError(f"mimika.{name} {NEEDS_TORCH}", name="torch") from None
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mimika' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)


from ._moved import install as _install_moved  # noqa: E402

_install_moved()

