"""A `mimika serve` process on a free local port, for tests, benchmarks and notebooks:

    with LocalServer(["--workers", "2"]) as server:
        httpx2.post(server.url + "/v1/predict", files={"image": open("photo.jpg", "rb")})

It binds 127.0.0.1 only, waits until /healthz says ready, and stops the server (and its worker
processes) on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from ..common.errors import MimikaError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_command() -> list[str]:
    """`mimika serve` when the command line has it, else `python -m mimika.serve` (the same code)."""
    from ..cli import _parser
    commands = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    return [sys.executable, "-m", "mimika", "serve"] if "serve" in commands else [sys.executable, "-m", "mimika.serve"]


class LocalServer:
    """`mimika serve ARGS --port P` on 127.0.0.1, ready on entry, stopped on exit; its output goes
    to a temporary file (`log()` reads it)."""

    def __init__(self, args: list[str] = (), env: dict[str, str] | None = None, timeout: float = 90):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = serve_command() + ["--host", "127.0.0.1", "--port", str(self.port), *args]
        self.env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}  # env: the whole environment
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self._out = tempfile.TemporaryFile()

    def __enter__(self) -> "LocalServer":
        self.proc = subprocess.Popen(self.command, stdout=self._out, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)  # its own group: workers can be stopped with it
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MimikaError(f"the server exited ({self.proc.returncode}): {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if json.load(r).get("status") == "ready":
                        return self
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise MimikaError(f"the server was not ready within {self.timeout:.0f} s: {self.log()[-2000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # uvicorn stops its workers on SIGTERM
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def log(self) -> str:
        self._out.seek(0)
        return self._out.read().decode(errors="replace")
