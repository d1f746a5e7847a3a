"""Faces followed through a video: a stable id per face, and optionally its probabilities smoothed.

A light matcher, no dependencies: each track predicts its next box from its last two (constant
velocity per analysed frame, the frames between them counted, so a face found again after a gap
keeps moving at its own speed), and detections are matched to tracks greedily, best overlap first (IoU of the
predicted box; when nothing overlaps, as after a fast move or skipped frames, the nearest centre
within one face width). A detection matched to no track starts a new one; a track unmatched for
`max_missing` analysed frames ends, so a face that leaves and returns may get a new id. Two faces
that do not cross keep their ids: a detection is never taken from the track it overlaps most.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..prepare.boxes import Box, iou
from .results import Face


def _centre(b: Box) -> np.ndarray:
    return np.array([b[0] + b[2] / 2, b[1] + b[3] / 2], float)


@dataclass
class _Track:
    id: int
    boxes: list[Box] = field(default_factory=list)
    missing: int = 0  # analysed frames since the last box
    apart: int = 1  # analysed frames between the last two boxes (more than 1 after a gap)
    scores: dict[str, float] | None = None  # smoothed probabilities

    def predicted(self) -> Box:
        """Where the face is now: the last box moved on at the speed between the last two, per
        analysed frame (the two may be a gap apart), for the frames since the last one."""
        if len(self.boxes) < 2:
            return self.boxes[-1]
        (x1, y1, _, _), (x2, y2, w2, h2) = self.boxes[-2], self.boxes[-1]
        step = (1 + self.missing) / self.apart
        return (round(x2 + (x2 - x1) * step), round(y2 + (y2 - y1) * step), w2, h2)

    def add(self, box: Box) -> None:
        self.apart = 1 + self.missing
        self.boxes = (self.boxes + [box])[-2:]
        self.missing = 0


class FaceTracker:
    """Assigns `track_id` to the faces of consecutive analysed frames (call `update` per frame)."""

    def __init__(self, min_iou: float = 0.2, max_missing: int = 10, smoothing: float = 0.0):
        if not 0 <= smoothing < 1:
            raise ValueError("smoothing must be in [0, 1)")
        self.min_iou, self.max_missing, self.smoothing = min_iou, max_missing, smoothing
        self.tracks: list[_Track] = []
        self.next_id = 1

    def update(self, faces: list[Face]) -> list[Face]:
        """The same faces, each with its track's id (and smoothed scores when asked)."""
        pairs = []
        for ti, track in enumerate(self.tracks):
            guess = track.predicted()
            for fi, face in enumerate(faces):
                overlap = iou(guess, face.box)
                if overlap >= self.min_iou:
                    pairs.append((overlap, ti, fi))
                else:
                    dist = np.linalg.norm(_centre(guess) - _centre(face.box))
                    if dist < max(guess[2], face.box[2]):  # nearest centre within one face width
                        pairs.append((-dist / max(guess[2], 1), ti, fi))
        used_t, used_f, match = set(), set(), {}
        for _, ti, fi in sorted(pairs, reverse=True):
            if ti not in used_t and fi not in used_f:
                used_t.add(ti)
                used_f.add(fi)
                match[fi] = self.tracks[ti]
        for fi, face in enumerate(faces):
            track = match.get(fi)
            if track is None:
                track = _Track(self.next_id)
                self.next_id += 1
                self.tracks.append(track)
            track.add(face.box)
            face.track_id = track.id
            if self.smoothing:
                face.scores = track.scores = self._smoothed(track.scores, face.scores)
        for track in self.tracks:
            if track.id not in {f.track_id for f in faces}:
                track.missing += 1
        self.tracks = [t for t in self.tracks if t.missing <= self.max_missing]
        return faces

    def _smoothed(self, before: dict[str, float] | None, now: dict[str, float]) -> dict[str, float]:
        """Exponential moving average of a track's probabilities, ranked again."""
        if before is None:
            return dict(now)
        a = self.smoothing
        mixed = {k: a * before.get(k, 0.0) + (1 - a) * p for k, p in now.items()}
        total = sum(mixed.values()) or 1.0
        return dict(sorted(((k, v / total) for k, v in mixed.items()), key=lambda kv: -kv[1]))
