"""What a request brings: one image (a multipart file, or base64 / a data URI in JSON, or a
WebSocket frame) and the options, checked field by field. Every problem is a `RequestError`
with the HTTP status and one line naming the field; the server never reads a path or URL sent
by a client, only the bytes uploaded."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re

from starlette.datastructures import UploadFile
from starlette.requests import Request

from ..common.choices import PRIOR_CHOICES, TTA_CHOICES
from .engine import FORMATS, Options

IMAGE_FIELD = "image"
OPTION_FIELDS = ("model", "detector", "tta", "prior", "landmarks")
ANNOTATE_FIELDS = OPTION_FIELDS + ("format",)
_DATA_URI = re.compile(r"data:([\w.+/-]*)(;[\w=.+-]*)*?;base64,", re.ASCII)
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class RequestError(Exception):
    """A bad request: answered with `status` and {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class Upload:
    """One uploaded image: its bytes and the name its answer carries (`file`)."""

    def __init__(self, data: bytes, name: str):
        self.data, self.name = data, name


async def read_request(request: Request, max_bytes: int, fields: tuple[str, ...]) -> tuple[Upload, Options]:
    """The image and options of a POST: multipart/form-data or application/json."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):  # the latter: to say what is missing
        return await _read_form(request, max_bytes, fields)
    if ctype == "application/json" or ctype.endswith("+json"):
        body = await request.body()
        if not body:
            raise RequestError(400, "empty body: send an image (multipart field 'image', or JSON {\"image\": base64})")
        doc = parse_json(body, "the body")
        if not isinstance(doc, dict):
            raise RequestError(400, "the JSON body must be an object: {\"image\": \"<base64 or data URI>\", ...}")
        _only(doc, fields)
        if IMAGE_FIELD not in doc:
            raise RequestError(400, "missing field 'image' (base64 or a data URI)")
        if not isinstance(doc[IMAGE_FIELD], str):
            raise RequestError(400, "field 'image' must be a string: base64 or a data URI")
        data = decode_base64(doc[IMAGE_FIELD], max_bytes)
        return Upload(data, "upload"), parse_options({k: v for k, v in doc.items() if k != IMAGE_FIELD})
    if not ctype:
        raise RequestError(400, "empty body or no Content-Type: send multipart/form-data with a file field "
                                "'image', or application/json {\"image\": base64}")
    raise RequestError(415, f"unsupported Content-Type {ctype!r}: send multipart/form-data with a file field "
                            "'image', or application/json {\"image\": base64}")


async def _read_form(request: Request, max_bytes: int, fields: tuple[str, ...]) -> tuple[Upload, Options]:
    most = len(fields) + 1  # each field once, as a file or a value: what is wrong is said below, by name
    try:
        form = await request.form(max_files=most, max_fields=most, max_part_size=1024)
    except RequestError:  # the body limit (app.py), raised while the body streams in
        raise
    except Exception as e:  # python-multipart and Starlette raise several types for malformed bodies
        message = getattr(e, "detail", None) or str(e) or type(e).__name__
        if "Too many" in message:
            raise RequestError(400, f"too many fields: each of {', '.join((IMAGE_FIELD,) + fields)} at most once, "
                                    "and only 'image' a file") from None
        raise RequestError(400, f"multipart body refused ({message})") from None
    try:
        items = list(form.multi_items())
        names = [k for k, _ in items]
        _only(dict.fromkeys(names), fields)
        dup = sorted({k for k in names if names.count(k) > 1})
        if dup:
            raise RequestError(400, f"field {dup[0]!r} given more than once")
        values = dict(items)
        files = [k for k, v in values.items() if k != IMAGE_FIELD and isinstance(v, UploadFile)]
        if files:
            raise RequestError(400, f"field {files[0]!r} must be a value, not a file (only 'image' is a file: "
                                    f"curl -F image=@photo.jpg -F {files[0]}=...)")
        if IMAGE_FIELD not in values:
            raise RequestError(400, "missing field 'image': upload the image as a file (curl -F image=@photo.jpg)")
        part = values.pop(IMAGE_FIELD)
        if not isinstance(part, UploadFile):
            raise RequestError(400, "field 'image' must be a file upload (curl -F image=@photo.jpg)")
        data = await part.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise RequestError(413, f"image too large: over {max_bytes:,} bytes (the server's upload limit)")
        if not data:
            raise RequestError(400, "field 'image' is empty")
        return Upload(data, _upload_name(part.filename)), parse_options(values)
    finally:
        await form.close()


def parse_json(text: str | bytes, what: str):
    """A JSON document a client sent; anything else (malformed, not UTF-8, nested deeper than
    Python's parser recurses: RecursionError) is one RequestError (400) saying so."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(400, f"{what} is not valid JSON ({e})") from None
    except RecursionError:
        raise RequestError(400, f"{what} is not valid JSON for this server: nested too deeply") from None


def decode_base64(text: str, max_bytes: int) -> bytes:
    """A base64 string or data URI as bytes (at most max_bytes)."""
    m = _DATA_URI.match(text)
    payload = text[m.end():] if m else text
    payload = "".join(payload.split())  # line-wrapped base64 is still base64
    if not payload:
        raise RequestError(400, "field 'image' is empty")
    if len(payload) // 4 * 3 > max_bytes + 2:
        raise RequestError(413, f"image too large: over {max_bytes:,} bytes (the server's upload limit)")
    padded = payload + "=" * (-len(payload) % 4)
    try:  # standard or URL-safe alphabet, nothing else
        data = base64.b64decode(padded, altchars=b"-_" if re.search(r"[-_]", payload) else None, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "field 'image' is not base64 or a base64 data URI") from None
    if len(data) > max_bytes:
        raise RequestError(413, f"image too large: over {max_bytes:,} bytes (the server's upload limit)")
    if not data:
        raise RequestError(400, "field 'image' is empty")
    return data


def parse_options(values: dict) -> Options:
    """Options from form fields (strings) or JSON (strings and booleans), each checked."""
    kw = {}
    for key in ("model", "detector"):
        if key in values and values[key] not in (None, ""):
            if not isinstance(values[key], str):
                raise RequestError(400, f"field {key!r} must be a name (a string)")
            kw[key] = values[key]
    for key, choices in (("tta", TTA_CHOICES), ("prior", PRIOR_CHOICES)):
        if values.get(key) not in (None, ""):
            if values[key] not in choices:
                raise RequestError(400, f"field {key!r} must be one of {', '.join(choices)}, got {values[key]!r}")
            kw[key] = values[key]
    if values.get("landmarks") not in (None, ""):
        kw["landmarks"] = _boolean("landmarks", values["landmarks"])
    if values.get("format") not in (None, ""):
        fmt = str(values["format"]).lower()
        fmt = "jpeg" if fmt == "jpg" else fmt
        if fmt not in FORMATS:
            raise RequestError(400, f"field 'format' must be one of {', '.join(FORMATS)}, got {values['format']!r}")
        kw["format"] = fmt
    return Options(**kw)


def _boolean(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise RequestError(400, f"field {key!r} must be true or false, got {value!r}")


def _only(doc: dict, allowed: tuple[str, ...]) -> None:
    unknown = [k for k in doc if k != IMAGE_FIELD and k not in allowed]
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0]!r} (fields: {', '.join((IMAGE_FIELD,) + allowed)})")


def _upload_name(filename: str | None) -> str:
    """The uploaded file's own name, for the answer's `file` (never used as a path)."""
    name = os.path.basename((filename or "").replace("\\", "/")).strip()
    return "".join(ch for ch in name if ch.isprintable())[:255] or "upload"
