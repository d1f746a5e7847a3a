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
import zlib
from pathlib import Path

import numpy as np

from ...common.errors import MimikaError
from ...common.labels import in_code_order
from .faceset import SPLIT_NAMES, FaceSet

FER2013_CODES = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]  # emotion 0..6
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF"]
SIDE = 48


MAX_TEXT_BYTES = 2 << 30  # a FER CSV is about 290 MB: more than this once decompressed is not one (gzip bomb)
MAX_FIELD = 1 << 16  # the pixels field of one face is about 9 KB
MAX_VOTES = 1000  # FER+ has 10 annotators per face
CHUNK = 2000  # rows parsed at once


class _Capped(io.RawIOBase):
    """A read-only stream that fails once more than `cap` bytes came through it."""

    def __init__(self, raw, cap: int):
        self.raw, self.cap, self.seen = raw, cap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.raw.readinto(b)
        self.seen += n or 0
        if self.seen > self.cap:
            raise ValueError(f"more than {self.cap >> 20} MiB of text: not a FER CSV (or a decompression bomb)")
        return n


def _rows(path: Path):
    """(line number, fields) of a CSV, plain or gzip, read as a stream with bounded memory; a
    byte-order mark and CRLF line ends are accepted; any problem is one MimikaError naming the line."""
    if not path.exists():
        raise MimikaError(f"{path}: no such file")
    if not path.is_file():
        raise MimikaError(f"{path}: not a regular file")
    csv.field_size_limit(MAX_FIELD)
    line = 0
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
            text = io.TextIOWrapper(io.BufferedReader(_Capped(stream, MAX_TEXT_BYTES)), encoding="utf-8-sig",
                                    newline="")
            reader = csv.reader(_bounded_lines(text), strict=True)
            for fields in reader:
                line = reader.line_num
                yield line, fields
    except MimikaError:
        raise
    except (csv.Error, UnicodeDecodeError, OSError, EOFError, ValueError, zlib.error) as e:
        # EOFError: a gzip cut short; csv.Error: NUL bytes, a field too long, an unclosed quote
        why = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise MimikaError(f"{path}: line {line + 1}: {why}") from None


def _bounded_lines(text):
    """The lines of a text stream, each read with a bound: a line longer than a FER row (a file with
    no line ends, a decompression bomb) fails instead of filling memory."""
    while True:
        line = text.readline(MAX_FIELD + 1)
        if not line:
            return
        if len(line) > MAX_FIELD and not line.endswith("\n"):
            raise ValueError(f"a line longer than {MAX_FIELD} characters: not a FER CSV row")
        yield line


def _parse_pixels(path: Path, lines: list[int], fields: list[str]) -> np.ndarray:
    """Rows of grey levels -> K x 48 x 48 uint8; the first bad row named by its line."""
    try:
        flat = np.fromstring(" ".join(fields), dtype=np.int64, sep=" ")
    except ValueError:
        flat = None
    if flat is None or flat.size != len(fields) * SIDE * SIDE or flat.min() < 0 or flat.max() > 255:
        for line, f in zip(lines, fields):
            try:
                row = np.fromstring(f, dtype=np.int64, sep=" ")
            except ValueError:
                row = None
            if row is None or row.size != SIDE * SIDE:
                raise MimikaError(f"{path}: line {line}: pixels are not {SIDE * SIDE} whole numbers separated by spaces")
            if row.min() < 0 or row.max() > 255:
                raise MimikaError(f"{path}: line {line}: grey levels outside 0..255")
    return flat.astype(np.uint8).reshape(-1, SIDE, SIDE)


def read_fer2013_csv(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (N x 48 x 48 uint8), emotion codes (N) and Usage (N) of a fer2013.csv(.gz)."""
    from ...common.progress import progress
    path = Path(path)
    rows = _rows(path)
    line, header = next(rows, (1, []))
    if [h.strip() for h in header] != ["emotion", "pixels", "Usage"]:
        raise MimikaError(f"{path}: line 1: expected the header 'emotion,pixels,Usage', found "
                          f"{','.join(header)[:60]!r}")
    chunks, emotion, usage, lines, pending = [], [], [], [], []
    splits = set(SPLIT_NAMES.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # np.fromstring with sep: the fastest parser here
        for line, row in progress(rows, f"reading {path.name}", unit="row"):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise MimikaError(f"{path}: line {line}: expected 'emotion,<{SIDE * SIDE} grey levels>,Usage', "
                                  f"found {len(row)} fields")
            code, pixels, use = (f.strip() for f in row)
            if not (code.isdigit() and int(code) <= 6):
                raise MimikaError(f"{path}: line {line}: emotion code {code[:20]!r} is not one of 0..6")
            if use not in splits:
                raise MimikaError(f"{path}: line {line}: unknown Usage {use[:30]!r} (Training, PublicTest, PrivateTest)")
            emotion.append(int(code))
            usage.append(use)
            lines.append(line)
            pending.append(pixels)
            if len(pending) == CHUNK:
                chunks.append(_parse_pixels(path, lines[-CHUNK:], pending))
                pending = []
        if pending:
            chunks.append(_parse_pixels(path, lines[-len(pending):], pending))
    if not emotion:
        raise MimikaError(f"{path}: no data rows")
    return np.concatenate(chunks), np.array(emotion), np.array(usage)


def read_ferplus_votes(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Votes (N x 10, FER+ column order) and Usage (N) of a fer2013new.csv."""
    path = Path(path)
    rows = _rows(path)
    _, header = next(rows, (1, []))
    expect = ["Usage", "Image name"] + FERPLUS_COLUMNS
    if [h.strip() for h in header] != expect:
        raise MimikaError(f"{path}: line 1: expected the FER+ header '{','.join(expect)}'")
    votes, usage = [], []
    for line, row in rows:
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(expect):
            raise MimikaError(f"{path}: line {line}: expected Usage, image name and 10 vote counts")
        counts = [v.strip() for v in row[2:]]
        if not all(v.isdigit() and len(v) <= 6 for v in counts):
            raise MimikaError(f"{path}: line {line}: vote counts must be whole numbers >= 0")
        if any(int(v) > MAX_VOTES for v in counts):
            raise MimikaError(f"{path}: line {line}: a vote count over {MAX_VOTES} (FER+ has 10 annotators)")
        votes.append([int(v) for v in counts])
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
    labels = in_code_order(FER2013_CODES)
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
    labels = in_code_order(FERPLUS_COLUMNS[:8])
    lut = np.array([labels.index(n) for n in FERPLUS_COLUMNS[:8]])
    soft = votes[keep][:, :8][:, np.argsort(lut)].astype(np.float32)
    soft /= soft.sum(axis=1, keepdims=True)
    data = FaceSet(pixels[keep], lut[major[keep]], labels, np.full(len(keep), "", dtype=str),
                   [f"{path.name}:{i + 2}" for i in keep], splits=usage[keep], soft=soft)
    data.notes.append(f"{len(votes) - len(keep)} of {len(votes)} faces have no FER+ majority label (skipped)")
    return data


def is_fer_csv(path: Path) -> bool:
    """Whether a path names a FER CSV (fer2013.csv, .csv.gz or fer2013new.csv), by its name."""
    return path.is_file() and path.name.lower().endswith((".csv", ".csv.gz"))


def is_ferplus_csv(path: Path) -> bool:
    """Whether a CSV holds FER+ votes (else it is taken as fer2013.csv)."""
    try:
        with open(path, "rb") as f:
            gz = f.read(2) == b"\x1f\x8b"
        with (gzip.open if gz else open)(path, "rb") as f:
            first = f.readline(200).decode("utf-8", "replace")
    except (OSError, EOFError, zlib.error) as e:
        raise MimikaError(f"{path}: cannot read ({e})") from None
    return first.lstrip("\ufeff").startswith("Usage,Image name")
