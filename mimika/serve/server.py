"""Running the app under uvicorn: worker processes, logging, the listening socket, and the HTTP
protocol, uvicorn's (h11) with two changes so that every client reads a refusal whole and in
JSON, as the application's own errors are:

- A request that h11 cannot parse is answered `{"error": ...}`, 431 for headers over
  `MAX_HEADER_BYTES` (h11's own hint), 400 otherwise; uvicorn answers a plain-text 400 for both.
- Lingering close (as nginx does): a connection closed while its client is still sending (a body
  refused by its size, headers over the bound) first sends its answer and a FIN, then reads and
  discards what comes, for at most `LINGER_SECONDS` (`LINGER_IDLE_SECONDS` without data) and
  `Config.linger_bytes`, before closing. Closing with unread data makes the kernel send a reset,
  and a client that sends its whole body before reading (Python's urllib, most clients without
  `Expect: 100-continue`) then sees "connection reset" instead of the 413.
"""

from __future__ import annotations

import asyncio
import copy
import http
import json
import logging
import socket

import h11
import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..common.errors import MimikaError
from .settings import ServeSettings

APP = "mimika.serve.app:create_app_from_env"  # each worker builds its app from the environment
log = logging.getLogger("uvicorn.error")

MAX_HEADER_BYTES = 64 * 1024  # the request line and headers; nginx's default buffers hold 32 KiB
LINGER_SECONDS = 10.0
LINGER_IDLE_SECONDS = 2.0


class _Connection(h11.Connection):
    """h11's connection, keeping the protocol error it raised (uvicorn drops it)."""

    error: h11.RemoteProtocolError | None = None

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as e:
            self.error = e
            raise


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: `close` lingers while the client is still
    sending a request (`HttpProtocol.sending`); everything else is the transport's."""

    def __init__(self, transport: asyncio.Transport, protocol: "HttpProtocol"):
        self._transport, self._protocol = transport, protocol
        self.lingering = False

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing() or not self._protocol.sending() \
                or not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()  # the answer, then a FIN: the client reads it whole
        self._transport.resume_reading()
        self._protocol.linger_started()


class HttpProtocol(H11Protocol):
    """uvicorn's h11 protocol, answering unparsable requests in JSON and closing by lingering."""

    def __init__(self, config, server_state, app_state, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        self.max_header_bytes = config.h11_max_incomplete_event_size or MAX_HEADER_BYTES
        self.conn = _Connection(h11.SERVER, self.max_header_bytes)
        self.linger_bytes = getattr(config, "linger_bytes", 64 << 20)
        self._upgraded = False
        self._discarded = 0
        self._linger_timers: list[asyncio.TimerHandle] = []

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(_LingeringTransport(transport, self))

    def handle_websocket_upgrade(self, event) -> None:
        self._upgraded = True
        super().handle_websocket_upgrade(event)

    def sending(self) -> bool:
        """Whether the client may still be sending this request (a body, or headers h11 refused)."""
        return not self._upgraded and self.conn.their_state in (h11.SEND_BODY, h11.ERROR)

    def linger_started(self) -> None:
        loop = asyncio.get_running_loop()
        self._linger_timers = [loop.call_later(LINGER_SECONDS, self._end_linger), None]
        self._linger_idle()

    def _linger_idle(self) -> None:
        if self._linger_timers[1] is not None:
            self._linger_timers[1].cancel()
        self._linger_timers[1] = asyncio.get_running_loop().call_later(LINGER_IDLE_SECONDS, self._end_linger)

    def _end_linger(self) -> None:
        for timer in self._linger_timers:
            if timer is not None:
                timer.cancel()
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.transport.lingering:
            self._discarded += len(data)
            if self._discarded > self.linger_bytes:
                self._end_linger()
            else:
                self._linger_idle()
            return
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._linger_timers:
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 could not parse, in JSON: 431 for headers too large."""
        error = self.conn.error
        status = getattr(error, "error_status_hint", 400)
        if status == 431:
            text = f"request headers too large: over {self.max_header_bytes:,} bytes"
        else:
            text = f"malformed HTTP request: {error or msg}"
        body = json.dumps({"error": text}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        try:
            output = self.conn.send(h11.Response(status_code=status, headers=headers,
                                                 reason=http.HTTPStatus(status).phrase.encode()))
            output += self.conn.send(h11.Data(data=body)) + self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:  # h11 can no longer answer on this connection
            output = b""
        if output:
            self.transport.write(output)
        self.transport.close()


class Config(uvicorn.Config):
    """uvicorn's config with mimika's HTTP protocol (`HttpProtocol`: JSON for unparsable requests,
    headers bounded, lingering close, reading at most `linger_bytes` after a refusal) and its own listening
    socket: bound here, so a port in use is one line (a MimikaError), and said to be TCP, so that
    asyncio sets TCP_NODELAY on accepted sockets (uvicorn 0.54 bound it with proto 0, and with
    --workers > 1 every keep-alive answer then waited ~40 ms for the client's delayed ACK: uvicorn
    issue #3149; bench/serve.py, 1 client: p50 64 ms before, 19 ms after)."""

    def __init__(self, *args, linger_bytes: int = 64 << 20, **kwargs):
        super().__init__(*args, http=HttpProtocol, h11_max_incomplete_event_size=MAX_HEADER_BYTES, **kwargs)
        self.linger_bytes = linger_bytes

    def bind_socket(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as e:
            sock.close()
            raise MimikaError(f"cannot listen on {self.host}:{self.port}: {e.strerror or e}") from None
        sock.set_inheritable(True)
        host = f"[{self.host}]" if family == socket.AF_INET6 else self.host
        log.info("mimika serving on http://%s:%d (press Ctrl-C to quit)", host, sock.getsockname()[1])
        return sock


class ClientFaults(logging.Filter):
    """What a client did wrong, logged by uvicorn with a traceback, as one line: a WebSocket text
    message that is no UTF-8 (uvicorn closes it with 1007 and logs the UnicodeDecodeError)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], UnicodeDecodeError):
            record.msg, record.args = f"{record.getMessage()} ({record.exc_info[1].reason}): closed (1007)", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def log_config() -> dict:
    """uvicorn's logging with every line on stdout: `mimika.images` points fd 2 at a capture file
    while it decodes, which would swallow what other threads write to stderr meanwhile; the
    tracebacks of client faults as one line (`ClientFaults`)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["client_faults"] = {"()": f"{__name__}.ClientFaults"}
    for handler in config["handlers"].values():
        handler["stream"] = "ext://sys.stdout"
        handler.setdefault("filters", []).append("client_faults")
    config["loggers"]["mimika"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def run(settings: ServeSettings) -> None:
    """Serve until interrupted (the settings must already be in the environment: `to_env`)."""
    config = Config(APP, factory=True, host=settings.host, port=settings.port, workers=settings.workers,
                    log_config=log_config(), server_header=False, proxy_headers=False,
                    ws_max_size=settings.max_upload_bytes + 64 * 1024, timeout_graceful_shutdown=5,
                    linger_bytes=max(64 << 20, 4 * settings.max_upload_bytes))
    sock = config.bind_socket()  # a port in use: one line, before any worker starts
    if settings.workers > 1:  # what uvicorn.run does, with this socket
        from uvicorn.supervisors import Multiprocess
        Multiprocess(config, sockets=[sock]).run()
        return
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if not server.started:
        raise MimikaError(f"could not serve on {settings.host}:{settings.port} (the log above says why)")
