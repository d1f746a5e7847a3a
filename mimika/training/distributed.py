"""Where training runs: the device, and the processes of a torchrun group.

`torchrun --nproc-per-node N -m mimika train ...` (or `mimika train --nproc N`, which launches the
same through torchrun's own launcher, `torch.distributed.run`) starts N processes. Each reads its
rank from the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) and joins the group here:
gloo on CPU, NCCL on CUDA. The loop (training.py) wraps the network in DistributedDataParallel
and uses the few collective steps below: sums, a checkpoint's bytes sent from rank 0 (so only rank
0 needs the file), and each rank's random state gathered for a checkpoint. Only rank 0 writes.

PyTorch is imported inside the functions: the CLI asks `is_writer()` without loading it.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import sys
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..common.devices import cores, resolve_device
from ..common.errors import MimikaError, first_line


@dataclass(frozen=True)
class World:
    """This process's place in the run: its rank among `size` processes, and its device."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # "cpu" or "cuda:<local rank>"
    group: bool = False  # a torchrun process group was joined (even of one process: same code path)

    @property
    def writer(self) -> bool:
        """Only rank 0 writes checkpoints, histories and models."""
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


_world: World | None = None


def in_torchrun() -> bool:
    """Started by torchrun (or a launcher that sets the same variables), with any number of processes."""
    return "TORCHELASTIC_RUN_ID" in os.environ or {"RANK", "WORLD_SIZE", "MASTER_ADDR"} <= set(os.environ)


def is_writer() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def join(device: str = "auto") -> World:
    """This process's World on `device`; under torchrun, the process group (gloo on CPU, NCCL on
    CUDA) is joined on the first call and kept until exit."""
    global _world
    import torch
    rank, size = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if in_torchrun():
        import torch.distributed as dist
        if _world is not None and _world.cuda != dev.startswith("cuda"):
            raise MimikaError(f"this run's processes joined on {_world.device}: they cannot train on {dev} too")
        if dev.startswith("cuda"):
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            try:
                dist.init_process_group("nccl" if dev.startswith("cuda") else "gloo")
            except (RuntimeError, ValueError) as e:
                raise MimikaError(f"rank {rank} could not join the run ({gist(e)})") from None
            atexit.register(close)
    _world = World(rank, size, local_rank, dev, group=in_torchrun())
    return _world


def current() -> World:
    """The joined World, or a single process on the CPU when none was joined."""
    return _world or World()


def close() -> None:
    """Leave the process group (at exit, or after a run)."""
    global _world
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _world = None


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank's torch generator (dropout, augmentation): rank 0 keeps the run's seed,
    so a one-process run is unchanged; the others get independent streams."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _tensor(values, world: World, dtype):
    import torch
    return torch.as_tensor(values, dtype=dtype, device=world.device)


def all_sum(values: list[float], world: World) -> list[float]:
    """Each value summed over the ranks (float64)."""
    if world.size == 1:
        return list(values)
    import torch
    import torch.distributed as dist
    t = _tensor(values, world, torch.float64)
    with collective("summing results"):
        dist.all_reduce(t)
    return t.cpu().tolist()


def all_gather(array: np.ndarray, world: World, what: str = "gathering random states") -> np.ndarray:
    """A stack of every rank's array (same shape and dtype on each rank), rank 0 first."""
    if world.size == 1:
        return array[None]
    import torch
    import torch.distributed as dist
    t = torch.from_numpy(np.ascontiguousarray(array)).to(world.device)
    out = [torch.empty_like(t) for _ in range(world.size)]
    with collective(what):
        dist.all_gather(out, t)
    return np.stack([o.cpu().numpy() for o in out])


def check_same(value: str, world: World, what: str) -> None:
    """Every rank must hold the same `value` (a digest of the training data and settings): a run
    whose machines read different data stops at once, on every rank, with the ranks named."""
    if world.size == 1:
        return
    import hashlib
    mine = np.frombuffer(hashlib.sha256(value.encode()).digest()[:8], np.int64).copy()
    every = all_gather(mine, world, f"comparing the {what}")[:, 0]
    odd = [r for r in range(world.size) if every[r] != every[0]]
    if odd:
        who = f"ranks {', '.join(map(str, odd))} hold" if len(odd) > 1 else f"rank {odd[0]} holds"
        raise MimikaError(f"{who} other {what} than rank 0 (every process must see the same data and options)")


def bytes_from_rank0(read, world: World) -> bytes:
    """`read()` on rank 0, its bytes sent to every rank; a MimikaError it raises is raised on every
    rank, so all agree (used for the checkpoint a run resumes: only rank 0 needs the file)."""
    if world.size == 1:
        return read()
    import torch
    import torch.distributed as dist
    data, error = b"", b""
    if world.rank == 0:
        try:
            data = read()
        except MimikaError as e:
            error = str(e).encode()
    head = _tensor([len(data), len(error)], world, torch.int64)
    with collective("receiving the checkpoint from rank 0"):
        dist.broadcast(head, 0)
        n, n_err = head.tolist()
        body = _tensor(np.frombuffer(data + error, np.uint8).copy() if world.rank == 0 else np.zeros(n + n_err, np.uint8),
                       world, torch.uint8)
        dist.broadcast(body, 0)
    blob = body.cpu().numpy().tobytes()
    if n_err:
        raise MimikaError(blob[n:].decode(errors="replace"))
    return blob


def barrier(world: World, what: str) -> None:
    if world.size > 1:
        import torch.distributed as dist
        with collective(what):
            dist.barrier()


@contextlib.contextmanager
def rank_zero_first(world: World | None = None) -> Iterator[None]:
    """Rank 0 runs the block first (filling the dataset cache), then the others (reading it)."""
    world = world or current()
    if world.rank > 0:
        barrier(world, "waiting for rank 0 to prepare the data")
    yield
    if world.rank == 0:
        barrier(world, "waiting for the other ranks to prepare the data")


class PeerLost(MimikaError):
    """Another process of the run ended (killed, crashed or stopped by an error)."""


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """A collective step: a peer's death (a closed connection, a timeout) becomes one line."""
    import torch.distributed as dist
    try:
        yield
    except (dist.DistError, RuntimeError) as e:
        raise PeerLost(f"another process of the run ended while {what} ({gist(e)})") from None


def is_peer_error(e: BaseException) -> bool:
    """A failure of the group's communication (what DistributedDataParallel raises when a peer dies)."""
    import torch.distributed as dist
    text = str(e)
    return isinstance(e, (PeerLost, dist.DistError)) or (
        isinstance(e, RuntimeError) and any(k in text for k in ("gloo", "Connection", "NCCL", "ProcessGroup")))


def gist(e: BaseException) -> str:
    """The gist of a collective's error: its first line, without a C++ source location in front (gloo's)."""
    import re
    return re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", first_line(e) or type(e).__name__).split(". ")[0]


_ending = False


def hold_stop_signal() -> None:
    """The run is ending with its message: torchrun's SIGTERM must not cut that message short."""
    global _ending
    _ending = True


# -- the command line ----------------------------------------------------------------------------
class _ErrorsOnly(io.TextIOBase):
    """Standard error of ranks > 0: rank 0 reports the run, so only error reports pass here
    (from the first line starting 'mimika:' or 'Traceback' on), each line prefixed with the rank."""

    def __init__(self, stream, rank: int):
        self.stream, self.rank, self.buffer, self.passing = stream, rank, "", False

    def write(self, text: str) -> int:
        self.buffer += text
        while "\n" in self.buffer:
            line, self.buffer = self.buffer.split("\n", 1)
            self.passing = self.passing or line.startswith(("mimika:", "Traceback"))
            if self.passing:
                self.stream.write(f"[rank {self.rank}] {line}\n")
                self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


def enter(nproc: int, device: str, argv: list[str], checkpoint: str | None) -> int | None:
    """For a training command: launch `nproc` processes through torchrun and return its exit
    status; or, inside a torchrun process, join the group (rank 0 alone speaks) and return None."""
    if in_torchrun():
        import signal
        world = join(device)
        signal.signal(signal.SIGTERM, _stopped)
        if world.rank > 0:
            from ..common.progress import set_quiet
            set_quiet(True)
            sys.stdout = open(os.devnull, "w")
            sys.stderr = _ErrorsOnly(sys.stderr, world.rank)
        return None
    if nproc > 1:
        return launch(argv, nproc, checkpoint)
    return None


def _stopped(signum, frame):
    """torchrun stops the other processes (SIGTERM) when one fails: say so, and where to resume."""
    if not _ending:
        raise PeerLost("stopped by torchrun: another process of the run failed")


def without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(argv: list[str], nproc: int, checkpoint: str | None = None) -> int:
    """`mimika ARGV` in `nproc` processes on this machine, started by torchrun's launcher
    (`torch.distributed.run`, standalone: a free local port). Threads per process default to the
    cores divided by the processes (torchrun alone would give each one thread). A failed run ends
    with one line: which rank died, how, and where the last checkpoint is."""
    import logging
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores() // nproc)))
    os.environ.setdefault("LOGLEVEL", "ERROR")  # the elastic agent's own chatter
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):  # the agent's own report: the line below says it shorter
            logging.getLogger(name).setLevel(logging.CRITICAL)
    args = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "mimika",
                                         *without_nproc(argv)])
    try:
        run(args)
    except ChildFailedError as e:
        print(f"mimika: error: {failure_line(e.failures, checkpoint)}", file=sys.stderr, flush=True)
        return 2
    except SignalException as e:  # Ctrl-C, or the scheduler's SIGTERM: torchrun has stopped the processes
        print(f"mimika: interrupted ({e.sigval.name}). {checkpoint_note(checkpoint)}", file=sys.stderr, flush=True)
        return 130
    return 0


def failure_line(failures: dict, checkpoint: str | None) -> str:
    """One line for a failed run: the rank that failed first and how, then the last checkpoint.
    The cause comes first: a process killed or crashed (a signal other than torchrun's own SIGTERM),
    then one that stopped with an error, then those torchrun stopped; the lowest rank among equals."""
    import signal

    def cause(r):
        code = failures[r].exitcode
        return (0 if code < 0 and code != -signal.SIGTERM else 1 if code > 0 else 2), r
    rank = min(failures, key=cause)
    f = failures[rank]
    if f.exitcode < 0:
        try:
            how = f"was killed by {signal.Signals(-f.exitcode).name}"
        except ValueError:
            how = f"was killed by signal {-f.exitcode}"
    else:
        how = f"stopped with exit status {f.exitcode}" + (" (its message is above)" if f.exitcode == 2 else "")
    return f"rank {rank} (pid {f.pid}) {how}; the run stopped. {checkpoint_note(checkpoint)}"


def checkpoint_note(checkpoint: str | None) -> str:
    """Where the run can continue from: the checkpoint's epoch and world size, read from its file."""
    if not checkpoint:
        return "No checkpoint was kept (--checkpoint FILE keeps one after every epoch)."
    from .checkpoint import describe
    return describe(checkpoint)
