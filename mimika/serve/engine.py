"""Recognition for the server: the models and detectors of one worker process, loaded once and
shared by its threads, over `mimika.recognition.Recognizer` (nothing here recognizes by itself).

Thread safety: ONNX Runtime sessions (the models, the CNN face detector) may `run` from several
threads at once; OpenCV's CascadeClassifier may not (it keeps per-call buffers), and all Haar
presets share their cascade objects (cached by file), so every Haar detector runs under one lock
per process. Uploads come decoded (`decoders`: in child processes bounded in memory and time).
A model's test-time augmentation and class prior live in its config, so a request that asks for
other ones gets its own copy of the model, never a changed shared one.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from ..common.choices import MODEL_SETTING, PRIOR_CHOICES, PRIORS, TTA_CHOICES, tta_mode
from ..common.errors import MimikaError
from ..network.config import DEFAULT_MODEL, Predictor, shipped_models, with_settings
from ..network.predictor import load_predictor
from ..prepare.detection import PRESETS, HaarDetector, get_detector, preset_name
from ..prepare.images import LoadedImage
from ..recognition.recognizer import Recognizer
from ..recognition.results import ImageResult
from .decoders import BadImage, named
from .settings import ServeSettings

# TTA_CHOICES and PRIOR_CHOICES (common/choices.py) stay importable from here, for the service's other modules
__all__ = ["BadImage", "Engine", "FORMATS", "NotFound", "Options", "PRIOR_CHOICES", "TTA_CHOICES"]
FORMATS = {"jpeg": (".jpg", "image/jpeg"), "png": (".png", "image/png")}


class NotFound(MimikaError):
    """A model name the server does not serve (HTTP 404)."""


class _Decoded(Recognizer):
    """A recognizer of images decoded elsewhere: a `LoadedImage` from the decoders is taken as it is."""

    def load(self, source, color: str = "rgb") -> LoadedImage:
        return source if isinstance(source, LoadedImage) else super().load(source, color)


@dataclass(frozen=True)
class Options:
    """What a request may choose; None: the server's default."""

    model: str | None = None
    detector: str | None = None
    tta: str = MODEL_SETTING  # one of TTA_CHOICES (model: what the model file says)
    prior: str = MODEL_SETTING  # one of PRIOR_CHOICES
    landmarks: bool = True  # keep each face's landmarks (detectors that find them)
    format: str = "jpeg"  # annotate: the image format answered


class _Serialized:
    """A detector that runs in one thread at a time (see the module docstring): boxes by calling
    it, `Detection`s by `detect`, as any detector."""

    def __init__(self, detector, lock: threading.Lock):
        self.detector, self.lock = detector, lock
        self.takes_color = getattr(detector, "takes_color", False)

    def __call__(self, gray):
        with self.lock:
            return self.detector(gray)

    def detect(self, gray):
        with self.lock:
            return self.detector.detect(gray)


class Engine:
    """The models and detectors of one worker process."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.sources: dict[str, str] = {name: name for name in shipped_models()}  # served name -> load_predictor arg
        if settings.model and settings.model not in self.sources:  # a model file: served under its stem
            self.sources[Path(settings.model).stem] = settings.model
        self.default_model = Path(settings.model).stem if settings.model else DEFAULT_MODEL
        if self.default_model not in self.sources:
            raise NotFound(f"unknown model {self.default_model!r}")
        self.default_detector = preset_name(settings.detector)
        self.cpu_threads = settings.threads_per_recognition
        self._predictors: dict[tuple[str, str], Predictor] = {}
        self._detectors: dict[str, object] = {}
        self._recognizers: dict[tuple[str, str, str], Recognizer] = {}
        self._loading = threading.Lock()
        self._haar_lock = threading.Lock()
        self._info: list[dict] | None = None

    # loading ------------------------------------------------------------------------------
    def load_defaults(self) -> None:
        """Load the default model and detector now (at worker start), not at the first request."""
        self.recognizer(Options())

    def model_name(self, name: str | None) -> str:
        name = self.default_model if name is None else name
        if name not in self.sources:
            raise NotFound(f"unknown model {name!r}; models: {', '.join(sorted(self.sources))}")
        return name

    def predictor(self, name: str, tta: str = MODEL_SETTING, prior: str = MODEL_SETTING) -> Predictor:
        with self._loading:
            base = self._predictors.get((name, MODEL_SETTING, MODEL_SETTING))
            if base is None:
                base = load_predictor(self.sources[name], threads=self.cpu_threads)
                self._predictors[(name, MODEL_SETTING, MODEL_SETTING)] = base
            c = base.config
            mode = (c.tta if tta == MODEL_SETTING else tta_mode(tta), c.prior if prior == MODEL_SETTING else prior)
            if mode == (c.tta, c.prior):
                return base
            if (name, *mode) not in self._predictors:  # a prior the model cannot give: one clear error (400)
                self._predictors[(name, *mode)] = with_settings(base, tta=mode[0], prior=mode[1])
            return self._predictors[(name, *mode)]

    def detector(self, name: str | None):
        name = self.default_detector if name is None else preset_name(name)
        with self._loading:
            if name not in self._detectors:
                # an unknown name: MimikaError naming the presets; threads: for the kinds that have them
                threads = {"threads": self.cpu_threads} if hasattr(PRESETS.get(name), "threads") else {}
                found = get_detector(name, **threads)
                self._detectors[name] = _Serialized(found, self._haar_lock) if isinstance(found, HaarDetector) \
                    else found
            return self._detectors[name]

    def recognizer(self, options: Options) -> Recognizer:
        name = self.model_name(options.model)
        key = (name, options.tta, options.prior, preset_name(options.detector or self.default_detector))
        rec = self._recognizers.get(key)
        if rec is None:
            rec = _Decoded(self.predictor(name, options.tta, options.prior), self.detector(options.detector))
            self._recognizers[key] = rec
        return rec

    # requests -----------------------------------------------------------------------------
    def keeps_color(self, options: Options) -> bool:
        """Whether the upload is decoded with a colour copy: for a detector that reads colour."""
        return bool(getattr(self.detector(options.detector), "takes_color", False))

    def predict(self, image: LoadedImage, name: str, options: Options) -> dict:
        """The per-file object of `mimika predict --json` for one uploaded image (decoded: `decoders`)."""
        result = _recognized(self.recognizer(options), image, "rgb", name)
        result.faces = _shown(result.faces, options)
        return result.to_dict()

    def annotate(self, bgr: np.ndarray, name: str, options: Options) -> tuple[bytes, str, int]:
        """The uploaded image (decoded in colour at full size) with each face's box and label drawn:
        (encoded bytes, media type, number of faces)."""
        from ..recognition.annotate import draw_faces
        faces = _shown(_recognized(self.recognizer(options), bgr, "bgr", name).faces, options)
        suffix, media = FORMATS[options.format]
        ok, buf = cv2.imencode(suffix, draw_faces(bgr, faces, color="bgr"),
                               [cv2.IMWRITE_JPEG_QUALITY, 90] if suffix == ".jpg" else [])
        if not ok:
            raise MimikaError(f"{name}: cannot encode the annotated image as {options.format}")
        return buf.tobytes(), media, len(faces)

    def models(self) -> dict:
        """The models served (shipped and configured) with their labels and cards, and the detectors."""
        if self._info is None:
            info = []
            for name in sorted(self.sources):
                with self._loading:
                    m = self._predictors.get((name, MODEL_SETTING, MODEL_SETTING))
                m = m or load_predictor(self.sources[name])
                c = m.config
                info.append({"name": name, "default": name == self.default_model, "labels": list(m.labels),
                             "arch": c.arch, "input": [c.crop.width, c.crop.height], "precision": c.precision,
                             "tta": c.tta or "none", "prior": c.prior,
                             "priors": list(PRIORS) if c.class_prior else [PRIORS[0]],
                             "card": self._card(name)})
            self._info = info
        return {"default": self.default_model, "models": self._info,
                "detectors": list(PRESETS), "default_detector": self.default_detector}

    def _card(self, name: str) -> str | None:
        """The model card (markdown): mimika/models/NAME.md for a shipped model (NAME.float: its
        base model's card), NAME.md beside a configured model file."""
        source = self.sources[name]
        if source == name and name in shipped_models():
            card = resources.files("mimika") / "models" / f"{name.split('.')[0]}.md"
        else:
            card = Path(source).with_suffix(".md")
        try:
            return card.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None


def _shown(faces: list, options: Options) -> list:
    """The faces as the request asked for them: without landmarks unless `landmarks` was set."""
    return faces if options.landmarks else [dataclasses.replace(f, landmarks=None) for f in faces]


def _recognized(rec: Recognizer, image, color: str, name: str) -> ImageResult:
    """One image's result (with the reader's notes: pages read, ...); a bad image raises BadImage
    naming the upload."""
    result = rec.get_result(image, color=color, name=name)
    if result.error:
        raise BadImage(named(result.error, name))
    return result
