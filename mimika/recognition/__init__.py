"""4. Recognition: an image in; per face its box and a probability per emotion. The `Recognizer`,
the results that format themselves, tracking through video, annotated copies, worker processes.
Imports the ground, input preparation and the network (never PyTorch).

Names are imported on first use, as in `mimika` itself.
"""

from importlib import import_module

_EXPORTS = {"Recognizer": "recognizer", "Source": "recognizer", "expand_inputs": "recognizer",
            "recognize": "recognizer", "Face": "results", "ImageResult": "results", "Results": "results"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'mimika.recognition' has no attribute {name!r}")
