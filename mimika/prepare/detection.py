"""Input preparation, step 2: find every face in an image, by a named detector.

Two kinds: the CNN (CenterFace, `centerface.py`: faces from 24 px, turned and tilted faces, five
landmarks each; the default) and OpenCV's Haar cascade (`haar.py`, the original method, with its
presets). Both are called as `detector(gray) -> boxes` and `detector.detect(gray) -> Detection`s;
a detector whose `takes_color` is true (the CNN presets but the thorough one) is given the colour
image by recognition where there is one, as it finds more faces in colour.
The faces of training and evaluation sets are cropped by one fixed detector, `DATASET_DETECTOR`,
so a change of the default moves no dataset crop and no published figure.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np

from ..common.errors import MimikaError
from .boxes import LANDMARKS, Box, Detection, largest  # noqa: F401 - the detector-facing names, in one place
from .centerface import CNN_PRESETS, CnnDetector, check_weights
from .haar import HAAR_PRESETS, HaarDetector, check_cascade

PRESETS: dict[str, CnnDetector | HaarDetector] = {**CNN_PRESETS, **HAAR_PRESETS}
DEFAULT_DETECTOR = "cnn"
#: the detector that crops the faces of training and evaluation sets: fixed (the thorough Haar
#: preset that cropped every published set), recorded in the face cache's key and in trained models
DATASET_DETECTOR = "haar-thorough"
#: what each preset is for, in a few words; `describe_presets` adds the smallest face each finds
#: (its own `min_size`), so no help text quotes a face size by hand
PRESET_NOTES: dict[str, str] = {
    "cnn": "CenterFace with landmarks",
    "cnn-thorough": "more small faces, slower",
    "cnn-fast": "fewer small faces, faster",
    "haar": "the original Haar cascade",
    "haar-thorough": "more faces, slower",
    "haar-fast": "faster",
    "haar-baseline": "the thesis' OpenCV defaults",
}


def describe_presets() -> str:
    """Every preset, what it is for and the smallest face it finds, in one line ("cnn: CenterFace
    with landmarks, faces from 24 px; ...")."""
    return "; ".join(f"{name}: {PRESET_NOTES[name] + ', ' if PRESET_NOTES.get(name) else ''}faces from "
                     f"{preset.min_size} px" for name, preset in PRESETS.items())


def preset_name(name: str) -> str:
    """A preset's own name: "default" names `DEFAULT_DETECTOR`."""
    return DEFAULT_DETECTOR if name == "default" else name


def get_detector(name: str = DEFAULT_DETECTOR, **overrides) -> CnnDetector | HaarDetector:
    """A preset by name ("default": `DEFAULT_DETECTOR`), with settings overridden (None values are
    ignored; `min_size` applies to both kinds, the others to the kind that has them: for the CNN it
    sets the working scale and drops smaller boxes, `min_face`, as Haar's minSize does); its weights
    or cascade loaded now, so a bad setting fails here, not on every image."""
    name = preset_name(name)
    if name not in PRESETS:
        raise MimikaError(f"unknown detector {name!r}; presets: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    given = {k: v for k, v in overrides.items() if v is not None}
    if isinstance(preset, CnnDetector) and "min_size" in given:
        given.setdefault("min_face", given["min_size"])
    known = {f.name for f in fields(preset)}
    foreign = sorted(set(given) - known)
    if foreign:
        raise MimikaError(f"{', '.join(foreign)}: not a setting of the {name} detector "
                          f"({'Haar presets only' if isinstance(preset, CnnDetector) else 'CNN presets only'})")
    return loaded(replace(preset, **given))


def loaded(detector: CnnDetector | HaarDetector) -> CnnDetector | HaarDetector:
    """The detector with its weights or cascade loaded now, so a bad setting fails here, not on every image."""
    return check_weights(detector) if isinstance(detector, CnnDetector) else check_cascade(detector)


def detect_faces(gray: np.ndarray, detector=None) -> list[Box]:
    """All face boxes (x, y, w, h) in a uint8 grayscale image."""
    return (detector or PRESETS[DEFAULT_DETECTOR])(gray)
