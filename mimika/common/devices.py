"""Which cores and which device a process may use: the CPU affinity it was given (not the machine's
core count), and the PyTorch device a name stands for."""

from __future__ import annotations

import os

from .choices import DEVICES
from .errors import MimikaError


def cores() -> int:
    """The cores this process may run on (its CPU affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_device(name: str = "auto", local_rank: int = 0) -> str:
    """`auto`: the GPU of this local rank when PyTorch sees one, else the CPU."""
    import torch
    if name not in DEVICES:
        raise MimikaError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return "cpu"
    if not torch.cuda.is_available():
        raise MimikaError(f"--device cuda: PyTorch sees no GPU (torch {torch.__version__}"
                          f"{', a CPU-only build' if torch.version.cuda is None else ''})")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise MimikaError(f"local rank {local_rank} has no GPU of its own (this machine has {count}); "
                          f"start at most {count} processes per machine with --device cuda")
    return f"cuda:{local_rank}"
