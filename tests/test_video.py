"""Faces followed through a video: stable track ids, per-frame rows, smoothing."""

import json

import cv2
import numpy as np

from mimika.cli import main
from mimika.recognition.results import Face
from mimika.recognition.tracking import FaceTracker


def two_face_clip(path, astronaut_bgr, frames=12, fps=10):
    """The astronaut and her mirror image side by side, drifting towards each other without crossing."""
    h, w = astronaut_bgr.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (2 * w + 200, h))
    for i in range(frames):
        canvas = np.full((h, 2 * w + 200, 3), 127, np.uint8)
        canvas[:, 4 * i:4 * i + w] = astronaut_bgr
        canvas[:, w + 200 - 4 * i:2 * w + 200 - 4 * i] = astronaut_bgr[:, ::-1]
        writer.write(canvas)
    writer.release()
    return path


def test_two_faces_keep_their_ids(astronaut_bgr, tmp_path, capsys):
    clip = two_face_clip(tmp_path / "two.avi", astronaut_bgr)
    assert main(["predict", str(clip), "--json"]) == 0
    frames = json.loads(capsys.readouterr().out)
    assert len(frames) == 12 and all(len(f["faces"]) == 2 for f in frames)
    for f in frames:
        left, right = sorted(f["faces"], key=lambda face: face["box"][0])
        assert (left["track"], right["track"]) == (1, 2)


def test_tracker_starts_a_new_id_for_a_face_that_returns_late():
    scores = {"happiness": 1.0}
    t = FaceTracker(max_missing=2)
    assert [f.track_id for f in t.update([Face((10, 10, 50, 50), scores)])] == [1]
    for _ in range(3):
        t.update([])
    assert [f.track_id for f in t.update([Face((12, 10, 50, 50), scores)])] == [2]


def test_smoothing_averages_a_tracks_probabilities():
    t = FaceTracker(smoothing=0.5)
    t.update([Face((0, 0, 50, 50), {"happiness": 0.9, "sadness": 0.1})])
    face, = t.update([Face((2, 0, 50, 50), {"sadness": 0.9, "happiness": 0.1})])
    assert abs(face.scores["happiness"] - 0.5) < 1e-9 and abs(sum(face.scores.values()) - 1) < 1e-9


def test_csv_track_ids_and_a_timeline(astronaut_bgr, tmp_path, capsys):
    import csv
    import io
    clip = two_face_clip(tmp_path / "two.avi", astronaut_bgr, frames=6)
    png = tmp_path / "timeline.png"
    assert main(["predict", str(clip), "--csv", "--every", "2", "--timeline", str(png), "--smooth", "0.5"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["frame"], r["track"]) for r in rows] == [("0", "1"), ("0", "2"), ("2", "1"), ("2", "2"),
                                                        ("4", "1"), ("4", "2")]
    assert cv2.imread(str(png)).shape[0] > 300  # one panel per tracked face
