"""`mimika serve`: an HTTP API and a web page over the recognizer (FastAPI on uvicorn, from the
`serve` extra). This module stays light (no FastAPI import) so `mimika --help` stays fast:
`add_arguments` defines the command's flags, `main(args)` starts the server.

    mimika serve [--host 127.0.0.1] [--port 8000] [--model NAME] [--detector NAME] [--workers N]

Modules: settings (the flags as one dataclass, passed to worker processes), engine (models and
detectors loaded once per worker, thread-safe recognition), decoders (uploads decoded in child
processes bounded in memory and time), inputs (the request's image and options, checked), state
(one worker's engine, decoders and recognition threads), handlers (the routes, limits, errors,
token), stream (the WebSocket of live frames), app (wires them into one app), server (uvicorn: the
socket, the logs, HTTP/1.1 with its errors in JSON and lingering close), static/ (the page).
"""

from __future__ import annotations

import argparse
import os
import sys

from .settings import (
    DEFAULT_MAX_DECODE_MB,
    DEFAULT_MAX_DECODE_SECONDS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_UPLOAD_MB,
    ENV_TOKEN,
    ServeSettings,
)

__all__ = ["add_arguments", "main", "settings_from_args", "ServeSettings"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `mimika serve` (also `python -m mimika.serve`)."""
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (another than 127.0.0.1 / localhost "
                   "makes the API reachable from other machines: set a token)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--model", help="default model: a shipped name or a model file (default: the shipped default); "
                   "requests may name any shipped model or this one")
    p.add_argument("--detector", default="default", help="default face detector preset (mimika predict --help)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (each loads the model once)")
    p.add_argument("--threads", type=int, default=1, help="recognitions run at once in each worker")
    p.add_argument("--cpu-threads", type=int, default=0, help="threads one recognition may use (0: the cores "
                   "divided by workers x threads)")
    p.add_argument("--token", help=f"require 'Authorization: Bearer TOKEN' on the API (default: ${ENV_TOKEN}; prefer the "
                   "variable: a command line is visible to other local users)")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="let pages from this origin (https://example.org) call the API; repeat for more")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB,
                   help="largest upload in MB (10^6 bytes): larger ones get 413 before they are read")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="largest image in pixels: larger ones get 400 before they are decoded")
    p.add_argument("--max-decode-mb", type=float, default=DEFAULT_MAX_DECODE_MB,
                   help="memory one upload's decode may take (MB, in its decoder process): one that needs more "
                        "gets 400")
    p.add_argument("--max-decode-seconds", type=float, default=DEFAULT_MAX_DECODE_SECONDS,
                   help="time one upload's decode may take: one that takes longer is cancelled (400)")


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(host=args.host, port=args.port, model=args.model, detector=args.detector,
                         workers=args.workers, threads=args.threads, cpu_threads=args.cpu_threads,
                         cors=list(args.cors),
                         token=args.token or os.environ.get(ENV_TOKEN) or None,  # not a flag default: --help shows those
                         max_upload_mb=args.max_upload_mb, max_pixels=args.max_pixels,
                         max_decode_mb=args.max_decode_mb, max_decode_seconds=args.max_decode_seconds).check()


def main(args: argparse.Namespace) -> int:
    """Run the server until interrupted; 0 on a clean stop. Bad settings raise MimikaError."""
    from ..common.errors import MimikaError
    from ..network.config import resolve_model_path
    from ..prepare.detection import get_detector
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401  (uploads)
        import websockets  # noqa: F401  (the page's live mode)

        from .server import run  # uvicorn
    except ImportError as e:
        raise MimikaError(f"mimika serve needs the serve extra ({e.name} is missing): "
                          "pip install 'mimika[serve]'") from None
    settings = settings_from_args(args)
    if not resolve_model_path(settings.model).is_file():  # each worker loads it; a bad name fails here, once
        raise MimikaError(f"{settings.model}: no such model file or shipped model")
    get_detector(settings.detector)
    if not settings.local and not settings.token:
        print(f"mimika serve: warning: listening on {settings.host} without a token: anyone who can reach this "
              f"machine can use the API (set ${ENV_TOKEN} or --token)", file=sys.stderr, flush=True)
    os.environ.update(settings.to_env())
    run(settings)
    return 0
