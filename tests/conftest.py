"""Shared fixtures. Faces are real: the public-domain NASA astronaut photo bundled with mimika
(also shipped inside scikit-image); everything else is generated from it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import mimika
from mimika.prepare.detection import HaarDetector

SAMPLE = Path(mimika.__file__).parent / "samples" / "astronaut.jpg"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def astronaut_path() -> Path:
    return SAMPLE


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    return cv2.imread(str(SAMPLE))


@pytest.fixture(scope="session")
def astronaut_face(astronaut_bgr) -> np.ndarray:
    """The astronaut's face, a little wider than the detector's box, as a 128x128 gray frame
    (like a CK+ frame)."""
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    (x, y, w, h), = HaarDetector()(gray)
    m = w // 6
    return cv2.resize(gray[y - m:y + h + m, x - m:x + w + m], (128, 128), interpolation=cv2.INTER_AREA)


def variants(face: np.ndarray, n: int, seed: int) -> list[np.ndarray]:
    """n slightly different copies of a face: shifted, scaled, brightened (a fake 'sequence')."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = rng.uniform(0.9, 1.1)
        M = cv2.getRotationMatrix2D((64, 64), rng.uniform(-5, 5), rng.uniform(0.95, 1.05))
        M[:, 2] += rng.uniform(-3, 3, 2)
        img = cv2.warpAffine(face, M, (128, 128), borderMode=cv2.BORDER_REPLICATE)
        out.append(np.clip(img * a, 0, 255).astype(np.uint8))
    return out


def two_class_faces(face: np.ndarray, n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A learnable two-class set: the face upright (code 5) and upside down (code 7)."""
    up = variants(face, n, seed)
    down = [f[::-1] for f in variants(face, n, seed + 1)]
    return np.stack(up + down), np.array([5] * n + [7] * n)


@pytest.fixture
def ckplus_tree(tmp_path, astronaut_face) -> Path:
    """A small CK+-layout tree: 4 subjects, labelled and unlabelled sequences of 4-10 frames."""
    root = tmp_path / "ck"
    seqs = {  # (subject, sequence): (frames, code or None)
        ("S001", "001"): (10, 5), ("S001", "002"): (4, 7), ("S002", "001"): (6, 5),
        ("S002", "002"): (5, None), ("S003", "001"): (8, 7), ("S004", "001"): (3, 5),
    }
    for i, ((s, q), (n, code)) in enumerate(seqs.items()):
        img_dir = root / "cohn-kanade-images" / s / q
        img_dir.mkdir(parents=True)
        frames = variants(astronaut_face, n, i)
        if code == 7:
            frames = [f[::-1] for f in frames]
        for k, f in enumerate(frames, 1):
            cv2.imwrite(str(img_dir / f"{s}_{q}_{k:08d}.png"), f)
        if code is not None:
            lab = root / "Emotion" / s / q
            lab.mkdir(parents=True)
            (lab / f"{s}_{q}_{n:08d}_emotion.txt").write_text(f"   {code:.7e}\n")
    (root / "Emotion" / "S002").mkdir(exist_ok=True)
    return root


@pytest.fixture(scope="session")
def shipped_model():
    return mimika.load_model()
