"""The HTTP layer, wired: FastAPI over `engine.Engine`, nothing more. `create_app` builds one
worker's app from its settings: its state (`state`: the engine, the decoders and the recognition
threads), the middleware (CORS, the upload limit), the request handlers and their errors
(`handlers`), the page's files, and the WebSocket stream of live frames (`stream`).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..prepare import images
from . import handlers, stream
from .settings import ServeSettings
from .state import WorkerState


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The application of one worker process."""
    settings = (settings or ServeSettings()).check()
    state = WorkerState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        saved = images.settings.max_pixels
        images.settings.max_pixels = settings.max_pixels
        loop = asyncio.get_running_loop()
        task = loop.run_in_executor(None, state.load)
        task.add_done_callback(lambda _: state.loaded.set())
        try:
            yield
        finally:
            await asyncio.wait([task], timeout=10)  # a worker stopped while it loads: its decoders started
            state.close()
            images.settings.max_pixels = saved

    app = FastAPI(title="mimika", version=__version__, lifespan=lifespan,
                  description="Facial expression recognition: per face in an image, its box and a probability "
                              "for each emotion. The page at / uses this API. Live frames: the WebSocket "
                              "/v1/stream (not listed below, as OpenAPI has no WebSockets): send a JSON text "
                              "message of options, then one encoded image per binary message, and read one "
                              "answer (the object of POST /v1/predict) per frame before sending the next.")
    app.state.mimika = state  # what the handlers and the stream read (`state.state_of`)
    if settings.cors:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(handlers.BodyLimit, max_bytes=settings.max_upload_bytes)
    handlers.add_error_handlers(app)
    app.include_router(handlers.router)
    app.mount("/static", StaticFiles(directory=handlers.STATIC), name="static")
    app.include_router(stream.router)
    return app


def create_app_from_env() -> FastAPI:
    """The app of a `mimika serve` worker (uvicorn's factory): settings from the environment."""
    import cv2
    _cap_malloc_arenas()
    settings = ServeSettings.from_env()
    cv2.setNumThreads(settings.threads_per_recognition)  # OpenCV's pool (Haar, resizing) is per process
    return create_app(settings)


def _cap_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives threads their own malloc arenas (up to 8 per core), and memory freed in one is
    not reused by another: under 32 clients the server's memory crept up about 2% a minute,
    minute after minute, and stays flat with 2 arenas (bench/serve.py --clients 32,32: memory).
    Other C libraries: nothing to do."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass
