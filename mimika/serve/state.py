"""One worker process's state, shared by the request handlers and the stream: its settings and its
engine, loaded in a thread at start-up so /healthz answers meanwhile, its decoder processes
(`decoders`: every upload is decoded there, bounded in memory and time), and the threads
recognition runs in (`settings.threads` at once: it is CPU-bound, so the event loop keeps answering
health checks, uploads and other sockets meanwhile). A decode waits on its decoder outside the
recognition threads: a slow one never holds them."""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
from starlette.requests import HTTPConnection

from ..common.errors import MimikaError
from ..prepare.images import LoadedImage
from .decoders import DecodeLimits, DecoderPool
from .engine import Engine
from .inputs import RequestError
from .settings import ServeSettings

log = logging.getLogger("mimika.serve")


class WorkerState:
    """One worker's settings, its engine (None until loaded, or with `error` if that failed), its
    decoders and its recognition threads."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self.engine: Engine | None = None
        self.error: str | None = None
        self.loaded = asyncio.Event()
        self.limiter = anyio.CapacityLimiter(settings.threads)
        self.decoders = DecoderPool(settings.threads + 1, DecodeLimits(
            settings.max_decode_mb, settings.max_decode_seconds, settings.max_pixels, settings.threads_per_recognition))
        self.decode_limiter = anyio.CapacityLimiter(self.decoders.size)

    def load(self) -> None:
        try:
            self.decoders.start()  # they start while the model loads
            engine = Engine(self.settings)
            engine.load_defaults()
            self.decoders.wait_ready()
            self.engine = engine
        except MimikaError as e:
            self.error = str(e)
        except Exception as e:  # noqa: BLE001 - reported by /healthz and in the log
            log.exception("loading the model failed")
            self.error = f"{type(e).__name__}: {e}"

    def close(self) -> None:
        self.decoders.close()

    async def ready(self) -> Engine:
        await self.loaded.wait()
        if self.engine is None:
            raise RequestError(503, f"not ready: {self.error}")
        return self.engine

    async def decode(self, data: bytes, name: str, keep_color: bool) -> tuple[LoadedImage, float]:
        """The upload read for recognition (a colour copy with `keep_color`), and the milliseconds it took."""
        return await self._decoded(self.decoders.load, data, name, keep_color)

    async def decode_color(self, data: bytes, name: str) -> tuple[object, float]:
        """The upload as BGR at full size (to draw on), and the milliseconds it took."""
        return await self._decoded(self.decoders.read_color, data, name)

    async def _decoded(self, fn, *args) -> tuple[object, float]:
        t0 = time.perf_counter()
        out = await anyio.to_thread.run_sync(fn, *args, limiter=self.decode_limiter)
        return out, round((time.perf_counter() - t0) * 1e3, 2)

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
