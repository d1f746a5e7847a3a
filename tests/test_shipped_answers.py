"""What each shipped model answers (issue #29, "tests that must say more"): the astronaut photo and
three views of it (mirrored, shrunk to half, turned 20 degrees about her face) give one face, where
her face is, and these probabilities: values, not only shapes.

ANSWERS is keyed by shipped model name (`mimika.network.config.shipped_models()`): a model shipped
later adds its row (a test fails, naming it, until it has one). Each row: the file's precision,
its label order, and per view the probability of each label (4 significant figures), written down
from `Recognizer(NAME).get(view)` with the default CNN detector when the files were shipped; a
new model file changes its row, nothing else should. Tolerances: float files differ across CPUs
by rounding only, but the detector is INT8 and moves a box by a pixel, so a little (ABS and LOG
per precision); INT8 files may differ more (other kernels), and stay within that of their float
version too. A training file (.npz, PyTorch) answers what its float export answers.
"""

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

import mimika
from mimika import Model, Recognizer, shipped_models
from mimika.prepare.detection import get_detector

SAMPLE = Path(mimika.__file__).parent / "samples" / "astronaut.jpg"
ASTRONAUT_FACE = (181, 74, 93, 92)  # x, y, w, h: the CNN detector's box of her face in the 512 x 512 photo
CENTRE = (227, 120)  # its centre, about which the photo is turned
BOX_PX = 5  # "within a few pixels"
# per precision: the largest |p - q|, and |log p - log q| for probabilities above LOG_FLOOR
ABS = {"float": 2e-3, "int8": 5e-3}
LOG = {"float": 0.1, "int8": 0.3}
LOG_FLOOR = 1e-5

ANSWERS = {
    "fer2013": ("int8", "neutral anger disgust fear happiness sadness surprise", {
        "photo": (0.009391, 0.001957, 0.0003847, 0.001551, 0.9795, 0.001793, 0.005408),
        "mirrored": (0.00963, 0.002066, 0.0004431, 0.002066, 0.9757, 0.002006, 0.00809),
        "shrunk": (0.01042, 0.00299, 0.0007415, 0.003997, 0.968, 0.003078, 0.01073),
        "rotated20": (0.008881, 0.002079, 0.0003433, 0.001555, 0.9818, 0.002474, 0.002861),
    }),
    "fer2013.float": ("float", "neutral anger disgust fear happiness sadness surprise", {
        "photo": (0.009563, 0.001989, 0.000368, 0.001597, 0.9791, 0.001773, 0.005658),
        "mirrored": (0.009917, 0.002125, 0.0004498, 0.002066, 0.9753, 0.002026, 0.008155),
        "shrunk": (0.01011, 0.00287, 0.0007008, 0.003901, 0.9687, 0.002941, 0.01082),
        "rotated20": (0.009292, 0.002083, 0.0003388, 0.00154, 0.9814, 0.002539, 0.00282),
    }),
    "ferplus": ("int8", "neutral anger contempt disgust fear happiness sadness surprise", {
        "photo": (0.0001086, 2.844e-07, 4.099e-06, 8.746e-07, 8.746e-07, 0.9999, 2.714e-07, 2.666e-05),
        "mirrored": (0.0001138, 4.759e-07, 4.295e-06, 1.214e-06, 1.85e-06, 0.9998, 3.594e-07, 7.124e-05),
        "shrunk": (0.0001579, 1.169e-07, 3.732e-06, 5.226e-07, 8.746e-07, 0.9998, 4.987e-07, 3.369e-05),
        "rotated20": (7.125e-05, 2.844e-07, 2.819e-06, 7.6e-07, 9.166e-07, 0.9999, 2.251e-07, 2.544e-05),
    }),
    "ferplus.float": ("float", "neutral anger contempt disgust fear happiness sadness surprise", {
        "photo": (0.0001058, 2.834e-07, 3.965e-06, 8.376e-07, 8.984e-07, 0.9999, 2.735e-07, 2.733e-05),
        "mirrored": (0.0001144, 4.319e-07, 4.333e-06, 1.141e-06, 1.674e-06, 0.9998, 3.548e-07, 6.665e-05),
        "shrunk": (0.0001605, 1.245e-07, 3.77e-06, 5.4e-07, 9.214e-07, 0.9998, 5.426e-07, 3.277e-05),
        "rotated20": (7.4e-05, 2.863e-07, 2.889e-06, 7.219e-07, 8.799e-07, 0.9999, 2.456e-07, 2.315e-05),
    }),
    "multisource": ("int8", "neutral anger contempt disgust fear happiness sadness surprise", {
        "photo": (0.0007968, 1.688e-05, 7.225e-05, 2.9e-05, 3.103e-05, 0.9986, 9.503e-06, 0.0004191),
        "mirrored": (0.0008521, 2.288e-05, 7.47e-05, 3.673e-05, 4.813e-05, 0.9981, 1.163e-05, 0.0008237),
        "shrunk": (0.001117, 1.204e-05, 6.982e-05, 2.532e-05, 3.319e-05, 0.9983, 1.577e-05, 0.0004637),
        "rotated20": (0.000673, 2.289e-05, 6.529e-05, 3.103e-05, 3.801e-05, 0.9988, 1.126e-05, 0.0003662),
    }),
    "multisource.float": ("float", "neutral anger contempt disgust fear happiness sadness surprise", {
        "photo": (0.00082, 1.753e-05, 7.414e-05, 3.043e-05, 3.177e-05, 0.9986, 1.006e-05, 0.0004336),
        "mirrored": (0.0008767, 2.303e-05, 7.665e-05, 3.69e-05, 4.835e-05, 0.9981, 1.158e-05, 0.0008305),
        "shrunk": (0.001144, 1.266e-05, 6.983e-05, 2.6e-05, 3.395e-05, 0.9982, 1.645e-05, 0.0004957),
        "rotated20": (0.0007097, 2.364e-05, 6.817e-05, 3.275e-05, 3.82e-05, 0.9987, 1.163e-05, 0.0003901),
    }),
    "seed": ("float", "anger contempt disgust fear happiness sadness surprise", {
        "photo": (0.04304, 0.02999, 0.03623, 0.3348, 0.4941, 0.009505, 0.05234),
        "mirrored": (0.03521, 0.02151, 0.3027, 0.01466, 0.3518, 0.005646, 0.2684),
        "shrunk": (0.06782, 0.02069, 0.007874, 0.0225, 0.8676, 0.01054, 0.00297),
        "rotated20": (0.02238, 0.01105, 0.01227, 0.2971, 0.6005, 0.01287, 0.04377),
    }),
}


def views() -> dict[str, np.ndarray]:
    img = cv2.imread(str(SAMPLE))
    turn = cv2.getRotationMatrix2D(CENTRE, 20, 1.0)
    return {"photo": img, "mirrored": img[:, ::-1].copy(),
            "shrunk": cv2.resize(img, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
            "rotated20": cv2.warpAffine(img, turn, (512, 512), borderMode=cv2.BORDER_REPLICATE)}


def expected_box(view: str) -> tuple[float, float, float, float]:
    """Where the face must be in each view, by geometry from its place in the photo."""
    x, y, w, h = ASTRONAUT_FACE
    if view == "mirrored":
        return 512 - x - w, y, w, h
    if view == "shrunk":
        return x / 2, y / 2, w / 2, h / 2
    return x, y, w, h  # turned about its own centre: in place ("rotated20"), and the photo itself


def near(box, want) -> bool:
    """The same centre and side, each within BOX_PX (a turned face's box is a little bigger)."""
    (x, y, w, h), (X, Y, W, H) = box, want
    return (abs(x + w / 2 - X - W / 2) <= BOX_PX and abs(y + h / 2 - Y - H / 2) <= BOX_PX
            and abs(w - W) <= BOX_PX and abs(h - H) <= BOX_PX)


def differences(got: dict[str, float], want: tuple[float, ...], labels: list[str]) -> tuple[float, float]:
    """The largest |p - q| and |log p - log q| (over probabilities above LOG_FLOOR) of one face."""
    pairs = [(got[k], q) for k, q in zip(labels, want)]
    worst_abs = max(abs(p - q) for p, q in pairs)
    worst_log = max((abs(math.log(max(p, 1e-12)) - math.log(q)) for p, q in pairs if q > LOG_FLOOR), default=0.0)
    return worst_abs, worst_log


@pytest.fixture(scope="module")
def detector():
    return get_detector("cnn")


@pytest.fixture(scope="module")
def the_views():
    return views()


def answers_of(model, detector, the_views) -> dict:
    rec = Recognizer(model, detector)
    out = {}
    for view, image in the_views.items():
        faces = rec.get(image, color="bgr")
        assert len(faces) == 1, f"{view}: {len(faces)} faces"
        out[view] = faces[0]
    return rec, out


def test_every_shipped_model_has_a_row():
    missing = sorted(set(shipped_models()) - set(ANSWERS))
    assert not missing, (f"shipped model(s) {', '.join(missing)} have no row in ANSWERS: add what each answers "
                         f"(the docstring says how)")


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_a_shipped_model_gives_its_known_answers(name, detector, the_views):
    assert name in ANSWERS, f"{name}: no row in ANSWERS"
    precision, labels, rows = ANSWERS[name]
    rec, faces = answers_of(name, detector, the_views)
    assert rec.model.config.precision == precision and rec.model.labels == labels.split()
    for view, face in faces.items():
        assert face.label == "happiness", f"{name}, {view}: {face.label}"
        assert near(face.box, expected_box(view)), (view, face.box, expected_box(view))
        worst_abs, worst_log = differences(face.scores, rows[view], rec.model.labels)
        assert worst_abs <= ABS[precision] and worst_log <= LOG[precision], \
            f"{name}, {view}: {face.scores} against {rows[view]} (|dp| {worst_abs:.2g}, |dlog p| {worst_log:.2g})"


@pytest.mark.parametrize("name", sorted(n for n, (precision, _, _) in ANSWERS.items() if precision == "int8"))
def test_an_int8_model_stays_within_its_tolerance_of_its_float_version(name):
    _, labels, rows = ANSWERS[name]
    _, float_labels, float_rows = ANSWERS[f"{name}.float"]
    assert labels == float_labels
    for view, want in float_rows.items():
        worst_abs, worst_log = differences(dict(zip(labels.split(), rows[view])), want, labels.split())
        assert worst_abs <= ABS["int8"] and worst_log <= LOG["int8"], (view, worst_abs, worst_log)


@pytest.mark.parametrize("name", sorted(n for n, files in shipped_models().items() if ".npz" in files))
def test_a_training_file_answers_what_its_float_export_answers(name, detector, the_views):
    float_name = f"{name}.float" if f"{name}.float" in ANSWERS else name
    precision, labels, rows = ANSWERS[float_name]
    assert precision == "float"
    rec, faces = answers_of(Model.load(shipped_models()[name][".npz"]), detector, the_views)
    for view, face in faces.items():
        worst_abs, worst_log = differences(face.scores, rows[view], labels.split())
        assert worst_abs <= ABS["float"] and worst_log <= LOG["float"], (name, view, face.scores)
