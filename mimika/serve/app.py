"""The HTTP layer: FastAPI routes over `engine.Engine`, nothing more.

- Recognition is CPU-bound: it runs in worker threads (`settings.threads` at once per process,
  more processes with --workers), so the event loop keeps answering health checks, uploads and
  other sockets meanwhile.
- Limits: a body over the upload limit is refused with 413 from its Content-Length, before it is
  read, or as soon as a streamed (chunked) body passes the limit; images over the pixel limit
  are refused from their header, before decoding (`mimika.images`).
- Every error is JSON {"error": "..."} with a 4xx status naming the problem; anything unexpected
  is logged on the server and answered 500 {"error": "internal error"}, never a traceback.
- The API (/v1/*) asks for `Authorization: Bearer <token>` when a token is set; the page, its
  files, /healthz, /version and the OpenAPI docs do not (they hold no data).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import anyio
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from .. import __version__
from ..common.errors import MimikaError
from ..prepare import images
from .engine import PRIOR_CHOICES, TTA_CHOICES, BadImage, Engine, NotFound, Options
from .inputs import ANNOTATE_FIELDS, OPTION_FIELDS, RequestError, parse_options, read_request
from .settings import ServeSettings

STATIC = Path(__file__).resolve().parent / "static"
API_VERSION = "v1"
log = logging.getLogger("mimika.serve")

_IMAGE_DOC = {"type": "string", "format": "binary", "description": "the image file (JPEG, PNG, WebP, TIFF, ...)"}
_OPTIONS_DOC = {
    "model": {"type": "string", "description": "a served model's name (GET /v1/models); default: the server's"},
    "detector": {"type": "string", "description": "face detector preset (GET /v1/models); default: the server's"},
    "tta": {"type": "string", "enum": list(TTA_CHOICES), "description": "test-time augmentation"},
    "prior": {"type": "string", "enum": list(PRIOR_CHOICES), "description": "how common the answers "
              "assume each emotion is: as in training, or all equally (posed faces, other cameras)"},
    "landmarks": {"type": "boolean", "description": "keep each face's landmarks, where the detector finds them"},
}


def _body_doc(annotate: bool) -> dict:
    props = dict(_OPTIONS_DOC)
    if annotate:
        props["format"] = {"type": "string", "enum": ["jpeg", "png"], "description": "the answer's format"}
    json_image = {"type": "string", "description": "the image as base64, or a data URI (data:image/jpeg;base64,...)"}
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"],
                                           "properties": {"image": _IMAGE_DOC, **props}}},
        "application/json": {"schema": {"type": "object", "required": ["image"],
                                        "properties": {"image": json_image, **props}}}}}}


_ERRORS_DOC = {code: {"description": why, "content": {"application/json": {"example": {"error": "..."}}}}
               for code, why in [(400, "not an image, a corrupt image, an empty body, a wrong field, too many pixels"),
                                 (401, "a token is set and the request does not carry it"),
                                 (404, "unknown model"), (413, "upload over the limit"),
                                 (415, "neither multipart/form-data nor JSON"), (503, "the models are still loading")]}


class _State:
    """One worker's engine, loaded in a thread at start-up so /healthz answers meanwhile."""

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
        return out, {"wait_ms": round((started[0] - queued) * 1e3, 2), "predict_ms": round((done - started[0]) * 1e3, 2)}


def create_app(settings: ServeSettings | None = None) -> FastAPI:
    """The application of one worker process."""
    settings = (settings or ServeSettings()).check()
    state = _State(settings)

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
            images.settings.max_pixels = saved

    app = FastAPI(title="mimika", version=__version__, lifespan=lifespan,
                  description="Facial expression recognition: per face in an image, its box and a probability "
                              "for each emotion. The page at / uses this API. Live frames: the WebSocket "
                              "/v1/stream (not listed below, as OpenAPI has no WebSockets): send a JSON text "
                              "message of options, then one encoded image per binary message, and read one "
                              "answer (the object of POST /v1/predict) per frame before sending the next.")
    app.state.mimika = state
    if settings.cors:
        from fastapi.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes)
    _error_handlers(app)

    def authorized(request: Request) -> None:
        if settings.token and not _token_ok(settings.token, request.headers.get("authorization")):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})

    api = [Depends(authorized)]

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", summary="ready (200) or not (503)")
    def healthz():
        if state.engine is not None:
            return {"status": "ready", "model": state.engine.default_model, "detector": state.engine.default_detector}
        status = "failed" if state.error else "loading"
        return JSONResponse({"status": status, **({"error": state.error} if state.error else {})}, status_code=503)

    @app.get("/version", summary="mimika's version and the API version")
    def version():
        return {"mimika": __version__, "api": API_VERSION}

    @app.get("/v1/models", dependencies=api, summary="the models served, with labels and cards; the detectors")
    async def models():
        engine = await state.ready()
        return await anyio.to_thread.run_sync(engine.models)

    @app.post("/v1/predict", dependencies=api, responses=_ERRORS_DOC, openapi_extra=_body_doc(False),
              summary="the faces in one image: box, label and scores each (as `mimika predict --json`), "
                      "plus timing")
    async def predict(request: Request):
        t0 = time.perf_counter()
        upload, options = await read_request(request, settings.max_upload_bytes, OPTION_FIELDS)
        engine = await state.ready()
        engine.model_name(options.model)  # 404 before any work
        read_ms = (time.perf_counter() - t0) * 1e3
        result, timing = await state.run(engine.predict, upload.data, upload.name, options)
        timing = {"read_ms": round(read_ms, 2), **timing, "total_ms": round((time.perf_counter() - t0) * 1e3, 2)}
        return JSONResponse({**result, "timing": timing}, headers=_server_timing(timing))

    @app.post("/v1/annotate", dependencies=api, openapi_extra=_body_doc(True), summary="the image with each "
              "face's box and label drawn (JPEG or PNG)",
              responses={**_ERRORS_DOC, 200: {"content": {"image/jpeg": {}, "image/png": {}},
                                              "description": "the annotated image"}})
    async def annotate(request: Request):
        t0 = time.perf_counter()
        upload, options = await read_request(request, settings.max_upload_bytes, ANNOTATE_FIELDS)
        engine = await state.ready()
        engine.model_name(options.model)
        (data, media, n), timing = await state.run(engine.annotate, upload.data, upload.name, options)
        timing["total_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
        return Response(data, media_type=media, headers={"X-Mimika-Faces": str(n), **_server_timing(timing)})

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        """Live frames. A text message {"model", "detector", "tta", "prior", "landmarks", "token"} sets options
        and is answered {"options": {...}} (with "error" and "status" when refused); a binary message
        is one encoded image (JPEG, PNG, ...) and is answered, in order, with the object of
        POST /v1/predict, or {"error", "status"}. A client keeps one frame in flight: it sends the
        next after the answer."""
        if not _origin_ok(ws.headers, settings.cors):
            await ws.close(code=1008, reason="origin not allowed")
            return
        await ws.accept()
        authed = not settings.token or _token_ok(settings.token, ws.headers.get("authorization"))
        options = Options()
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                try:
                    if text is not None:
                        options, token = await _stream_options(state, text, options)
                        if token is not None and settings.token:
                            authed = _token_ok(settings.token, f"Bearer {token}")
                            if not authed:
                                await ws.close(code=1008, reason="wrong token")
                                return
                        await ws.send_json({"options": _options_dict(options)})
                        continue
                    if not authed:
                        await ws.close(code=1008, reason="token required: send {\"token\": ...} first")
                        return
                    frame = message.get("bytes") or b""
                    if len(frame) > settings.max_upload_bytes:
                        raise RequestError(413, f"frame too large: over {settings.max_upload_bytes:,} bytes")
                    if not frame:
                        raise RequestError(400, "empty frame")
                    t0 = time.perf_counter()
                    engine = await state.ready()
                    engine.model_name(options.model)
                    result, timing = await state.run(engine.predict, frame, "frame", options)
                    timing["total_ms"] = round((time.perf_counter() - t0) * 1e3, 2)
                    await ws.send_json({**result, "timing": timing})
                except (RequestError, MimikaError) as e:
                    status, why = _status_of(e)
                    answer = {"error": why, "status": status}
                    if text is not None:  # an answer to options, not to a frame: they stay as they were
                        answer["options"] = _options_dict(options)
                    await ws.send_json(answer)
        except WebSocketDisconnect:
            return

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


async def _stream_options(state: _State, text: str, current: Options) -> tuple[Options, str | None]:
    try:
        doc = json.loads(text)
    except ValueError:
        raise RequestError(400, "a text message must be a JSON object of options") from None
    if not isinstance(doc, dict):
        raise RequestError(400, "a text message must be a JSON object of options")
    token = doc.pop("token", None)
    unknown = [k for k in doc if k not in OPTION_FIELDS]
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r} (fields: token, {', '.join(OPTION_FIELDS)})")
    options = parse_options({**_options_dict(current), **doc})
    engine = await state.ready()
    engine.model_name(options.model)
    if options.detector is not None:
        await anyio.to_thread.run_sync(engine.detector, options.detector)
    return options, None if token is None else str(token)


def _options_dict(o: Options) -> dict:
    return {"model": o.model, "detector": o.detector, "tta": o.tta, "prior": o.prior, "landmarks": o.landmarks}


def _token_ok(token: str, header: str | None) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _origin_ok(headers, cors: list[str]) -> bool:
    """Browsers send Origin with WebSockets but apply no CORS to them: a page from another site
    may connect only if --cors allows its origin (programs send no Origin)."""
    origin = headers.get("origin")
    if origin is None or origin in cors or "*" in cors:
        return True
    return urlsplit(origin).netloc.lower() == (headers.get("host") or "").lower()


def _server_timing(timing: dict) -> dict:
    return {"Server-Timing": ", ".join(f"{k.removesuffix('_ms')};dur={v}" for k, v in timing.items())}


def _status_of(e: Exception) -> tuple[int, str]:
    if isinstance(e, RequestError):
        return e.status, e.message
    if isinstance(e, NotFound):
        return 404, str(e)
    return 400, str(e)  # BadImage and every other MimikaError: the request's image or options


def _error_handlers(app: FastAPI) -> None:
    def error(status: int, text: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": text}, status_code=status, headers=headers)

    @app.exception_handler(RequestError)
    @app.exception_handler(MimikaError)
    @app.exception_handler(BadImage)
    @app.exception_handler(NotFound)
    async def _known(request, e):
        return error(*_status_of(e))

    @app.exception_handler(HTTPException)
    async def _http(request, e: HTTPException):
        text = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        if e.status_code == 404 and text == "Not Found":
            text = f"no such page or endpoint: {request.url.path}"
        elif e.status_code == 405:
            text = f"{request.method} is not allowed on {request.url.path}"
        return error(e.status_code, text, getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(400, f"{where or 'request'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _unexpected(request, e: Exception):
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=e)
        return error(500, "internal error (logged on the server)")


class BodyLimit:
    """ASGI middleware: 413 for a request body over the upload limit, before it is read whole.

    A JSON body carries the image as base64 (4/3 of its size); every body may carry 64 KiB of
    options and multipart framing beside the image."""

    SLACK = 64 * 1024

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        json_body = "json" in headers.get("content-type", "")
        limit = (-(-self.max_bytes // 3) * 4 if json_body else self.max_bytes) + self.SLACK
        message = f"upload too large: over {self.max_bytes:,} bytes (the server's limit, --max-upload-mb)"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            response = JSONResponse({"error": message}, status_code=413, headers={"Connection": "close"})
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise RequestError(413, message)
            return msg

        return await self.app(scope, limited, send)
