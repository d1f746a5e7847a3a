"""The server's settings: one dataclass, filled from the command line (`mimika serve ...`) and
handed to every uvicorn worker process through one environment variable (uvicorn starts
workers as fresh processes that import the app by name, so the settings travel as JSON). The
token travels in its own variable, MIMIKA_TOKEN, which is also how users should pass it: a
`--token` on the command line is visible to every local user in `ps`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields

from ..common.devices import cores
from ..common.errors import MimikaError

ENV_SETTINGS = "MIMIKA_SERVE_SETTINGS"
ENV_TOKEN = "MIMIKA_TOKEN"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_MAX_UPLOAD_MB = 20.0
#: the server's pixel limit (50 MP: an 8000 x 6000 phone photo): a request may hold one image in
#: color at full size (the annotated copy), 150 MB at this limit; the library's own default
#: (`mimika.prepare.images.DEFAULT_MAX_PIXELS`, larger) suits one user's files on the command line,
#: not a server's concurrent uploads
DEFAULT_MAX_PIXELS = 50_000_000
#: the memory one decode may take in its decoder process (`decoders`): a 50 MP photo at 8 bits
#: decodes in about 330 MB, its annotated copy included; a 50 MP PNG at 16 bits needs more
DEFAULT_MAX_DECODE_MB = 512.0
DEFAULT_MAX_DECODE_SECONDS = 20.0  # the slowest decode at the pixel limit takes 2-7 s here


@dataclass
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None  # default model: a shipped name or a file path (None: mimika's default)
    detector: str = "default"  # default detector preset
    workers: int = 1  # processes; each loads the model and detector once
    threads: int = 1  # recognitions run at once in one worker (bench/serve.py --threads measures it)
    cpu_threads: int = 0  # threads one recognition may use (ONNX Runtime, OpenCV); 0: cores / (workers x threads)
    token: str | None = field(default=None, repr=False)  # Authorization: Bearer <token> on the API
    cors: list[str] = field(default_factory=list)  # origins allowed to call the API from a browser
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB  # larger bodies get 413 before they are read whole
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images get 400 before they are decoded
    max_decode_mb: float = DEFAULT_MAX_DECODE_MB  # a decode that needs more is refused (400)
    max_decode_seconds: float = DEFAULT_MAX_DECODE_SECONDS  # a decode that takes longer is cancelled (400)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def threads_per_recognition(self) -> int:
        """The cores shared out: workers x threads recognitions at once, none waiting on another's
        thread pool (on 2 cores, 2 workers with 2 threads each had a p99 several times the p50)."""
        return self.cpu_threads or max(1, cores() // (self.workers * self.threads))

    @property
    def local(self) -> bool:
        return self.host in LOCAL_HOSTS or self.host.startswith("127.")

    def check(self) -> "ServeSettings":
        problems = [(1 <= self.port <= 65535, f"port must be 1-65535, got {self.port}"),
                    (self.workers >= 1, f"workers must be at least 1, got {self.workers}"),
                    (self.threads >= 1, f"threads must be at least 1, got {self.threads}"),
                    (self.cpu_threads >= 0, f"cpu threads must be 0 (automatic) or more, got {self.cpu_threads}"),
                    (self.max_upload_mb > 0, f"max upload must be > 0 MB, got {self.max_upload_mb}"),
                    (self.max_pixels >= 1, f"max pixels must be at least 1, got {self.max_pixels}"),
                    (self.max_decode_mb > 0, f"max decode memory must be > 0 MB, got {self.max_decode_mb}"),
                    (self.max_decode_seconds > 0, f"max decode time must be > 0 s, got {self.max_decode_seconds}"),
                    (self.token is None or self.token.strip() != "", "the token must not be empty")]
        for ok, why in problems:
            if not ok:
                raise MimikaError(f"serve: {why}")
        return self

    def to_env(self) -> dict[str, str]:
        """Environment variables that carry these settings to worker processes."""
        env = {ENV_SETTINGS: json.dumps({k: v for k, v in asdict(self).items() if k != "token"})}
        if self.token:
            env[ENV_TOKEN] = self.token
        return env

    @classmethod
    def from_env(cls) -> "ServeSettings":
        """The settings of `mimika serve` in a worker process (defaults when run otherwise)."""
        raw = os.environ.get(ENV_SETTINGS)
        known = {f.name for f in fields(cls)} - {"token"}
        values = {k: v for k, v in (json.loads(raw) if raw else {}).items() if k in known}
        return cls(**values, token=os.environ.get(ENV_TOKEN) or None).check()
