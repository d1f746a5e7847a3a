"""mimika: find every face in an image and say how strongly it shows each emotion.

The four modules of the original design (the module map, file by file, is in the README):
  1. input preparation  - images, video, detection, crop, datasets/
  2. network            - nets (architectures), model (network + config), config, container, export
  3. training           - options, schedules, training (the loop), checkpoint, crossval, api
  4. recognition        - recognition (Recognizer), results (Face, ImageResult), runtime (ONNX), annotate

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
    "create_model": "api", "fine_tune": "api", "load_model": "api", "train": "api",
    "CropSpec": "crop", "crop_face": "crop",
    "FaceSet": "datasets", "load_ckplus": "datasets", "load_class_folders": "datasets", "load_dataset": "datasets",
    "train_val_split": "datasets", "evaluation_set": "datasets",
    "HaarDetector": "detection", "detect_faces": "detection", "get_detector": "detection",
    "MimikaError": "errors", "evaluate": "evaluation", "load_gray": "images", "load_image": "images",
    "read_image": "images",
    "CKPLUS_CODES": "labels", "CKPLUS_EMOTIONS": "labels",
    "Model": "model", "shipped_models": "config", "ModelConfig": "config", "Predictor": "config",
    "Recognizer": "recognition", "recognize": "recognition",
    "Face": "results", "ImageResult": "results", "Results": "results",
    "OnnxModel": "runtime", "load_predictor": "runtime",
    "TrainOptions": "options", "export_onnx": "export",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        try:
            module = import_module(f".{_EXPORTS[name]}", __name__)
        except ModuleNotFoundError as e:
            if e.name != "torch":
                raise
            from .errors import NEEDS_TORCH
            raise ModuleNotFoundError(f"mimika.{name} {NEEDS_TORCH}", name="torch") from None
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mimika' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
