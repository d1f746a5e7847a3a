"""Faces followed through a video: stable track ids, per-frame rows, smoothing."""

import io
import json
import subprocess
import sys

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


def test_an_annotated_video_stopped_part_way_is_not_put_in_place(astronaut_bgr, tmp_path):
    """Stopped after 3 of 12 frames (the caller stops reading, Ctrl-C, a closed pipe): no annotated
    video appears as if complete, and no temporary file is left; read to its end, it appears whole."""
    from mimika.recognition.recognizer import Recognizer
    clip = two_face_clip(tmp_path / "two.avi", astronaut_bgr, frames=12)
    out = tmp_path / "out"
    recognizer = Recognizer()
    run = recognizer.predict([clip], annotate=out)
    assert [next(run).frame for _ in range(3)] == [0, 1, 2]
    run.close()
    assert not [p for p in out.rglob("*") if p.is_file()]
    assert len(list(recognizer.predict([clip], annotate=out))) == 12
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["two.mp4"]
    assert int(cv2.VideoCapture(str(out / "two.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)) == 12


class ClosedPipe(io.TextIOBase):
    """Standard output read by `head -n LINES`: after that many lines, every write is a broken pipe."""

    def __init__(self, lines: int, fd: int):
        self.left, self.fd, self.text = lines, fd, []

    def writable(self):
        return True

    def write(self, s):
        if self.left <= 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.left -= s.count("\n")
        self.text.append(s)
        return len(s)

    def fileno(self):
        return self.fd  # main() points it at /dev/null after a broken pipe


def test_a_closed_pipe_keeps_the_timeline(astronaut_bgr, tmp_path, monkeypatch, capsys):
    """`mimika predict two.avi --csv --timeline tl.png | head -3`: the run goes on to write the timeline
    (whole) and then ends as a closed pipe does (141)."""
    clip = two_face_clip(tmp_path / "two.avi", astronaut_bgr, frames=6)
    png = tmp_path / "tl.png"
    with open(tmp_path / "stdout.txt", "w") as sink:
        pipe = ClosedPipe(3, sink.fileno())
        monkeypatch.setattr(sys, "stdout", pipe)
        assert main(["predict", str(clip), "--csv", "--timeline", str(png)]) == 141
        monkeypatch.undo()
    assert len("".join(pipe.text).splitlines()) == 3
    assert cv2.imread(str(png)).shape[0] > 300 and f"timeline written to {png}" in capsys.readouterr().err
    png.unlink()
    r = subprocess.run(f"{sys.executable} -m mimika predict {clip} --csv --timeline {png} | head -3", shell=True,
                       capture_output=True, text=True, timeout=300)
    assert len(r.stdout.splitlines()) == 3 and "Traceback" not in r.stderr and png.exists(), r.stderr
