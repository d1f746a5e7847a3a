"""The request handlers: the page, /healthz, /version and the API (/v1/models, /v1/predict,
/v1/annotate), with the token check, the upload limit and the errors they answer.

- Limits: a body over the upload limit is refused with 413 from its Content-Length, before it is
  read, or as soon as a streamed (chunked) body passes the limit (`BodyLimit`); images over the
  pixel limit are refused from their header, before decoding (`mimika.prepare.images`).
- Every error is JSON {"error": "..."} with a 4xx status naming the problem; anything unexpected
  is logged on the server and answered 500 {"error": "internal error"}, never a traceback.
- The API (/v1/*) asks for `Authorization: Bearer <token>` when a token is set; the page, its
  files, /healthz, /version and the OpenAPI docs do not (they hold no data).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from pathlib import Path

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from .. import __version__
from ..common.errors import MimikaError
from ..recognition.annotate import COLOR as BOX_BGR
from .decoders import BadImage
from .engine import PRIOR_CHOICES, TTA_CHOICES, NotFound
from .inputs import ANNOTATE_FIELDS, OPTION_FIELDS, RequestError, read_request
from .state import state_of

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
               for code, why in [(400, "not an image, a corrupt image, an empty body, a wrong field, too many pixels, "
                                       "a decode over the server's memory or time for one"),
                                 (401, "a token is set and the request does not carry it"),
                                 (404, "unknown model"), (413, "upload over the limit"),
                                 (415, "neither multipart/form-data nor JSON"), (503, "the models are still loading")]}


def authorized(request: Request) -> None:
    """The API's dependency: 401 unless the request carries the token (when one is set)."""
    token = state_of(request).settings.token
    if token and not token_ok(token, request.headers.get("authorization")):
        raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})


router = APIRouter()
_api = [Depends(authorized)]


@router.get("/", include_in_schema=False)
def page():
    """index.html with the colour annotated images draw boxes in, which the page draws the webcam's
    live boxes in."""
    b, g, r = BOX_BGR
    html = (STATIC / "index.html").read_text(encoding="utf-8").replace("{box_color}", f"rgb({r}, {g}, {b})")
    return HTMLResponse(html, headers={"Cache-Control": "no-cache"})


@router.get("/healthz", summary="ready (200) or not (503)")
def healthz(request: Request):
    state = state_of(request)
    if state.engine is not None:
        return {"status": "ready", "model": state.engine.default_model, "detector": state.engine.default_detector}
    status = "failed" if state.error else "loading"
    return JSONResponse({"status": status, **({"error": state.error} if state.error else {})}, status_code=503)


@router.get("/version", summary="mimika's version and the API version")
def version():
    return {"mimika": __version__, "api": API_VERSION}


@router.get("/v1/models", dependencies=_api, summary="the models served, with labels and cards; the detectors")
async def models(request: Request):
    engine = await state_of(request).ready()
    return await anyio.to_thread.run_sync(engine.models)


@router.post("/v1/predict", dependencies=_api, responses=_ERRORS_DOC, openapi_extra=_body_doc(False),
             summary="the faces in one image: box, label and scores each (as `mimika predict --json`), "
                     "plus timing")
async def predict(request: Request):
    t0 = time.perf_counter()
    state = state_of(request)
    upload, options = await read_request(request, state.settings.max_upload_bytes, OPTION_FIELDS)
    engine = await state.ready()
    engine.model_name(options.model)  # 404 before any work
    read_ms = (time.perf_counter() - t0) * 1e3
    image, decode_ms = await state.decode(upload.data, upload.name, engine.keeps_color(options))
    result, timing = await state.run(engine.predict, image, upload.name, options)
    timing = {"read_ms": round(read_ms, 2), "decode_ms": decode_ms, **timing,
              "total_ms": round((time.perf_counter() - t0) * 1e3, 2)}
    return JSONResponse({**result, "timing": timing}, headers=_server_timing(timing))


@router.post("/v1/annotate", dependencies=_api, openapi_extra=_body_doc(True), summary="the image with each "
             "face's box and label drawn (JPEG or PNG)",
             responses={**_ERRORS_DOC, 200: {"content": {"image/jpeg": {}, "image/png": {}},
                                             "description": "the annotated image"}})
async def annotate(request: Request):
    t0 = time.perf_counter()
    state = state_of(request)
    upload, options = await read_request(request, state.settings.max_upload_bytes, ANNOTATE_FIELDS)
    engine = await state.ready()
    engine.model_name(options.model)
    bgr, decode_ms = await state.decode_color(upload.data, upload.name)
    (data, media, n), timing = await state.run(engine.annotate, bgr, upload.name, options)
    timing = {"decode_ms": decode_ms, **timing, "total_ms": round((time.perf_counter() - t0) * 1e3, 2)}
    return Response(data, media_type=media, headers={"X-Mimika-Faces": str(n), **_server_timing(timing)})


def token_ok(token: str, header: str | None) -> bool:
    """Whether an Authorization header carries this bearer token (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _server_timing(timing: dict) -> dict:
    return {"Server-Timing": ", ".join(f"{k.removesuffix('_ms')};dur={v}" for k, v in timing.items())}


def status_of(e: Exception) -> tuple[int, str]:
    """The HTTP status and message of a refused request (the stream answers with them too)."""
    if isinstance(e, RequestError):
        return e.status, e.message
    if isinstance(e, NotFound):
        return 404, str(e)
    return 400, str(e)  # BadImage and every other MimikaError: the request's image or options


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON {"error": ...}: 4xx naming the problem, 500 for the unexpected (logged)."""
    def error(status: int, text: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": text}, status_code=status, headers=headers)

    @app.exception_handler(RequestError)
    @app.exception_handler(MimikaError)
    @app.exception_handler(BadImage)
    @app.exception_handler(NotFound)
    async def _known(request, e):
        status, text = status_of(e)
        # a body refused as it streams in: the connection closes, lingering (`server.HttpProtocol`), unread rest and all
        return error(status, text, {"Connection": "close"} if status == 413 else None)

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
