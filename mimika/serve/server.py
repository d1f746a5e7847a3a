"""Running the app under uvicorn: worker processes, logging, and the listening socket."""

from __future__ import annotations

import copy
import socket

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from ..common.errors import MimikaError
from .settings import ServeSettings

APP = "mimika.serve.app:create_app_from_env"  # each worker builds its app from the environment


class Config(uvicorn.Config):
    """uvicorn's config, whose listening socket says it is TCP. uvicorn (0.54) binds it with proto
    0, accepted sockets inherit that, and asyncio sets TCP_NODELAY only on sockets that say
    IPPROTO_TCP: with --workers > 1 every keep-alive answer then waited ~40 ms for the client's
    delayed ACK (uvicorn issue #3149; bench/serve.py, 1 client: p50 64 ms before, 19 ms after)."""

    def bind_socket(self) -> socket.socket:
        sock = super().bind_socket()
        if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.proto == 0:
            sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
            sock.set_inheritable(True)
        return sock


def log_config() -> dict:
    """uvicorn's logging with every line on stdout: `mimika.images` points fd 2 at a capture file
    while it decodes, which would swallow what other threads write to stderr meanwhile."""
    config = copy.deepcopy(LOGGING_CONFIG)
    for handler in config["handlers"].values():
        handler["stream"] = "ext://sys.stdout"
    config["loggers"]["mimika"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def run(settings: ServeSettings) -> None:
    """Serve until interrupted (the settings must already be in the environment: `to_env`)."""
    config = Config(APP, factory=True, host=settings.host, port=settings.port, workers=settings.workers,
                    log_config=log_config(), server_header=False, proxy_headers=False,
                    ws_max_size=settings.max_upload_bytes + 64 * 1024, timeout_graceful_shutdown=5)
    if settings.workers > 1:  # what uvicorn.run does, with the socket of Config.bind_socket above
        from uvicorn.supervisors import Multiprocess
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise MimikaError(f"could not serve on {settings.host}:{settings.port} (the log above says why)")
