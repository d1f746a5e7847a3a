"""Recognition results that format themselves: a `Face` per face found, an `ImageResult` per
image or video frame, and `Results` for a batch; each turns into a dict / JSON, CSV rows, a
terminal table, or a pandas DataFrame (one row per face, as py-feat users expect; pandas is
optional and imported only when asked for)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..common.choices import OUTPUT_FORMATS, TABLE
from ..common.errors import MimikaError
from ..prepare.boxes import Box

Point = tuple[float, float]

#: a face whose most likely emotion has a lower probability than this is flagged uncertain: with
#: calibrated probabilities (the shipped models', `mimika calibrate`) the model then expects to be
#: wrong about it more often than right
UNCERTAIN_BELOW = 0.5


@dataclass
class Face:
    """One face: its box (x, y, w, h), each emotion's probability (most likely first), the
    detector's landmarks when it gives them (image pixels, in `boxes.LANDMARKS` order), and in
    a video the id of the track it belongs to."""

    box: Box
    scores: dict[str, float]
    landmarks: tuple[Point, ...] | None = None
    track_id: int | None = None

    @property
    def label(self) -> str:
        return next(iter(self.scores))

    @property
    def score(self) -> float:
        return next(iter(self.scores.values()))

    @property
    def uncertain(self) -> bool:
        return self.score < UNCERTAIN_BELOW

    def to_dict(self) -> dict:
        d = {"box": list(self.box), "label": self.label, "uncertain": self.uncertain, "scores": dict(self.scores)}
        if self.landmarks is not None:
            d["landmarks"] = [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks]
        if self.track_id is not None:
            d["track"] = self.track_id
        return d


@dataclass
class ImageResult:
    """The faces of one input (an image, or a frame of a video), or why it could not be read."""

    file: str
    faces: list[Face] = field(default_factory=list)
    error: str | None = None
    frame: int | None = None  # for videos: the frame's index and time in seconds
    time: float | None = None
    notes: list[str] = field(default_factory=list)  # e.g. "multi-page TIFF: first page read"
    image: np.ndarray | None = field(default=None, repr=False)  # the frame, when asked to keep it

    def to_dict(self) -> dict:
        """The per-file object of `mimika predict --json`."""
        d: dict = {"file": self.file}
        if self.frame is not None:
            d.update(frame=self.frame, time=round(self.time or 0.0, 3))
        d["faces"] = [f.to_dict() for f in self.faces]
        if self.error:
            d["error"] = self.error
        if self.notes:
            d["notes"] = list(self.notes)
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def table(self) -> str:
        """A terminal table: per face its box and every emotion's score with a bar; columns sized to
        their contents so they never run into each other."""
        if self.error:
            return f"ERROR {self.error}"
        where = self.file if self.frame is None else f"{self.file} frame {self.frame} ({self.time or 0:.2f} s)"
        n = len(self.faces)
        lines = [f"{where}: {n} face{'s' if n != 1 else ''}"] + [f"  note: {note}" for note in self.notes]
        if not self.faces:
            return "\n".join(lines)
        heads = [f"face {i}  box {','.join(str(v) for v in face.box)}" + ("  (uncertain)" if face.uncertain else "")
                 for i, face in enumerate(self.faces, 1)]
        head_w = max(len(h) for h in heads) + 2
        label_w = max(len(label) for face in self.faces for label in face.scores) + 2
        for head, face in zip(heads, self.faces):
            for j, (label, p) in enumerate(face.scores.items()):
                lines.append(f"  {(head if j == 0 else ''):<{head_w}}{label:<{label_w}}{p:6.3f}  {'#' * round(p * 20)}")
        return "\n".join(lines)

    def records(self, labels: list[str]) -> list[dict]:
        """One flat record per face (and one for an image without faces): the rows of the CSV and of
        the DataFrame; each carries the error, as the JSON object does (an image whose faces were
        found may still fail, e.g. its annotated copy could not be written)."""
        base = {"file": self.file, "frame": self.frame, "time": None if self.time is None else round(self.time, 3)}
        if not self.faces:
            return [{**base, "face": None, "track": None, "x": None, "y": None, "w": None, "h": None, "label": None,
                     "score": None, "uncertain": None, **dict.fromkeys(labels), "error": self.error}]
        return [{**base, "face": i, "track": f.track_id, "x": f.box[0], "y": f.box[1], "w": f.box[2], "h": f.box[3],
                 "label": f.label, "score": f.score, "uncertain": f.uncertain,
                 **{name: f.scores.get(name) for name in labels},
                 "error": self.error} for i, f in enumerate(self.faces, 1)]  # faces found, then a copy not written

    def csv_rows(self, labels: list[str]) -> list[list[str]]:
        return [[f"{v:.3f}" if k == "time" and v is not None else _csv_cell(v) for k, v in r.items()]
                for r in self.records(labels)]

    def to_df(self, labels: list[str] | None = None):
        return Results([self]).to_df(labels)


def csv_header(labels: list[str]) -> list[str]:
    return list(ImageResult("").records(labels)[0])


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


class Results(list):
    """The results of several inputs, in input order."""

    def __init__(self, items: Iterable[ImageResult] = ()):
        super().__init__(items)

    def to_dicts(self) -> list[dict]:
        return [r.to_dict() for r in self]

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dicts(), indent=indent)

    def to_csv(self, labels: list[str]) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(csv_header(labels))
        for r in self:
            w.writerows(r.csv_rows(labels))
        return out.getvalue()

    def to_df(self, labels: list[str] | None = None):
        """A pandas DataFrame, one row per face (a row with empty face columns for an image without
        faces). Needs pandas, which mimika does not depend on."""
        try:
            import pandas as pd
        except ImportError:
            raise MimikaError("results as a DataFrame need pandas (pip install pandas)") from None
        labels = labels or _labels_of(self)
        return pd.DataFrame([rec for r in self for rec in r.records(labels)], columns=csv_header(labels))

    def table(self) -> str:
        return "\n".join(r.table() for r in self)


def _labels_of(results: Iterable[ImageResult]) -> list[str]:
    """The labels of the first face found, in CK+ code order."""
    from ..common.labels import in_code_order
    for r in results:
        for f in r.faces:
            return in_code_order(f.scores)
    return []


@dataclass
class BatchOutcome:
    """What a batch came to, tallied as its results stream by (`add`): how many were read, and the
    ones that could not be. A batch goes on past a bad input, so it fails as a whole only when
    nothing could be done (`nothing_done`: something failed and nothing was read; `mimika predict`
    then exits with 1). A video read in part and then cut short has done something."""

    done: int = 0
    failed: list[ImageResult] = field(default_factory=list)

    def add(self, result: ImageResult) -> ImageResult:
        if result.error:
            self.failed.append(result)
        else:
            self.done += 1
        return result

    @property
    def nothing_done(self) -> bool:
        return bool(self.failed) and not self.done


class ResultWriter:
    """Prints results as they come, in one of the command's formats: "table", "jsonl" (a JSON object
    per line), "csv" (a header, then rows), or "json" (one list, printed by `close`)."""

    FORMATS = (TABLE, *OUTPUT_FORMATS)

    def __init__(self, fmt: str, labels: list[str], out=None):
        import sys
        if fmt not in self.FORMATS:
            raise MimikaError(f"unknown output format {fmt!r}; one of {', '.join(self.FORMATS)}")
        self.fmt, self.labels, self.out = fmt, labels, out or sys.stdout
        self.kept: list[dict] = []
        self.csv = csv.writer(self.out, lineterminator="\n")
        if fmt == "csv":
            self.csv.writerow(csv_header(labels))

    def write(self, result: ImageResult) -> None:
        if self.fmt == "json":
            self.kept.append(result.to_dict())
            return
        if self.fmt == "csv":
            self.csv.writerows(result.csv_rows(self.labels))
        else:
            print(result.to_json() if self.fmt == "jsonl" else result.table(), file=self.out)
        self.out.flush()

    def close(self) -> None:
        if self.fmt == "json":
            print(json.dumps(self.kept, indent=2), file=self.out)
            self.out.flush()

