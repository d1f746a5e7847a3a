"""The WebSocket stream of live frames (/v1/stream), beside the request handlers: the same
options, token and errors, one answer per frame in the order they came."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..common.errors import MimikaError
from .engine import Options
from .handlers import status_of, token_ok
from .inputs import OPTION_FIELDS, RequestError, parse_json, parse_options
from .state import WorkerState, state_of

router = APIRouter()
log = logging.getLogger("mimika.serve")


@router.websocket("/v1/stream")
async def stream(ws: WebSocket):
    """Live frames. A text message {"model", "detector", "tta", "prior", "landmarks", "token"} sets options
    and is answered {"options": {...}} (with "error" and "status" when refused); a binary message
    is one encoded image (JPEG, PNG, ...) and is answered, in order, with the object of
    POST /v1/predict, or {"error", "status"}. A client keeps one frame in flight: it sends the
    next after the answer."""
    state = state_of(ws)
    settings = state.settings
    if not _origin_ok(ws.headers, settings.cors):
        await ws.close(code=1008, reason="origin not allowed")
        return
    await ws.accept()
    authed = not settings.token or token_ok(settings.token, ws.headers.get("authorization"))
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
                        authed = token_ok(settings.token, f"Bearer {token}")
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
                image, decode_ms = await state.decode(frame, "frame", engine.keeps_color(options))
                result, timing = await state.run(engine.predict, image, "frame", options)
                timing = {"decode_ms": decode_ms, **timing, "total_ms": round((time.perf_counter() - t0) * 1e3, 2)}
                await ws.send_json({**result, "timing": timing})
            except (RequestError, MimikaError) as e:
                status, why = status_of(e)
                answer = {"error": why, "status": status}
                if text is not None:  # an answer to options, not to a frame: they stay as they were
                    answer["options"] = _options_dict(options)
                await ws.send_json(answer)
    except WebSocketDisconnect:
        return
    except Exception:  # a bug: logged, and the client told so with a close frame (not a dropped socket)
        log.exception("internal error on the stream")
        await ws.close(code=1011, reason="internal error (logged on the server)")


async def _stream_options(state: WorkerState, text: str, current: Options) -> tuple[Options, str | None]:
    doc = parse_json(text, "a text message (a JSON object of options)")
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


def _origin_ok(headers, cors: list[str]) -> bool:
    """Browsers send Origin with WebSockets but apply no CORS to them: a page from another site
    may connect only if --cors allows its origin (programs send no Origin)."""
    origin = headers.get("origin")
    if origin is None or origin in cors or "*" in cors:
        return True
    return urlsplit(origin).netloc.lower() == (headers.get("host") or "").lower()
