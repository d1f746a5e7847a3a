"""Prediction on more than one core or machine: worker processes, shards, and joining outputs.

`predict(recognizer, sources, workers=N)` runs `Recognizer.predict` in N processes. Each builds the
recognizer once (sent to it pickled, with every ONNX Runtime session rebuilt in the worker with
cores // N threads, and OpenCV's threads set alike, so N x threads = cores), takes tasks of a few
consecutive images (a video is one task), and the results come back in input order with at most
2 x N tasks in flight, so memory stays bounded however many files. A worker that dies (a crash in
a decoder) costs only the input it was on: the tasks in flight are run again, alone, and a task
that kills a worker again has its inputs run one by one. Annotated copies are named once, here,
before the work is split (`annotate.plan_copies`); Ctrl-C kills the workers instead of waiting.

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
    order (`options`: every, annotate, ... as Recognizer.predict takes them). The annotated copies
    are named here, once, and each task takes its part of the plan. Stopped early (Ctrl-C, a
    consumer that stops reading), the workers are killed at once, not waited for."""
    from .annotate import Copies, plan_copies
    items = [x for s in sources for x in ([s] if isinstance(s, Source) else expand_inputs([s]))]
    if workers <= 1 or len(items) <= 1:  # one input: nothing to share
        yield from recognizer.predict(items, **options)
        return
    if any(s.path == "-" for s in items):
        raise MimikaError("standard input (-) is read by one process: leave out --workers")
    annotate = options.pop("annotate", None)
    copies = annotate if isinstance(annotate, Copies) else plan_copies(items, annotate) if annotate else None
    n_images = sum(not s.video for s in items)
    chunk = chunk or max(1, min(MAX_CHUNK, n_images // (4 * workers)))
    pool = _Pool(workers, _dumps(recognizer), options)
    todo = _tasks(items, chunk)
    pending: deque = deque()  # (task, its copies, its future), in input order
    start = 0

    def fill():
        nonlocal start
        while len(pending) < 2 * workers:
            task = next(todo, None)
            if task is None:
                return
            part = copies and copies.part(start, start + len(task))
            start += len(task)
            pending.append((task, part, pool.submit(task, part)))

    stopped = True
    try:
        fill()
        while pending:
            task, _, future = pending[0]
            try:
                results = pool.result(task, future)
            except pool.Broken:
                # a worker died: the pool is gone with every task in flight. Each is run again alone in
                # a fresh pool; one that kills a worker again has its inputs run one by one, so only
                # the input that kills a worker is reported and the rest of its task goes on
                suspects = list(pending)
                pending.clear()
                pool.discard()
                for t, p, _ in suspects:
                    yield from pool.alone(t, p)
                fill()
                continue
            pending.popleft()
            fill()
            yield from results
        stopped = False
    finally:
        if stopped:  # Ctrl-C, or the consumer stopped reading: what runs is no longer wanted
            pool.kill()
        else:
            pool.close()


class _Pool:
    """A spawn-started process pool (no fork of a process holding ONNX Runtime and OpenCV threads),
    started when first asked for, started afresh after a worker died; it keeps the annotated copies
    of the tasks in flight so that what a dead worker left half-written is removed."""

    def __init__(self, workers: int, payload: bytes, options: dict):
        from concurrent.futures.process import BrokenProcessPool
        self.Broken = BrokenProcessPool
        self.workers, self.payload, self.options = workers, payload, options
        self.executor = None
        self.in_flight: dict = {}  # future: the task's Copies (or None)

    def _start(self) -> None:
        """A fresh pool, checked to start: a worker that cannot even start is one error, not one per task."""
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        self.executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_worker,
                                            initargs=(self.payload, worker_threads(self.workers)))
        try:
            self.executor.submit(_ready).result()
        except Exception as e:
            self.kill()
            raise MimikaError(f"the worker processes could not start ({type(e).__name__}: {e}); "
                              "run with one worker to see why") from None

    def submit(self, task: list[Source], copies):
        if self.executor is None:
            self._start()
        future = self.executor.submit(_run_task, task, {**self.options, "annotate": copies})
        self.in_flight[future] = copies
        return future

    def result(self, task: list[Source], future) -> list[ImageResult]:
        """The task's results; an unexpected error in the worker goes to its inputs (the rest go on).
        A dead worker raises `Broken`, the task kept in flight for `discard` to clean up after."""
        try:
            results = future.result()
        except self.Broken:
            raise
        except Exception as e:
            results = [ImageResult(s.path, error=f"{s.path}: {type(e).__name__}: {e}") for s in task]
        del self.in_flight[future]
        return results

    def alone(self, task: list[Source], copies) -> list[ImageResult]:
        """A task run by itself in a fresh worker; if it kills that one too, each of its inputs alone."""
        try:
            return self.result(task, self.submit(task, copies))
        except self.Broken:
            self.discard()
        if len(task) == 1:
            return [ImageResult(task[0].path, error=f"{task[0].path}: the worker process reading it died "
                                "(a crash in a decoder?)")]
        return [r for i, s in enumerate(task) for r in self.alone([s], copies and copies.part(i, i + 1))]

    def discard(self) -> None:
        """After a worker died: the pool is shut (every worker joined) and the files it left are removed."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        self._remove_leftovers()

    def kill(self) -> None:
        """Stop now: the workers are killed (a task may take minutes), then what they left is removed."""
        if self.executor is not None:
            executor, self.executor = self.executor, None
            # (Python 3.14 names this kill_workers(); before, the processes are the executor's own)
            processes = list((getattr(executor, "_processes", None) or {}).values())
            for process in processes:
                process.kill()
            executor.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                process.join(timeout=30)
        self._remove_leftovers()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None

    def _remove_leftovers(self) -> None:
        from ..common.fileio import remove_stale_temporaries
        for copies in self.in_flight.values():
            for target in (copies.targets if copies else ()):
                remove_stale_temporaries(target)
        self.in_flight.clear()


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


def _order(path: str, where: str, file, frame) -> tuple:
    """The sort key of a record (its file's path parts, its frame or -1), or one line saying why a
    record cannot be placed."""
    if not isinstance(file, str):
        raise MimikaError(f"{path}: {where}: its file is not a name ({file!r}); not the output of mimika predict")
    try:
        if frame in (None, ""):
            return Path(file).parts, -1
        if isinstance(frame, (int, str)) and not isinstance(frame, bool):
            return Path(file).parts, int(frame)
    except ValueError:
        pass
    raise MimikaError(f"{path}: {where}: {file}: frame {frame!r} is not a whole number, so it cannot be sorted")


def _csv_rows(path: str, text: str, sort: bool) -> tuple[list[str], list[tuple[tuple, list[str]]]]:
    """A CSV output's header and rows (blank lines skipped), each row checked to be whole and, with
    `sort`, given its sort key."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    missing = [name for name in ("file", "frame") if name not in header]
    if sort and missing:
        raise MimikaError(f"{path}: no {' or '.join(missing)} column, so its rows cannot be sorted")
    file, frame = (header.index("file"), header.index("frame")) if sort else (0, 0)
    rows = []
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise MimikaError(f"{path}: row {reader.line_num} has {len(row)} of {len(header)} columns; "
                              "was its job cut short?")
        rows.append((_order(path, f"row {reader.line_num}", row[file], row[frame]) if sort else (), row))
    return header, rows


def _records(path: str, text: str, kind: str) -> list[dict]:
    """The objects of a JSON or JSON Lines output, each checked to be one."""
    try:
        records = json.loads(text) if kind == "json" else [json.loads(line) for line in text.splitlines()
                                                           if line.strip()]
    except json.JSONDecodeError as e:
        raise MimikaError(f"{path}: not whole JSON ({e}); was its job cut short?") from None
    for n, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise MimikaError(f"{path}: record {n} is not an object ({json.dumps(record)[:40]}); "
                              "not the output of mimika predict")
    return records


def merge(paths: list[str | os.PathLike], out: TextIO, sort: bool = False) -> int:
    """Join the outputs of `mimika predict` jobs (all CSV, all JSON Lines or all JSON) into `out`:
    one CSV header, JSON lists joined into one. `sort`: order by file and frame, as one run over a
    folder orders them (faces of a file keep their order). Returns the number of records. A file
    that is not such an output, or a record that cannot be sorted, is one line naming the file."""
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
        header, keyed = None, []
        for p, t in texts:
            h, rows = _csv_rows(p, t, sort)
            if header is not None and h != header:
                raise MimikaError(f"{p}: its CSV columns differ from {texts[0][0]}'s (another model's labels?)")
            header = h
            keyed += rows
        if sort:
            keyed.sort(key=lambda kr: kr[0])  # stable: the faces of a file keep their order
        w = csv.writer(out, lineterminator="\n")
        w.writerow(header)
        w.writerows(row for _, row in keyed)
        return len(keyed)
    keyed = []
    for p, t in texts:
        for n, record in enumerate(_records(p, t, kind), 1):
            keyed.append((_order(p, f"record {n}", record.get("file", ""), record.get("frame")) if sort else (),
                          record))
    if sort:
        keyed.sort(key=lambda kr: kr[0])  # stable: the faces of a file keep their order
    records = [r for _, r in keyed]
    if kind == "json":
        out.write(json.dumps(records, indent=2) + "\n")
    else:
        out.writelines(json.dumps(r) + "\n" for r in records)
    return len(records)
