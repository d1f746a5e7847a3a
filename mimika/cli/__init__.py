"""The `mimika` command: argument mapping and printing over the Python API, nothing more.

    parser.py    one builder per command: its flags, help and examples
    commands.py  its handler, cmd_NAME: the arguments onto `mimika.api` / `mimika.data` / recognition,
                 what comes back printed

`main` runs one command and turns every `MimikaError` into one line and exit status 2.
"""

from __future__ import annotations

import sys

from ..common.choices import OUTPUT_FORMATS
from ..common.container import allowing_unchecked
from ..common.errors import NEEDS_TORCH, MimikaError
from . import commands
from .parser import build_parser

_parser = build_parser  # the name tests and `serve/local.py` import

__all__ = ["build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..common.progress import set_quiet
    set_quiet(any(getattr(args, k, False) for k in OUTPUT_FORMATS))  # machine-read output: no progress bars
    try:
        if getattr(args, "nproc", None) is not None:  # a training command: launch torchrun, or join its run
            from ..api import checkpoint_of
            from ..training.distributed import enter
            code = enter(args.nproc, args.device, sys.argv[1:] if argv is None else list(argv),
                         checkpoint_of(getattr(args, "checkpoint", None), getattr(args, "resume", None)))
            if code is not None:
                return code
        with allowing_unchecked(getattr(args, "allow_unchecked", False)):
            return getattr(commands, f"cmd_{args.command}")(args)
    except MimikaError as e:
        print(f"mimika: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        print(f"mimika: error: `mimika {args.command}` {NEEDS_TORCH}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mimika: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
