"""Prediction on more than one core or machine: worker processes, shards, and joining outputs.

`predict(recognizer, sources, workers=N)` runs `Recognizer.predict` in N processes. Each builds the
recognizer once (sent to it pickled, with every ONNX Runtime session rebuilt in the worker with
cores // N threads, and OpenCV's threads set alike, so N x threads = cores), takes tasks of a few
consecutive images (a video is one task), and the results come back in input order with at most
2 x N tasks in flight, so memory stays bounded however many files. A worker that dies (a crash in
a decoder) costs only the task it was on: its inputs get an error, the others are retried.

`shard(sources, k, n)` keeps the inputs of shard k of n: a stable hash of each input's name (its
path below the folder given, with that folder's name) picks its shard, so N jobs on N machines,
each given the same inputs, cover every input exactly once, and a file's shard does not depend on
which other files exist. `merge` joins the jobs' CSV, JSON Lines or JSON outputs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
from collections import deque
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from ..common.errors import MimikaError
from .recognizer import Recognizer, Source, expand_inputs
from .results import ImageResult

MAX_CHUNK = 16  # images per task: enough to batch their faces, few enough to balance the workers


# -- shards ------------------------------------------------------------------------------------
def parse_shard(text: str) -> tuple[int, int]:
    """"K/N" (K counted from 1) as (K, N)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise MimikaError(f"--shard {text}: expected K/N, e.g. 1/4 (the first of four shards)") from None
    if n < 1 or not 1 <= k <= n:
        raise MimikaError(f"--shard {text}: K must be between 1 and N (1/{max(n, 1)} ... {max(n, 1)}/{max(n, 1)})")
    return k, n


def shard_of(source: Source, n: int) -> int:
    """The shard (1..n) of an input: a stable hash of its name, the same on every machine and run."""
    key = Path(source.name).as_posix().encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % n + 1


def shard(sources: Iterable[Source], k: int, n: int) -> list[Source]:
    """The inputs of shard k of n (order kept)."""
    return [s for s in sources if shard_of(s, n) == k]


# -- worker processes ----------------------------------------------------------------------------
class _Pickler(pickle.Pickler):
    """Pickles a Recognizer for the workers: an ONNX model travels as its file and config, and is
    loaded again in the worker (a session cannot be pickled, and the worker wants its own threads)."""

    def reducer_override(self, obj):
        from ..network.predictor import OnnxModel
        if isinstance(obj, OnnxModel):
            return _onnx_model, (str(obj.path), obj.config, getattr(obj, "device", "auto"))
        return NotImplemented


_threads = 0
_recognizer: Recognizer | None = None


def _onnx_model(path: str, config, device: str):
    from ..network.predictor import OnnxModel
    model = OnnxModel(path, threads=_threads or None, device=device)
    model.config = config  # as the parent had it (e.g. its test-time augmentation setting)
    return model


def _start_worker(payload: bytes, threads: int) -> None:
    import dataclasses
    import signal
    import sys

    import cv2
    global _threads, _recognizer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    _threads = threads
    cv2.setNumThreads(threads)
    _recognizer = pickle.loads(payload)
    det = _recognizer.detector
    if dataclasses.is_dataclass(det) and "threads" in {f.name for f in dataclasses.fields(det)}:
        _recognizer.detector = dataclasses.replace(det, threads=threads)
    if "torch" in sys.modules:  # a PyTorch model (.npz) travelled instead of an ONNX one
        sys.modules["torch"].set_num_threads(threads)


def _ready() -> bool:
    return _recognizer is not None


def _run_task(sources: list[Source], options: dict) -> list[ImageResult]:
    out = []
    for res in _recognizer.predict(sources, **options):
        res.image = None  # frames kept for drawing stay in the worker
        out.append(res)
    return out


def _tasks(sources: list[Source], chunk: int) -> Iterator[list[Source]]:
    run: list[Source] = []
    for s in sources:
        if s.video:
            if run:
                yield run
                run = []
            yield [s]
        else:
            run.append(s)
            if len(run) == chunk:
                yield run
                run = []
    if run:
        yield run


def _dumps(recognizer: Recognizer) -> bytes:
    buf = io.BytesIO()
    try:
        _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(recognizer)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise MimikaError(f"this recognizer cannot be sent to worker processes ({e}); use one worker") from None
    return buf.getvalue()


def worker_threads(workers: int) -> int:
    """Threads per worker so that workers x threads = the cores this process may use."""
    from ..common.devices import cores
    return max(1, cores() // workers)


def predict(recognizer: Recognizer, sources: Iterable[str | os.PathLike | Source], workers: int = 1,
            chunk: int | None = None, **options) -> Iterator[ImageResult]:
    """`recognizer.predict(sources, **options)` in `workers` processes: the same results, in input
    order (`options`: every, annotate, ... as Recognizer.predict takes them)."""
    items = [x for s in sources for x in ([s] if isinstance(s, Source) else expand_inputs([s]))]
    if workers <= 1 or len(items) <= 1:  # one input: nothing to share
        yield from recognizer.predict(items, **options)
        return
    if any(s.path == "-" for s in items):
        raise MimikaError("standard input (-) is read by one process: leave out --workers")
    n_images = sum(not s.video for s in items)
    chunk = chunk or max(1, min(MAX_CHUNK, n_images // (4 * workers)))
    payload = _dumps(recognizer)
    todo = _tasks(items, chunk)
    pool = _Pool(workers, payload)
    pending: deque = deque()

    def fill():
        while len(pending) < 2 * workers:
            task = next(todo, None)
            if task is None:
                return
            pending.append((task, pool.submit(task, options)))

    try:
        fill()
        while pending:
            task, future = pending[0]
            try:
                results = future.result()
            except pool.Broken:
                # a worker died: retry the tasks in flight one at a time; the one that kills a worker
                # alone is reported, the others go on
                suspects = [t for t, _ in pending]
                pending.clear()
                for t in suspects:
                    pool.restart()
                    try:
                        results = pool.submit(t, options).result()
                    except pool.Broken:
                        results = [ImageResult(s.path, error=f"{s.path}: the worker process reading it died "
                                               "(a crash in a decoder?)") for s in t]
                    yield from results
                pool.restart()
                fill()
                continue
            except Exception as e:  # an unexpected error in the worker: its inputs get it, the rest go on
                results = [ImageResult(s.path, error=f"{s.path}: {type(e).__name__}: {e}") for s in task]
            pending.popleft()
            fill()
            yield from results
    finally:
        pool.close()


class _Pool:
    """A spawn-started process pool (no fork of a process holding ONNX Runtime and OpenCV threads)."""

    def __init__(self, workers: int, payload: bytes):
        from concurrent.futures.process import BrokenProcessPool
        self.Broken = BrokenProcessPool
        self.workers, self.payload = workers, payload
        self.executor = None
        self.restart()

    def restart(self) -> None:
        """A fresh pool, checked to start: a worker that cannot even start is one error, not one per task."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        self.executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_worker,
                                            initargs=(self.payload, worker_threads(self.workers)))
        try:
            self.executor.submit(_ready).result()
        except Exception as e:
            self.executor.shutdown(wait=False, cancel_futures=True)
            raise MimikaError(f"the worker processes could not start ({type(e).__name__}: {e}); "
                              "run with one worker to see why") from None

    def submit(self, task: list[Source], options: dict):
        return self.executor.submit(_run_task, task, options)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


# -- joining the outputs of shards -------------------------------------------------------------
def _kind(path: str, text: str) -> str:
    head = text.lstrip()[:1]
    if head == "[":
        return "json"
    if head == "{":
        return "jsonl"
    if text.startswith("file,"):
        return "csv"
    raise MimikaError(f"{path}: not the CSV, JSON Lines or JSON output of mimika predict")


def _order(record: dict) -> tuple:
    frame = record.get("frame")
    return Path(record.get("file") or "").parts, -1 if frame in (None, "") else int(frame)


def merge(paths: list[str | os.PathLike], out: TextIO, sort: bool = False) -> int:
    """Join the outputs of `mimika predict` jobs (all CSV, all JSON Lines or all JSON) into `out`:
    one CSV header, JSON lists joined into one. `sort`: order by file and frame, as one run over a
    folder orders them (faces of a file keep their order). Returns the number of records."""
    texts = []
    for p in paths:
        try:
            texts.append((str(p), Path(p).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as e:
            raise MimikaError(f"{p}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    texts = [(p, t) for p, t in texts if t.strip()]  # an empty shard's JSON Lines output is empty
    kinds = {p: _kind(p, t) for p, t in texts}
    if len(set(kinds.values())) > 1:
        raise MimikaError("the outputs mix formats (" + ", ".join(f"{p}: {k}" for p, k in kinds.items()) + ")")
    kind = next(iter(kinds.values()), "jsonl")
    if kind == "csv":
        header, rows = None, []
        for p, t in texts:
            reader = csv.reader(io.StringIO(t))
            h = next(reader)
            if header is not None and h != header:
                raise MimikaError(f"{p}: its CSV columns differ from {texts[0][0]}'s (another model's labels?)")
            header = h
            rows.extend(reader)
        if sort:
            col = {name: i for i, name in enumerate(header)}
            rows.sort(key=lambda r: _order({"file": r[col["file"]], "frame": r[col["frame"]]}))
        w = csv.writer(out, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        return len(rows)
    records = []
    for p, t in texts:
        try:
            records += json.loads(t) if kind == "json" else [json.loads(line) for line in t.splitlines() if line.strip()]
        except json.JSONDecodeError as e:
            raise MimikaError(f"{p}: not whole JSON ({e}); was its job cut short?") from None
    if sort:
        records.sort(key=_order)
    if kind == "json":
        out.write(json.dumps(records, indent=2) + "\n")
    else:
        out.writelines(json.dumps(r) + "\n" for r in records)
    return len(records)
