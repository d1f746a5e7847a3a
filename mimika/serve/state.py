"""One worker process's state, shared by the request handlers and the stream: its settings and its
engine, loaded in a thread at start-up so /healthz answers meanwhile, and the threads recognition
runs in (`settings.threads` at once: it is CPU-bound, so the event loop keeps answering health
checks, uploads and other sockets meanwhile)."""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
from starlette.requests import HTTPConnection

from ..common.errors import MimikaError
from .engine import Engine
from .inputs import RequestError
from .settings import ServeSettings

log = logging.getLogger("mimika.serve")


class WorkerState:
    """One worker's settings, its engine (None until loaded, or with `error` if that failed) and its
    recognition threads."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.engine: Engine | None = None
        self.error: str | None = None
        self.loaded = asyncio.Event()
        self.limiter = anyio.CapacityLimiter(settings.threads)

    def load(self) -> None:
        try:
            engine = Engine(self.settings)
            engine.load_defaults()
            self.engine = engine
        except MimikaError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - reported by /healthz and in the log
            log.exception("loading the model failed")
            self.error = f"{type(e).__name__}: {e}"

    async def ready(self) -> Engine:
        await self.loaded.wait()
        if self.engine is None:
            raise RequestError(503, f"not ready: {self.error}")
        return self.engine

    async def run(self, fn, *args) -> tuple[object, dict]:
        """fn(*args) in a recognition thread; its answer and the time it waited and ran (ms)."""
        queued = time.perf_counter()
        started = []

        def timed():
            started.append(time.perf_counter())
            return fn(*args)

        out = await anyio.to_thread.run_sync(timed, limiter=self.limiter)
        done = time.perf_counter()
        return out, {"wait_ms": round((started[0] - queued) * 1e3, 2),
                     "predict_ms": round((done - started[0]) * 1e3, 2)}


def state_of(connection: HTTPConnection) -> WorkerState:
    """The state of the app that took this request or WebSocket (`create_app` puts it there)."""
    return connection.app.state.mimika
