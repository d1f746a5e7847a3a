"""Scaling out (docs/scale.md): training in several processes with torchrun (one machine, and two
"machines" on localhost), a killed rank, prediction in worker processes, shards and their merge.

The torchrun runs are real: separate processes joined over loopback TCP (gloo), on 48 tiny faces
of the `seed` net. Tolerance of a 2-process run against 1 process with the same global batch:
1e-5 on every weight after one epoch (6 steps of lr 0.001), with dropout off, in float32, one
thread per process. Not 0: each rank's convolutions see half the batch and the gradient is summed
in another order. At lr 0.01 this toy set trains at the edge of stability, where any such float
difference grows to about 1e-3 within the epoch (one process with 1 and with 2 threads differs as
much); at 0.001 it stays near 1e-7. The processes draw their own dropout masks, so with dropout the
runs are equally good but not equal. bench/scale.py prints all these figures.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import two_class_faces

from mimika.cli import main
from mimika.recognition.parallel import merge, parse_shard, shard, shard_of
from mimika.recognition.recognizer import Source, expand_inputs

PYTHON = sys.executable
TOLERANCE = 1e-5

WORKER = """
import sys
import numpy as np
import torch
from mimika import TrainOptions, create_model, train
from mimika.prepare.crop import CropSpec
from mimika.prepare.datasets import faces_from_arrays
from mimika.training.distributed import join

def run(data_file, out):
    d = np.load(data_file, allow_pickle=False)
    data = faces_from_arrays(d["faces"][:, None], d["codes"], CropSpec(96, 96), crop="whole")
    model = create_model("seed", labels=data.labels, seed=0)
    for m in model.net.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    opts = TrainOptions(epochs=1, batch_size=8, lr=0.001, bf16=False, device="cpu")
    train(model, data, options=opts, out=f"{out}/model.npz", log=lambda line: None)
    return model

if __name__ == "__main__":
    model = run(sys.argv[1], sys.argv[2])
    np.savez(f"{sys.argv[2]}/rank{join().rank}.npz", **{k: v.numpy() for k, v in model.net.state_dict().items()})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loopback_env() -> dict:
    return dict(os.environ, GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", LOGLEVEL="ERROR")


@pytest.fixture(scope="module")
def faces48(astronaut_face):
    return two_class_faces(astronaut_face, n=24)


def test_two_machines_on_localhost_train_like_one_process(faces48, tmp_path):
    """torchrun --nnodes 2 with the c10d rendezvous, as on two machines, here two agents on
    127.0.0.1: the ranks end with identical weights, within TOLERANCE of one process with the same
    global batch, and only rank 0 wrote the model."""
    faces, codes = faces48
    np.savez(tmp_path / "data.npz", faces=faces, codes=codes)
    (tmp_path / "worker.py").write_text(WORKER)
    port = free_port()
    agents = [subprocess.Popen(
        [PYTHON, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
         "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "mimika-test",
         "--local-addr", "127.0.0.1", "--max-restarts", "0",
         str(tmp_path / "worker.py"), str(tmp_path / "data.npz"), str(tmp_path)],
        env=loopback_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    logs = [a.communicate(timeout=240)[0] for a in agents]
    assert [a.returncode for a in agents] == [0, 0], logs
    r0, r1 = np.load(tmp_path / "rank0.npz"), np.load(tmp_path / "rank1.npz")
    assert all(np.array_equal(r0[k], r1[k]) for k in r0.files)
    assert (tmp_path / "model.npz").exists()

    import torch
    sys.path.insert(0, str(tmp_path))  # the same code in this one process, with one thread as each rank
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        import worker
        one = {k: v.numpy() for k, v in worker.run(tmp_path / "data.npz", tmp_path / "one").net.state_dict().items()}
    finally:
        torch.set_num_threads(threads)
        sys.path.remove(str(tmp_path))
        sys.modules.pop("worker", None)
    diff = max(float(np.abs(one[k] - r0[k]).max()) for k in r0.files)
    saved = np.load(tmp_path / "model.npz")
    moved = max(float(np.abs(r0[k] - saved[f"param/{k}"]).max()) for k in r0.files)
    assert diff <= TOLERANCE, diff
    assert moved == 0  # the saved model holds rank 0's weights


def rank_pid(parent: int, rank: int) -> int | None:
    """The pid of a torchrun worker of `parent` (the launcher) with RANK=rank."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (d / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(d.name)
    return None


def class_folders(root: Path, faces, codes) -> Path:
    for i, (f, c) in enumerate(zip(faces, codes)):
        d = root / ("happy" if c == 5 else "surprise")
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"S{i % 6:03d}_{i:04d}.png"), f)
    return root


def test_a_killed_rank_ends_the_run_in_one_line_and_the_checkpoint_resumes(faces48, tmp_path, capsys):
    data = class_folders(tmp_path / "faces", *faces48)
    ckpt, out = tmp_path / "run.ckpt.npz", tmp_path / "m.npz"
    args = [PYTHON, "-m", "mimika", "train", "--nproc", "2", "--data", str(data), "--crop", "whole",
            "--batch-size", "4", "--out", str(out), "--checkpoint", str(ckpt)]
    run = subprocess.Popen(args + ["--epochs", "50"], env=loopback_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.02)
    victim = rank_pid(run.pid, 1)
    assert ckpt.exists() and victim, run.communicate(timeout=60)
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 2 and "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"mimika: error: rank 1 (pid {victim}) was killed by SIGKILL"), stderr
    assert f"--resume {ckpt}" in last and "2-process run" in last
    from mimika.training.checkpoint import MODEL_FORMAT, WHAT, read_container
    meta, _ = read_container(ckpt, MODEL_FORMAT, WHAT)
    done = meta["training"]["epoch"]
    assert meta["training"]["world_size"] == 2 and done >= 1

    # the checkpoint continues, here in one process (exactly on 2: bench/scale.py --resume-check),
    # and the run says how that differs
    assert main(args[3:] + ["--nproc", "1", "--epochs", str(done + 1), "--resume", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert f"resumed {ckpt} after epoch {done} (written by a 2-process run, continued with 1:" in out
    assert [h["epoch"] for h in json.loads((tmp_path / "m.history.json").read_text())] == list(range(1, done + 2))


# -- prediction ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory, astronaut_bgr):
    """14 photos from the astronaut (moved, scaled, mirrored, darker), a photo without a face and
    a file that is not an image, in two folders."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(14):
        img = np.roll(astronaut_bgr, int(rng.integers(-40, 40)), axis=1)
        img = cv2.resize(img, None, fx=rng.uniform(0.7, 1.2), fy=rng.uniform(0.7, 1.2))
        img = img[:, ::-1] if i % 3 == 0 else img
        (root / f"set{i % 2}").mkdir(exist_ok=True)
        cv2.imwrite(str(root / f"set{i % 2}" / f"p{i:02d}.jpg"), np.clip(img * rng.uniform(0.7, 1.0), 0, 255)
                    .astype(np.uint8))
    cv2.imwrite(str(root / "set0" / "blank.png"), np.full((90, 120, 3), 80, np.uint8))
    (root / "set1" / "broken.jpg").write_bytes(b"not a jpeg at all")
    return root


def predict_out(capsys, *args) -> str:
    capsys.readouterr()
    main(["predict", *map(str, args)])
    return capsys.readouterr().out


def test_two_workers_give_one_workers_output_and_annotations(photo_folder, tmp_path, capsys):
    one = predict_out(capsys, photo_folder, "--json", "--annotate", tmp_path / "a1")
    two = predict_out(capsys, photo_folder, "--json", "--workers", "2", "--annotate", tmp_path / "a2")
    assert one == two
    results = json.loads(one)
    assert len(results) == 16 and sum(bool(r["faces"]) for r in results) >= 12
    assert any("error" in r for r in results)  # the broken file: reported, the batch went on
    files = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert files(tmp_path / "a1") == files(tmp_path / "a2") and len(files(tmp_path / "a1")) == 15


def test_videos_through_workers(astronaut_bgr, tmp_path, capsys):
    """A video is one task; its frames come back in order, between the images around it."""
    writer = cv2.VideoWriter(str(tmp_path / "b.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, astronaut_bgr.shape[1::-1])
    for i in range(4):
        writer.write(np.roll(astronaut_bgr, 3 * i, axis=1))
    writer.release()
    for name in ("a.jpg", "c.jpg"):
        cv2.imwrite(str(tmp_path / name), astronaut_bgr)
    one = predict_out(capsys, tmp_path, "--jsonl")
    assert predict_out(capsys, tmp_path, "--jsonl", "--workers", "2") == one
    assert [(json.loads(r)["file"][-5:], json.loads(r).get("frame")) for r in one.splitlines()] == [
        ("a.jpg", None), ("b.avi", 0), ("b.avi", 1), ("b.avi", 2), ("b.avi", 3), ("c.jpg", None)]


def test_workers_stream_in_input_order_with_bounded_tasks(photo_folder):
    """Chunks of one image and four workers: still input order; videos would be single tasks."""
    from mimika.recognition.parallel import _tasks, predict
    from mimika.recognition.recognizer import Recognizer
    sources = expand_inputs([photo_folder])
    got = [r.file for r in predict(Recognizer("seed"), sources, workers=3, chunk=1)]
    assert got == [s.path for s in sources]
    video = Source("v.mp4", Path("v.mp4"), video=True)
    assert [len(t) for t in _tasks(sources[:5] + [video] + sources[5:7], chunk=2)] == [2, 2, 1, 1, 2]


def test_shards_partition_the_inputs():
    names = [f"photos/{d}/img{i:04d}.jpg" for d in ("a", "b c", "ü") for i in range(200)] + ["clip.mp4"]
    sources = [Source(f"/mnt/data/{n}", Path(n), n.endswith(".mp4")) for n in names]
    for n in (1, 2, 3, 7):
        parts = [shard(sources, k, n) for k in range(1, n + 1)]
        assert sorted(s.path for p in parts for s in p) == sorted(s.path for s in sources)  # each exactly once
        assert min(len(p) for p in parts) > 0.6 * len(sources) / n  # and roughly even
    moved = [Source(f"/elsewhere/{n}", Path(n)) for n in names]  # another machine's mount point
    assert [shard_of(s, 4) for s in moved] == [shard_of(s, 4) for s in sources]
    assert parse_shard("2/4") == (2, 4)
    from mimika.common.errors import MimikaError
    for bad in ("0/4", "5/4", "x", "1/0"):
        with pytest.raises(MimikaError, match="K/N|between 1 and N"):
            parse_shard(bad)


@pytest.mark.parametrize("fmt", ["--csv", "--jsonl", "--json"])
def test_merged_shards_equal_one_run(photo_folder, tmp_path, capsys, fmt):
    whole = predict_out(capsys, photo_folder, fmt)
    parts = []
    for k in (1, 2, 3):
        parts.append(tmp_path / f"part{k}")
        parts[-1].write_text(predict_out(capsys, photo_folder, fmt, "--shard", f"{k}/3"))
    assert main(["merge", "--sort", *map(str, parts)]) == 0
    assert capsys.readouterr().out == whole
    if fmt != "--json":  # cat is enough for JSON Lines, and for CSV past the first header
        cat = "".join(p.read_text().split("\n", 1)[1] if fmt == "--csv" and i else p.read_text()
                      for i, p in enumerate(parts))
        key = (lambda t: sorted(t.splitlines()))
        assert key(cat) == key(whole)


def test_merge_refuses_mixed_or_foreign_files(tmp_path):
    (tmp_path / "a.csv").write_text("file,frame\nx.jpg,\n")
    (tmp_path / "b.jsonl").write_text('{"file": "y.jpg", "faces": []}\n')
    (tmp_path / "c.txt").write_text("x.jpg: 1 face\n")
    from mimika.common.errors import MimikaError
    with pytest.raises(MimikaError, match="mix formats"):
        merge([tmp_path / "a.csv", tmp_path / "b.jsonl"], io.StringIO())
    with pytest.raises(MimikaError, match="c.txt: not the CSV"):
        merge([tmp_path / "c.txt"], io.StringIO())


def test_an_empty_shard_is_not_an_error(astronaut_path, capsys):
    k = next(k for k in (1, 2) if shard_of(Source("", Path(astronaut_path.name)), 2) != k)
    assert main(["predict", str(astronaut_path), "--csv", "--shard", f"{k}/2"]) == 0
    out = capsys.readouterr()
    assert list(csv.reader(io.StringIO(out.out)))[0][0] == "file" and len(out.out.splitlines()) == 1
    assert "0 of 1 inputs" in out.err


def test_devices_cpu_everywhere_and_cuda_refused_in_one_line(astronaut_path, tmp_path, capsys):
    import torch
    assert main(["models", "--verbose"]) == 0
    assert "prediction runs on CPUExecutionProvider" in capsys.readouterr().out
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: scripts/gpu_check.sh covers it")
    assert main(["evaluate", "--model", "seed", "--data", "nowhere", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "CUDA provider" in err[0] and "gpu" in err[0]
    from mimika.common.devices import resolve_device
    from mimika.common.errors import MimikaError
    with pytest.raises(MimikaError, match="PyTorch sees no GPU"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"
    assert main(["export", "seed", str(tmp_path / "s.onnx"), "--device", "cpu"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "CPUExecutionProvider" in line and float(line.rsplit(" ", 1)[1]) < 1e-5


# -- workers that collide, die, stall or are interrupted (#29) ---------------------------------------
MARK = 7  # the gray level of the one image a Sabotage detector acts on


class Sabotage:
    """A detector that kills ("kill") or stalls ("stall") the worker process that meets the marked
    image (a plain gray image of level MARK), as a decoder's crash or hang would; everything else
    goes to the Haar detector. In the test's own process it refuses to act."""

    takes_color = False

    def __init__(self, action: str):
        from mimika.prepare.detection import get_detector
        self.action, self.inner = action, get_detector("haar")

    def detect(self, image):
        import multiprocessing
        if image.ndim == 2 and image.min() == image.max() == MARK:
            assert multiprocessing.parent_process() is not None, "only a worker process is sabotaged"
            if self.action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(600)
        return self.inner.detect(image)


def sabotage_folder(root: Path, astronaut_bgr, n_good: int, marked_at: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_good + 1):
        paths.append(root / f"p{i:02d}.png")
        image = np.full((96, 96, 3), MARK, np.uint8) if i == marked_at else np.roll(astronaut_bgr, 5 * i, axis=1)
        cv2.imwrite(str(paths[-1]), image)
    return paths


def test_a_worker_that_dies_fails_only_the_input_that_kills_it(astronaut_bgr, tmp_path):
    """The marked image kills every worker that reads it; the six good images of its task (one task
    of seven) are retried alone in fresh workers and come back with their faces."""
    from mimika.recognition.parallel import predict
    from mimika.recognition.recognizer import Recognizer
    paths = sabotage_folder(tmp_path / "in", astronaut_bgr, n_good=6, marked_at=3)
    results = list(predict(Recognizer("seed", detector=Sabotage("kill")), paths, workers=2, chunk=7,
                           annotate=tmp_path / "out"))
    assert [r.file for r in results] == [str(p) for p in paths]
    assert [r.file for r in results if r.error] == [str(paths[3])]
    assert "the worker process reading it died" in results[3].error
    assert all(len(r.faces) == 1 for i, r in enumerate(results) if i != 3)
    assert _written(tmp_path / "out") == [f"p{i:02d}.png" for i in range(7) if i != 3]  # no temporaries left


def _written(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_workers_keep_every_annotated_copy_whose_names_collide(astronaut_path, astronaut_bgr, tmp_path, capsys):
    """in/a.png and in/a.gif: a.png and a-2.png, with one process and with two (names are planned
    once, before the work is split)."""
    from PIL import Image
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), astronaut_bgr)
    Image.open(astronaut_path).save(tmp_path / "in" / "a.gif")
    for out, workers in (("one", "1"), ("two", "2")):
        assert main(["predict", str(tmp_path / "in"), "--csv", "--workers", workers,
                     "--annotate", str(tmp_path / out)]) == 0
        assert _written(tmp_path / out) == ["in/a-2.png", "in/a.png"], workers


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


@pytest.mark.parametrize("where", ["generator", "caller"])
def test_ctrl_c_with_workers_stops_at_once(astronaut_bgr, tmp_path, where):
    """Ctrl-C while a worker is stuck in a task (here for 600 s): the run ends with KeyboardInterrupt
    without waiting for it, and its worker processes are gone; whether the interrupt lands while
    the results are awaited ("generator") or in the caller's own loop, which never closes the
    generator ("caller": the interpreter's exit would wait for the stalled task)."""
    import select
    paths = sabotage_folder(tmp_path / "in", astronaut_bgr, n_good=3, marked_at=1)
    script = tmp_path / "run.py"
    script.write_text(
        "import signal, sys, time\n"
        # Ctrl-C as a terminal's user sends it: a shell that ran the tests in the background (without
        # job control) ignores SIGINT, and every child inherits that
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_scale import Sabotage\n"
        "from mimika.recognition.parallel import predict\n"
        "from mimika.recognition.recognizer import Recognizer\n"
        "if __name__ == '__main__':\n"
        "    for r in predict(Recognizer('seed', detector=Sabotage('stall')), sys.argv[1:], workers=2, chunk=1):\n"
        "        print(r.file, flush=True)\n"
        + ("        time.sleep(120)\n" if where == "caller" else ""))
    run = subprocess.Popen([PYTHON, str(script), *map(str, paths)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    try:
        ready, _, _ = select.select([run.stdout], [], [], 180)
        assert ready and run.stdout.readline().strip() == str(paths[0]), run.stderr.read() if run.poll() else ""
        workers = _children(run.pid)
        assert workers
        os.kill(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=60)  # far less than the stalled task's 600 s
        assert "KeyboardInterrupt" in stderr
        deadline = time.monotonic() + 60
        while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()


@pytest.mark.parametrize("name, text, problem", [
    ("frame.csv", "file,frame\nb.jpg,3\na.jpg,x\n", "a.jpg: frame 'x' is not a whole number"),
    ("list.json", "[1, 2]\n", "record 1 is not an object"),
    ("frame.json", '[{"file": "a.jpg", "frame": "two"}]', "a.jpg: frame 'two' is not a whole number"),
    ("file.jsonl", '{"file": 3}\n', "record 1: its file is not a name"),
    ("short.csv", "file,face\na.jpg,1\n", "no frame column"),
    ("ragged.csv", "file,frame,face\na.jpg\n", "row 2 has 1 of 3 columns"),
])
def test_merge_sort_refuses_records_it_cannot_order_in_one_line(tmp_path, capsys, name, text, problem):
    (tmp_path / name).write_text(text)
    assert main(["merge", "--sort", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"{tmp_path / name}: " in err and problem in err, err
