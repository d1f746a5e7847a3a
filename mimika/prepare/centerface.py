"""Input preparation, step 2 (CNN): find faces, with five landmarks each, by CenterFace run in
ONNX Runtime.

Why CenterFace: on ../shared/data/facedet and on frame-filling faces (CK+, CK+48, FER) it found
more faces than the Haar presets, BlazeFace (short, full, back, short+full) and YuNet (yuface),
with no more false detections, at about the cost of the Haar "default" preset per 640x480 photo
(bench/detection.py prints the comparison). The shipped file is CenterFace quantized
to INT8 (1.7-2x faster than float here, as many faces found); it lives in mimika/models/detectors/
with its licence and PROVENANCE.md (source package, sha256, the byte-for-byte regenerate command).

The image is resized once so that a face of `min_size` pixels covers `net_face` network pixels
(bounded by `min_side` and `max_side`, so any image size costs bounded time and memory), run
through the network, decoded (heat-map peaks -> boxes and landmarks), and duplicates removed by
non-maximum suppression. The returned box is a square framed like a Haar box (`box_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from ..common.errors import MimikaError, first_line
from ..common.sessions import session_options
from .boxes import LANDMARKS, Box, Detection  # noqa: F401 - LANDMARKS: the order CenterFace gives them

MODEL_FILE = "centerface.onnx"
_OUTPUTS = ("heatmap", "scale", "offset", "landmarks")
_STRIDE = 32  # the network's input sides must be multiples of 32; its outputs are 1/4 of them
_MAX_CANDIDATES = 1000  # heat-map cells kept for non-maximum suppression (bounds its cost)


def detector_path() -> Path:
    """The shipped CenterFace file (inside the installed package)."""
    return Path(str(resources.files("mimika") / "models" / "detectors" / MODEL_FILE))


@lru_cache(maxsize=8)
def _session(path: str, threads: int):
    import onnxruntime as ort

    p = Path(path)
    if not p.is_file():
        raise MimikaError(f"{p}: no such face-detector file (reinstall mimika, or regenerate it with "
                          "scripts/make_detector.py)")
    try:
        session = ort.InferenceSession(str(p), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise MimikaError(f"{p}: not a readable ONNX face detector ({type(e).__name__}: "
                          f"{first_line(e)})") from None
    if [i.name for i in session.get_inputs()] != ["image"] or \
            [o.name for o in session.get_outputs()] != list(_OUTPUTS):
        raise MimikaError(f"{p}: not a CenterFace detector as mimika ships it (input 'image', outputs "
                          f"{', '.join(_OUTPUTS)})")
    return session


@dataclass
class CnnDetector:
    """CenterFace face detector; `detector(image)` gives boxes like `HaarDetector`, `detector.detect(image)`
    gives `Detection`s with scores and landmarks. Defaults: bench/detection.py."""

    min_size: int = 24  # smallest face side (image pixels) to find: sets the working scale
    min_face: int = 0  # boxes of a smaller side are dropped, as Haar's min_size drops them (--min-face sets
    #                    both); the presets drop none: the network also finds faces a little under
    #                    min_size, and their boxes run smaller than the face sets' (bench/detection.py)
    score: float = 0.4  # heat-map threshold
    net_face: float = 14.0  # a face of min_size is shrunk (or enlarged) to this many network pixels
    min_side: int = 128  # small images are enlarged to at least this long side (a 48x48 crop works)
    max_side: int = 1280  # and large ones never exceed it: bounded time and memory on any image
    nms_iou: float = 0.3  # overlap above which the weaker of two boxes is dropped
    box_scale: float = 0.94  # returned box: a square of this times sqrt(w h) of CenterFace's box (0.94:
    box_shift: float = 0.0  # its centre moved down by this fraction of its side (Haar-like framing)
    refine_angle: float = 8.0  # a face tilted more (by its eyes) is looked at again, turned upright:
    #                            CenterFace's landmarks lag behind tilts (35 degrees reads as ~20);
    #                            below, the lag (a few degrees) does not change what the model reads
    threads: int = 0  # ONNX Runtime threads; 0: its default (all cores)
    model: str = ""  # empty: the shipped file; else the path of another CenterFace ONNX file
    color: bool = True  # recognition hands it the colour image where there is one (`takes_color`):
    #                     it finds more faces in colour (docs/detection.md, from bench/detection.py)

    @property
    def takes_color(self) -> bool:
        return self.color

    def __post_init__(self) -> None:
        if self.min_size < 1 or self.min_face < 0 or self.net_face <= 0 or self.min_side < 1 or self.max_side < self.min_side:
            raise MimikaError(f"bad face-detector settings: {self}")

    @property
    def session(self):
        return _session(self.model or str(detector_path()), int(self.threads))

    def __call__(self, image: np.ndarray) -> list[Box]:
        """Boxes of all faces found, left to right, in the image's own coordinates."""
        return sorted((d.box for d in self.detect(image)), key=lambda b: (b[0], b[1]))

    def scale_for(self, height: int, width: int) -> float:
        """The factor the image is resized by before the network sees it."""
        long_side = max(height, width)
        s = self.net_face / self.min_size
        return min(max(s, self.min_side / long_side), self.max_side / long_side)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a uint8 image: H x W gray (what mimika passes), H x W x 3 BGR or H x W x 4 BGRA;
        strongest first, none whose box side is under `min_face`. The landmarks of a tilted face come
        from a second look at it turned upright."""
        img = _check_image(image)
        return [self._refined(img, d) for d in self._detect(img) if max(d.box[2:]) >= self.min_face]

    def _refined(self, img: np.ndarray, d: Detection) -> Detection:
        """`d` with the landmarks found on a patch around it, rotated so that its eyes are level (when
        they are tilted by more than `refine_angle`), mapped back to the image."""
        (rx, ry), (lx, ly) = d.landmarks[:2]
        angle = math.degrees(math.atan2(ly - ry, lx - rx))
        if abs(angle) < self.refine_angle:
            return d
        x, y, w, h = d.box
        side = 160  # the patch: 2.5 face sides, the face about 64 pixels wide whatever its size (cheap)
        M = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, side / (2.5 * max(w, h)))
        M[:, 2] += (side / 2 - (x + w / 2), side / 2 - (y + h / 2))
        patch = cv2.warpAffine(img, M, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        found = self._detect(patch)
        if not found:
            return d
        centre = np.array([side / 2, side / 2])
        best = min(found, key=lambda f: np.hypot(*(np.add(f.box[:2], np.divide(f.box[2:], 2)) - centre)))
        back = cv2.invertAffineTransform(M)
        marks = np.array(best.landmarks) @ back[:, :2].T + back[:, 2]
        return Detection(d.box, d.score, tuple((float(a), float(b)) for a, b in marks))

    def _detect(self, img: np.ndarray) -> list[Detection]:
        """One pass of the network over the whole image."""
        H, W = img.shape[:2]
        s = self.scale_for(H, W)
        rw, rh = max(1, round(W * s)), max(1, round(H * s))
        small = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        nh, nw = _STRIDE * math.ceil(rh / _STRIDE), _STRIDE * math.ceil(rw / _STRIDE)
        x = np.zeros((1, 3, nh, nw), np.float32)
        if small.ndim == 2:
            x[0, :, :rh, :rw] = small  # gray: the same plane in R, G and B
        else:
            x[0, :, :rh, :rw] = small[:, :, 2::-1].transpose(2, 0, 1)  # BGR(A) -> RGB planes
        session = self.session
        try:
            heat, scale, offset, marks = session.run(None, {"image": x})
        except Exception as e:  # a file with the right names but another network
            raise MimikaError(f"{self.model or detector_path()}: the face detector failed to run ({type(e).__name__}: "
                              f"{first_line(e)})") from None
        ys, xs = np.nonzero(heat[0, 0] > self.score)
        if len(ys) == 0:
            return []
        conf = heat[0, 0, ys, xs]
        if len(conf) > _MAX_CANDIDATES:
            top = np.argsort(-conf)[:_MAX_CANDIDATES]
            ys, xs, conf = ys[top], xs[top], conf[top]
        h = np.exp(np.minimum(scale[0, 0, ys, xs], 10.0)) * 4
        w = np.exp(np.minimum(scale[0, 1, ys, xs], 10.0)) * 4
        x0 = (xs + offset[0, 1, ys, xs] + 0.5) * 4 - w / 2
        y0 = (ys + offset[0, 0, ys, xs] + 0.5) * 4 - h / 2
        keep = np.asarray(cv2.dnn.NMSBoxes(np.stack([x0, y0, w, h], 1).tolist(), conf.tolist(),
                                           self.score, self.nms_iou), dtype=np.int64).reshape(-1)
        sx, sy = rw / W, rh / H  # network pixels per image pixel, per axis
        found = []
        for k in keep:
            lx = (marks[0, 1::2, ys[k], xs[k]] * w[k] + x0[k]) / sx
            ly = (marks[0, 0::2, ys[k], xs[k]] * h[k] + y0[k]) / sy
            box = self._frame(x0[k] / sx, y0[k] / sy, w[k] / sx, h[k] / sy, W, H)
            if box is not None:
                found.append(Detection(box, float(conf[k]), tuple((float(a), float(b)) for a, b in zip(lx, ly))))
        return sorted(found, key=lambda d: -d.score)

    def _frame(self, x: float, y: float, w: float, h: float, W: int, H: int) -> Box | None:
        """CenterFace's tall forehead-to-chin box as a square framed like a Haar box, inside the image."""
        side = self.box_scale * math.sqrt(max(w, 0.0) * max(h, 0.0))
        cx, cy = x + w / 2, y + h / 2 + self.box_shift * side
        x0, y0 = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
        x1, y1 = min(W, round(cx + side / 2)), min(H, round(cy + side / 2))
        if x1 - x0 < 1 or y1 - y0 < 1:
            return None
        return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def _check_image(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or img.size == 0 or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise MimikaError(f"face detection: expected an H x W, H x W x 3 or H x W x 4 image, got shape {img.shape}")
    if img.dtype != np.uint8:
        raise MimikaError(f"face detection: expected 8-bit pixels, got {img.dtype} (mimika.load_gray converts)")
    return np.ascontiguousarray(img)


#: Named settings; their recall, false detections and time are measured by bench/detection.py and
#: recorded in docs/detection.md (the README quotes the default's). "cnn", the default: faces from
#: 24 px, shrunk to 14 network pixels, in colour where there is one; "cnn-thorough": 20 network
#: pixels, in gray (more time per photo); "cnn-fast": faces from 40 px (the size below which
#: expressions are read markedly less well).
CNN_PRESETS: dict[str, CnnDetector] = {
    "cnn": CnnDetector(),
    "cnn-thorough": CnnDetector(net_face=20.0, color=False),  # in colour it finds false faces (docs/detection.md)
    "cnn-fast": CnnDetector(min_size=40),
}


def check_weights(detector: CnnDetector) -> CnnDetector:
    """Load (and check) the weights now, so a missing or corrupt file fails here, not on the first image."""
    detector.session  # noqa: B018
    return detector
