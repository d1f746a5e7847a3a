"""Recognition: an image in; per face, its box and a probability for each emotion."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .crop import crop_face
from .detection import PRESETS, Box, HaarDetector
from .errors import MimikaError
from .images import ImageLike, load_gray
from .runtime import load_predictor


@dataclass
class Face:
    """One face: its box (x, y, w, h) and each emotion's probability, most likely first."""

    box: Box
    scores: dict[str, float]

    @property
    def label(self) -> str:
        return next(iter(self.scores))

    @property
    def score(self) -> float:
        return next(iter(self.scores.values()))

    def to_dict(self) -> dict:
        return {"box": list(self.box), "label": self.label, "scores": dict(self.scores)}


@dataclass
class ImageResult:
    """The faces of one input file, or why it could not be read."""

    file: str
    faces: list[Face] = field(default_factory=list)
    error: str | None = None
    frame: int | None = None  # for videos: the frame's index and time in seconds
    time: float | None = None
    image: np.ndarray | None = field(default=None, repr=False)  # the video frame, when asked to keep it

    def to_dict(self) -> dict:
        d: dict = {"file": self.file}
        if self.frame is not None:
            d.update(frame=self.frame, time=round(self.time or 0.0, 3))
        d["faces"] = [f.to_dict() for f in self.faces]
        if self.error:
            d["error"] = self.error
        return d


class Recognizer:
    """A model and a face detector, loaded once: `get(image)` returns the faces in an image.

    `model`: a shipped model's name (None: the default), a `.onnx` or `.npz` file, or a loaded
    model (anything with `config` and `predict_proba`, e.g. a freshly trained `Model`)."""

    def __init__(self, model=None, detector: HaarDetector | None = None):
        self.model = model if hasattr(model, "predict_proba") else load_predictor(model)
        self.detector = detector or PRESETS["default"]

    def get(self, image: ImageLike) -> list[Face]:
        """All faces in a path or an array (RGB or gray), left to right."""
        return self.classify(load_gray(image))

    def classify(self, gray: np.ndarray) -> list[Face]:
        boxes = self.detector(gray)
        if not boxes:
            return []
        crops = np.stack([crop_face(gray, b, self.model.config.crop) for b in boxes])
        probs = self.model.predict_proba(crops)
        return [Face(box, self.ranked(p)) for box, p in zip(boxes, probs)]

    def ranked(self, p: np.ndarray) -> dict[str, float]:
        order = np.argsort(-p, kind="stable")
        return {self.model.labels[i]: float(p[i]) for i in order}

    def get_files(self, paths: Iterable[str | os.PathLike], batch_faces: int = 64) -> Iterator[ImageResult]:
        """One result per file, in order; a bad file yields a result with `error` set and the batch
        goes on. Faces of consecutive images are classified together, `batch_faces` at a time,
        and only their crops are kept meanwhile, so memory stays bounded however many files."""
        return self._stream(((ImageResult(str(p)), lambda p=p: load_gray(p)) for p in paths), batch_faces)

    def get_video(self, path: str | os.PathLike, every: int = 1, batch_faces: int = 64,
                  keep_frames: bool = False) -> Iterator[ImageResult]:
        """One result per analysed frame (every `every`-th), with its index and time (and the
        BGR frame itself in `image` if `keep_frames`, for drawing)."""
        from .images import to_gray
        from .video import read_frames
        return self._stream(((ImageResult(str(path), frame=i, time=t, image=frame if keep_frames else None),
                              lambda f=frame: to_gray(f, order="bgr"))
                             for i, t, frame in read_frames(path, every)), batch_faces)

    def _stream(self, items, batch_faces: int) -> Iterator[ImageResult]:
        pending: list[tuple[ImageResult, list[Box], list[np.ndarray]]] = []
        n_crops = 0
        for result, load in items:
            boxes, crops = [], []
            try:
                gray = load()
                boxes = self.detector(gray)
                crops = [crop_face(gray, b, self.model.config.crop) for b in boxes]
            except MimikaError as e:
                result.error = str(e)
            pending.append((result, boxes, crops))
            n_crops += len(crops)
            if n_crops >= batch_faces or len(pending) >= batch_faces:
                yield from self._classify_pending(pending)
                pending, n_crops = [], 0
        yield from self._classify_pending(pending)

    def _classify_pending(self, pending) -> Iterator[ImageResult]:
        crops = [c for _, _, cs in pending for c in cs]
        probs = self.model.predict_proba(np.stack(crops)) if crops else np.zeros((0, 0))
        i = 0
        for result, boxes, cs in pending:
            result.faces = [Face(box, self.ranked(p)) for box, p in zip(boxes, probs[i:i + len(cs)])]
            i += len(cs)
            yield result


_default: dict[str, Recognizer] = {}


def recognize(image: ImageLike, model=None) -> list[Face]:
    """The faces in an image with their emotion scores (the default model unless one is named)."""
    if hasattr(model, "predict_proba"):
        return Recognizer(model).get(image)
    key = str(model)
    if key not in _default:
        _default[key] = Recognizer(model)
    return _default[key].get(image)


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, folders replaced by the images and videos below them."""
    from .images import list_images
    from .video import list_videos
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(list_images(p) + list_videos(p)) if p.is_dir() else [p])
    return out
