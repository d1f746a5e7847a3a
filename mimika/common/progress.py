"""Progress bars for long work: shown on a terminal, silent in pipes, logs and `--json` runs."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silence all progress bars (the CLI does this for --json and --quiet)."""
    global _quiet
    _quiet = quiet


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterable[T]:
    disable = _quiet or not sys.stderr.isatty()
    return tqdm(items, desc=desc, total=total, unit=unit, disable=disable, leave=False, file=sys.stderr)
