"""FER2013 (`fer2013.csv`: emotion,pixels,Usage) and the FER+ relabelling (`fer2013new.csv`).

Protocol: train on Training, select on PublicTest, report on PrivateTest. FER+ faces get the
majority label of the FER+ paper (classes with one vote dropped, then more than half of the
remaining votes, else no label and the face is skipped) and, for soft-label training, the
distribution of the emotion votes.
"""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from pathlib import Path

import numpy as np

from ..errors import MimikaError
from ..labels import CKPLUS_CODES
from .base import FaceSet

FER2013_CODES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]  # emotion 0..6
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF"]
SPLITS = {"training": "Training", "train": "Training", "publictest": "PublicTest", "val": "PublicTest",
          "validation": "PublicTest", "privatetest": "PrivateTest", "test": "PrivateTest"}
SIDE = 48


def code_order(names: list[str]) -> list[str]:
    """Labels sorted by CK+ code (neutral, anger, contempt, ... surprise): one order for all models."""
    rank = {n: c for c, n in CKPLUS_CODES.items()}
    return sorted(names, key=lambda n: rank[n])


def split_name(split: str) -> str:
    key = split.replace("_", "").replace("-", "").lower()
    if key not in SPLITS:
        raise MimikaError(f"unknown split {split!r}; FER2013 splits are Training, PublicTest, PrivateTest")
    return SPLITS[key]


def _open_text_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:
        raise MimikaError(f"{path}: cannot read ({e})") from None


def read_fer2013_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (N x 48 x 48 uint8), emotion codes (N) and Usage (N) of a fer2013.csv(.gz)."""
    path = Path(path)
    if not path.is_file():
        raise MimikaError(f"{path}: no such file")
    lines = _open_text_bytes(path).replace(b"\r\n", b"\n").split(b"\n")
    header = lines[0].strip().decode("utf-8", "replace")
    if header != "emotion,pixels,Usage":
        raise MimikaError(f"{path}: line 1: expected the header 'emotion,pixels,Usage', found {header[:60]!r}")
    rows = [l for l in lines[1:] if l.strip()]
    if not rows:
        raise MimikaError(f"{path}: no data rows")
    parts = [r.split(b",") for r in rows]
    for i, p in enumerate(parts):
        if len(p) != 3 or p[1].count(b" ") != SIDE * SIDE - 1 or not p[0].strip().isdigit():
            raise MimikaError(f"{path}: line {i + 2}: expected 'emotion,<{SIDE * SIDE} grey levels>,Usage'")
    from ..progress import progress
    chunks = range(0, len(parts), 2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        flat = np.concatenate([np.fromstring(b" ".join(p[1] for p in parts[i:i + 2000]), dtype=np.int64, sep=" ")
                               for i in progress(chunks, f"reading {path.name}", total=len(chunks), unit="chunk")])
    if flat.size != len(parts) * SIDE * SIDE:
        bad = next(i for i, p in enumerate(parts)
                   if np.fromstring(p[1], dtype=np.int64, sep=" ").size != SIDE * SIDE)
        raise MimikaError(f"{path}: line {bad + 2}: pixels are not {SIDE * SIDE} numbers")
    pixels = flat.reshape(-1, SIDE, SIDE)
    out_of_range = np.flatnonzero((pixels < 0).any((1, 2)) | (pixels > 255).any((1, 2)))
    if out_of_range.size:
        raise MimikaError(f"{path}: line {out_of_range[0] + 2}: grey levels outside 0..255")
    emotion = np.array([int(p[0]) for p in parts])
    if emotion.max() > 6:
        raise MimikaError(f"{path}: line {int(np.argmax(emotion > 6)) + 2}: emotion code outside 0..6")
    usage = np.array([p[2].strip().decode() for p in parts])
    unknown = sorted(set(usage) - set(SPLITS.values()))
    if unknown:
        raise MimikaError(f"{path}: line {int(np.flatnonzero(~np.isin(usage, list(SPLITS.values())))[0]) + 2}: "
                          f"unknown Usage {unknown[0]!r}")
    return pixels.astype(np.uint8), emotion, usage


def read_ferplus_votes(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Votes (N x 10, FER+ column order) and Usage (N) of a fer2013new.csv."""
    path = Path(path)
    if not path.is_file():
        raise MimikaError(f"{path}: no such file")
    text = _open_text_bytes(path).decode("utf-8", "replace")
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    expect = ["Usage", "Image name"] + FERPLUS_COLUMNS
    if [h.strip() for h in header] != expect:
        raise MimikaError(f"{path}: line 1: expected the FER+ header '{','.join(expect)}'")
    votes, usage = [], []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            if len(row) != len(expect):
                raise ValueError
            votes.append([int(v) for v in row[2:]])
        except ValueError:
            raise MimikaError(f"{path}: line {line}: expected Usage, image name and 10 vote counts") from None
        usage.append(row[0].strip())
    return np.array(votes, dtype=np.int64).reshape(-1, len(FERPLUS_COLUMNS)), np.array(usage)


def ferplus_majority(votes: np.ndarray) -> np.ndarray:
    """Index into FERPLUS_COLUMNS of each face's majority label, -1 where there is none
    (or where the majority says 'unknown' or 'not a face')."""
    v = np.where(votes == 1, 0, votes)
    total = v.sum(axis=1)
    best = v.argmax(axis=1)
    ok = (total > 0) & (v.max(axis=1) * 2 > total) & (best < 8)
    return np.where(ok, best, -1)


def fer_pixels_beside(labels_csv: Path) -> Path:
    for name in ("fer2013.csv", "fer2013.csv.gz"):
        if (labels_csv.parent / name).is_file():
            return labels_csv.parent / name
    raise MimikaError(f"{labels_csv}: FER+ labels need the FER2013 pixels, fer2013.csv or fer2013.csv.gz, "
                      "in the same folder")


def load_fer2013(path: str | Path) -> FaceSet:
    """FER2013 faces with their original 7 labels; `splits` holds each face's Usage."""
    pixels, emotion, usage = read_fer2013_csv(path)
    labels = code_order(FER2013_CODES)
    lut = np.array([labels.index(n) for n in FER2013_CODES])
    return FaceSet(pixels, lut[emotion], labels, np.full(len(pixels), "", dtype=str),
                   [f"{Path(path).name}:{i + 2}" for i in range(len(pixels))], splits=usage)


def load_ferplus(path: str | Path, pixels_path: str | Path | None = None) -> FaceSet:
    """FER+ majority labels (8 classes) and vote distributions on the FER2013 pixels."""
    path = Path(path)
    votes, usage = read_ferplus_votes(path)
    pixels_path = Path(pixels_path) if pixels_path else fer_pixels_beside(path)
    pixels, _, fer_usage = read_fer2013_csv(pixels_path)
    if len(votes) != len(pixels):
        raise MimikaError(f"{path}: {len(votes)} label rows but {pixels_path.name} has {len(pixels)} faces "
                          "(the files must be row for row)")
    off = np.flatnonzero(usage != fer_usage)
    if off.size:
        raise MimikaError(f"{path}: line {off[0] + 2}: Usage {usage[off[0]]!r} but {pixels_path.name} says "
                          f"{fer_usage[off[0]]!r}: label file out of step with the images")
    major = ferplus_majority(votes)
    keep = np.flatnonzero(major >= 0)
    labels = code_order(FERPLUS_COLUMNS[:8])
    lut = np.array([labels.index(n) for n in FERPLUS_COLUMNS[:8]])
    soft = votes[keep][:, :8][:, np.argsort(lut)].astype(np.float32)
    soft /= soft.sum(axis=1, keepdims=True)
    data = FaceSet(pixels[keep], lut[major[keep]], labels, np.full(len(keep), "", dtype=str),
                   [f"{path.name}:{i + 2}" for i in keep], splits=usage[keep], soft=soft)
    data.notes.append(f"{len(votes) - len(keep)} of {len(votes)} faces have no FER+ majority label (skipped)")
    return data


def is_ferplus_csv(path: Path) -> bool:
    """Whether a CSV holds FER+ votes (else it is taken as fer2013.csv)."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            first = f.readline(200).decode("utf-8", "replace")
    except OSError as e:
        raise MimikaError(f"{path}: cannot read ({e})") from None
    return first.startswith("Usage,Image name")
