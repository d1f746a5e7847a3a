"""Recognition: an image in; per face, its box and a probability for each emotion.

`Recognizer` loads a model and a face detector once; `get(image)` returns the faces of one image,
`get_files` / `get_video` stream results for many, and `predict(sources)` does what the
`mimika predict` command does: folders expanded, images batched, videos read frame by frame, in
input order, with annotated copies written when asked. A bad input gives a result with `error`
set; the others go on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

from ..common.choices import CROP_MODES
from ..common.errors import MimikaError
from ..network.config import Predictor, with_settings
from ..network.predictor import load_predictor
from ..prepare.boxes import Box, Detection
from ..prepare.crop import crop_face, whole_image_box
from ..prepare.detection import DEFAULT_DETECTOR, get_detector
from ..prepare.images import LoadedImage, load_image
from .results import Face, ImageResult, Results

if TYPE_CHECKING:
    from .annotate import Copies

__all__ = ["Face", "ImageResult", "Recognizer", "Results", "Source", "expand_inputs", "recognize"]


@dataclass(frozen=True)
class Source:
    """One input: `path` as given or found in a folder ("-": standard input), `name` its path
    below the folder it was found in (or its file name), for naming outputs."""

    path: str
    name: Path
    video: bool = False


class Recognizer:
    """A model and a face detector, loaded once: `get(image)` returns the faces in an image.

    `model`: a shipped model's name (None: the default), a `.onnx` or `.npz` file, or a loaded
    model (a `Predictor`: e.g. a freshly trained `Model`). `detector`: a detector or a preset's
    name (`mimika.detection.PRESETS`; None: the default, the CNN). `crop="whole"` takes every image
    as one face (pre-cropped face sets) instead of detecting faces. `align=False` crops boxes even
    where the detector gives landmarks. `prior="balanced"` answers as if every emotion were equally
    common (posed faces, other cameras: docs/cross-domain.md); "training" as common as in
    the training photos; "model" as the model file says."""

    def __init__(self, model: str | os.PathLike | Predictor | None = None, detector=None, crop: str = "detect",
                 align: bool = True, prior: str = "model"):
        if crop not in CROP_MODES:
            raise MimikaError(f"crop must be one of {', '.join(CROP_MODES)}, got {crop!r}")
        self.model = model if isinstance(model, Predictor) else load_predictor(model)
        if prior != "model":
            self.model = with_settings(self.model, prior=prior)
        self.detector = detector if hasattr(detector, "detect") else get_detector(detector or DEFAULT_DETECTOR)
        self.crop, self.align = crop, align

    # one image ---------------------------------------------------------------------------
    def get(self, image, color: str = "rgb") -> list[Face]:
        """All faces in an image, left to right. `image`: a path, "-" (standard input), encoded
        bytes, a PIL image, or an array (`color` "rgb" or "bgr" for 3/4 channels)."""
        return self._classified(self.load(image, color))

    def get_result(self, image, color: str = "rgb", name: str | None = None) -> ImageResult:
        """One image's result object, as `predict` gives it per file: its faces and the reader's notes,
        or the error (`error` set, nothing raised). `name` labels it (default: the reader's)."""
        holder: dict = {}

        def load():
            img = self.load(image, color)
            holder["source"] = img.source
            return img
        result = next(self._stream([(ImageResult(name or ""), load)], batch_faces=64))
        result.file = result.file or holder.get("source", "<image>")
        return result

    def load(self, source, color: str = "rgb") -> LoadedImage:
        """The image, with a colour copy for a detector that finds more faces in colour (the CNN)."""
        keep = self.crop != "whole" and bool(getattr(self.detector, "takes_color", False))
        return load_image(source, color=color, keep_color=keep)

    def classify(self, gray: np.ndarray) -> list[Face]:
        """The faces of an 8-bit grayscale image."""
        return self._classified(LoadedImage(gray, 1.0, (gray.shape[1], gray.shape[0]), "<array>"))

    def _classified(self, img) -> list[Face]:
        found, crops = self._detect_and_crop(img)
        return self._faces_of(found, self.model.predict_proba(np.stack(crops)) if crops else [], img.scale)

    def detections(self, image: np.ndarray) -> list[Detection]:
        """The faces to classify in a gray (or, for a detector that takes colour, BGR) image, left to
        right (the whole image with crop="whole")."""
        if self.crop == "whole":
            return [Detection(whole_image_box(image), 1.0)]
        return sorted(self.detector.detect(image), key=lambda d: (d.box[0], d.box[1]))

    def ranked(self, p: np.ndarray) -> dict[str, float]:
        order = np.argsort(-p, kind="stable")
        return {self.model.labels[i]: float(p[i]) for i in order}

    def _detect_and_crop(self, img) -> tuple[list[Detection], list[np.ndarray]]:
        found = self.detections(img.for_detector)
        spec = self.model.config.crop
        return found, [crop_face(img.gray, d.box, spec, d.landmarks if self.align else None) for d in found]

    def _faces_of(self, found: list[Detection], probs, scale: float) -> list[Face]:
        return [Face(_scaled(d.box, scale), self.ranked(p), _scaled_points(d.landmarks, scale))
                for d, p in zip(found, probs)]

    # many images -------------------------------------------------------------------------
    def get_files(self, paths: Iterable[str | os.PathLike], batch_faces: int = 64) -> Iterator[ImageResult]:
        """One result per file, in order; a bad file yields a result with `error` set and the batch
        goes on. Faces of consecutive images are classified together, `batch_faces` at a time,
        and only their crops are kept meanwhile, so memory stays bounded however many files."""
        return self._stream(((ImageResult(str(p)), lambda p=p: self.load(p)) for p in paths), batch_faces)

    def get_video(self, path: str | os.PathLike, every: int = 1, batch_faces: int = 64,
                  keep_frames: bool = False) -> Iterator[ImageResult]:
        """One result per analysed frame (every `every`-th), with its index and time (and the
        BGR frame itself in `image` if `keep_frames`, for drawing)."""
        from ..prepare.video import read_frames
        return self._stream(((ImageResult(str(path), frame=i, time=t, image=frame if keep_frames else None),
                              lambda f=frame: self.load(f, "bgr"))
                             for i, t, frame in read_frames(path, every)), batch_faces)

    def predict(self, sources: Iterable[str | os.PathLike | Source], every: int = 1,
                annotate: str | os.PathLike | Copies | None = None, batch_faces: int = 64,
                smoothing: float = 0.0, draw_landmarks: bool = False) -> Iterator[ImageResult]:
        """Results for files, folders (expanded), videos (every `every`-th frame) and "-" (standard
        input), in input order; with `annotate` (a folder, or the `Copies` that `plan_copies` planned
        for exactly these sources), a copy of each image and video with boxes and labels is written
        below that folder, mirroring the inputs' relative paths. The faces of a
        video are tracked (`Face.track_id`); `smoothing` in [0, 1) averages each track's
        probabilities over time (exponential moving average); `draw_landmarks` marks each face's
        eyes, nose and mouth on the annotated copies."""
        from .annotate import Copies, VideoCopy, annotate_image, plan_copies
        from .tracking import FaceTracker
        if every < 1:
            raise MimikaError(f"every must be at least 1, got {every}")
        items = [x for s in sources for x in ([s] if isinstance(s, Source) else expand_inputs([s]))]
        copies = annotate if isinstance(annotate, Copies) else plan_copies(items, annotate) if annotate else None
        if copies is not None and len(copies.targets) != len(items):
            raise ValueError(f"{len(copies.targets)} annotated copies planned for {len(items)} inputs")
        targets = copies.targets if copies else [None] * len(items)
        images: list[tuple[Source, Path | None]] = []
        for src, target in [*zip(items, targets), (None, None)]:
            if src is None or src.video:
                for (s, t), res in zip(images, self.get_files([s.path for s, _ in images], batch_faces)):
                    yield annotate_image(s.path, t, res, draw_landmarks) if t else res
                images = []
            if src is None:
                break
            if not src.video:
                images.append((src, target))
                continue
            tracker = FaceTracker(smoothing=smoothing)
            video = VideoCopy(src.path, target, every, draw_landmarks) if target else None
            try:
                for res in self.get_video(src.path, every, batch_faces, keep_frames=video is not None):
                    tracker.update(res.faces)
                    yield video.add(res) if video else res
                if video:
                    video.commit()  # only once every frame is in: a run stopped part-way leaves no copy
            except MimikaError as err:
                yield ImageResult(src.path, error=str(err))
            finally:
                if video:
                    video.discard()

    def _stream(self, items, batch_faces: int) -> Iterator[ImageResult]:
        pending: list[tuple[ImageResult, list[Detection], list[np.ndarray], float]] = []
        n_crops = 0
        for result, load in items:
            found, crops, scale = [], [], 1.0
            try:
                img = load()
                result.notes, scale = list(img.notes), img.scale
                found, crops = self._detect_and_crop(img)
            except MimikaError as e:
                result.error, found, crops = str(e), [], []
            pending.append((result, found, crops, scale))
            n_crops += len(crops)
            if n_crops >= batch_faces or len(pending) >= batch_faces:
                yield from self._classify_pending(pending)
                pending, n_crops = [], 0
        yield from self._classify_pending(pending)

    def _classify_pending(self, pending) -> Iterator[ImageResult]:
        crops = [c for _, _, cs, _ in pending for c in cs]
        probs = self.model.predict_proba(np.stack(crops)) if crops else np.zeros((0, 0))
        i = 0
        for result, found, cs, scale in pending:
            result.faces = self._faces_of(found, probs[i:i + len(cs)], scale)
            i += len(cs)
            yield result


def _scaled(box: Box, scale: float) -> Box:
    """A box found on a downscaled image, in the stored image's pixels."""
    if scale == 1.0:
        return tuple(int(v) for v in box)
    return tuple(int(round(v * scale)) for v in box)


def _scaled_points(points, scale: float):
    return None if points is None else tuple((x * scale, y * scale) for x, y in points)


_default: dict[tuple[str, str], Recognizer] = {}


def recognize(image, model=None, color: str = "rgb", prior: str = "model") -> list[Face]:
    """The faces in an image with their emotion scores (the default model unless one is named;
    `prior` as for `Recognizer`)."""
    if isinstance(model, Predictor):
        return Recognizer(model, prior=prior).get(image, color=color)
    key = (str(model), prior)
    if key not in _default:
        _default[key] = Recognizer(model, prior=prior)
    return _default[key].get(image, color=color)


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[Source]:
    """Files as given, folders replaced by the images and videos below them (sorted), "-" kept."""
    from ..prepare.images import list_images
    from ..prepare.video import is_video, list_videos
    out: list[Source] = []
    for given in paths:
        p = Path(given)
        if str(given) == "-":
            out.append(Source("-", Path("stdin")))
        elif p.is_dir():
            found = sorted(list_images(p) + list_videos(p))
            folder = Path(os.path.abspath(p)).name  # ".." and "." named by what they are
            out.extend(Source(str(f), Path(folder) / f.relative_to(p), is_video(f)) for f in found)
        else:
            out.append(Source(str(given), Path(p.name), is_video(p)))
    return out
