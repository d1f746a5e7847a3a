"""Track ids through a video (issue #29 item 4): a face missed for up to `max_missing` (10) analysed
frames keeps its id, for every frame after the gap, not only the first; faces that enter and leave
get their own ids; `every` with a moving face, end to end through the Recognizer."""

import cv2
import numpy as np
import pytest

from mimika.recognition.results import Face
from mimika.recognition.tracking import FaceTracker

SCORES = {"happiness": 0.75, "neutral": 0.25}
SIDE = 60  # the face's box side
STEP = 12  # pixels it moves to the right per analysed frame: a fifth of its width


def box_at(frame: int, x0: int = 20, y: int = 100, step: int = STEP) -> tuple[int, int, int, int]:
    return (x0 + step * frame, y, SIDE, SIDE)


def ids_of_a_moving_face(gap: int, before: int = 4, after: int = 15, tracker: FaceTracker | None = None):
    """The ids a tracker gives a face moving at constant speed, seen for `before` frames, missed for
    `gap`, then seen for `after` more: (ids before the gap, ids after it)."""
    t = tracker or FaceTracker()
    seen_before = [t.update([Face(box_at(i), SCORES)])[0].track_id for i in range(before)]
    for _ in range(gap):
        assert t.update([]) == []
    seen_after = [t.update([Face(box_at(i), SCORES)])[0].track_id for i in range(before + gap, before + gap + after)]
    return seen_before, seen_after


@pytest.mark.parametrize("gap", range(1, 11))
def test_a_moving_face_keeps_its_id_across_a_gap_of_up_to_10_frames(gap):
    before, after = ids_of_a_moving_face(gap)
    assert before == [1] * 4
    assert after == [1] * 15, f"gap of {gap} frames: ids after it {after}"


@pytest.mark.parametrize("gap", [11, 12, 20])
def test_a_face_missing_for_more_than_10_frames_gets_a_new_id(gap):
    before, after = ids_of_a_moving_face(gap)
    assert before == [1] * 4 and after == [2] * 15


def test_the_gap_limit_follows_max_missing():
    assert ids_of_a_moving_face(3, tracker=FaceTracker(max_missing=3))[1] == [1] * 15
    assert ids_of_a_moving_face(4, tracker=FaceTracker(max_missing=3))[1] == [2] * 15


def test_a_face_seen_once_before_a_gap_keeps_its_id():
    """No velocity yet: the track waits where it was seen."""
    t = FaceTracker()
    assert t.update([Face((100, 100, SIDE, SIDE), SCORES)])[0].track_id == 1
    for _ in range(7):
        t.update([])
    ids = [t.update([Face((104 + 2 * i, 100, SIDE, SIDE), SCORES)])[0].track_id for i in range(10)]
    assert ids == [1] * 10


def test_two_gaps_in_a_row_keep_the_id():
    t = FaceTracker()
    ids = []
    for frame in range(40):
        seen = not (5 <= frame < 11 or 20 <= frame < 29)  # missed for 6, then for 9 frames
        ids += [f.track_id for f in t.update([Face(box_at(frame), SCORES)] if seen else [])]
    assert ids == [1] * (40 - 6 - 9)


def test_faces_that_enter_and_leave_get_their_own_ids():
    """A stays all along (moving right); B enters at frame 5 and leaves after frame 14 (moving left,
    below A); C enters at frame 30, where B left, after B's track ended: a new id, not B's."""
    t = FaceTracker()
    seen: dict[str, list[int]] = {"A": [], "B": [], "C": []}
    for frame in range(45):
        faces = {"A": Face(box_at(frame), SCORES)}
        if 5 <= frame < 15:
            faces["B"] = Face(box_at(frame - 5, x0=600, y=300, step=-STEP), SCORES)
        if frame >= 30:
            faces["C"] = Face(box_at(9, x0=600, y=300, step=-STEP), SCORES)
        listed = list(faces.items())[::-1 if frame % 2 else 1]  # the detector's order says nothing
        out = t.update([f for _, f in listed])
        for (name, _), face in zip(listed, out):
            seen[name].append(face.track_id)
    assert seen["A"] == [1] * 45
    assert seen["B"] == [2] * 10
    assert seen["C"] == [3] * 15


def test_two_faces_missed_at_different_times_keep_their_ids():
    t = FaceTracker()
    for frame in range(30):
        faces = []
        if not 8 <= frame < 14:
            faces.append(Face(box_at(frame), SCORES))
        if not 16 <= frame < 26:
            faces.append(Face(box_at(frame, x0=700, y=120, step=-STEP), SCORES))
        ids = sorted((f.box[1], f.track_id) for f in t.update(faces))
        assert [i for y, i in ids if y == 100] in ([], [1]) and [i for y, i in ids if y == 120] in ([], [2]), frame


# end to end: a real clip, a moving face, frames where it is hidden, --every --------------------

def moving_face_clip(path, astronaut_bgr, frames: int, step: int, hidden: range) -> str:
    """The astronaut's head (a 200 px crop) moving `step` px right per frame over gray; in the
    frames of `hidden` it is covered (no face to find)."""
    head = astronaut_bgr[10:210, 140:340]
    width = 200 + step * frames + 40
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, 240))
    for i in range(frames):
        canvas = np.full((240, width, 3), 127, np.uint8)
        if i not in hidden:
            canvas[20:220, 20 + step * i:220 + step * i] = head
        writer.write(canvas)
    writer.release()
    return str(path)


@pytest.mark.parametrize("every", [1, 3])
def test_a_moving_face_hidden_for_a_while_keeps_its_id_through_the_recognizer(astronaut_bgr, tmp_path, every):
    """With every 3 the face moves 3 steps (42 px, about a third of its box) per analysed frame,
    and is hidden for 3 analysed frames (every 1: 9)."""
    from mimika import Recognizer
    clip = moving_face_clip(tmp_path / "moving.avi", astronaut_bgr, frames=36, step=14, hidden=range(9, 18))
    results = list(Recognizer().predict([clip], every=every))
    assert [r.frame for r in results] == list(range(0, 36, every))
    seen = [(r.frame, [f.track_id for f in r.faces]) for r in results]
    assert all(ids == [] for frame, ids in seen if 9 <= frame < 18), seen
    assert all(ids == [1] for frame, ids in seen if not 9 <= frame < 18), seen
    xs = [r.faces[0].box[0] for r in results if r.faces]
    assert all(b > a for a, b in zip(xs, xs[1:])), xs  # the face did move


def test_smooth_through_the_cli_gives_each_tracks_moving_average(astronaut_bgr, tmp_path, capsys):
    """--smooth A: a track's probabilities are A x its previous ones + (1 - A) x this frame's
    (renormalized), worked out here from the unsmoothed run. The face alternates with its mirror
    image, which the seed model reads quite differently, so the average has something to do."""
    import json

    from mimika.cli import main
    head = astronaut_bgr[10:210, 140:340]
    path = str(tmp_path / "alternating.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (240, 240))
    for i in range(6):
        canvas = np.full((240, 240, 3), 127, np.uint8)
        canvas[20:220, 20:220] = head if i % 2 == 0 else head[:, ::-1]
        writer.write(canvas)
    writer.release()

    def run(*flags):
        assert main(["predict", path, "--json", "--model", "seed", *flags]) == 0
        frames = json.loads(capsys.readouterr().out)
        assert [len(f["faces"]) for f in frames] == [1] * 6 and {f["faces"][0]["track"] for f in frames} == {1}
        return [f["faces"][0]["scores"] for f in frames]

    raw, smoothed = run(), run("--smooth", "0.75")
    want = dict(raw[0])
    for t, (now, got) in enumerate(zip(raw, smoothed)):
        if t:
            mixed = {k: 0.75 * want[k] + 0.25 * p for k, p in now.items()}
            want = {k: v / sum(mixed.values()) for k, v in mixed.items()}
        assert max(abs(got[k] - want[k]) for k in want) < 1e-6, (t, got, want)
        assert list(got) == sorted(got, key=lambda k: -got[k])  # ranked again
    assert max(abs(smoothed[t][k] - raw[t][k]) for t in range(1, 6) for k in raw[t]) > 0.05  # it did smooth
