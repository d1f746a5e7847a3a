"""Uploads are decoded in child processes, each bounded in memory and time, so that no upload can
starve the server: a PNG whose data chunk claims 4 GiB made the decoder allocate 4.2 GiB and work
10 s in the worker itself, holding its recognition thread and the process-wide decode lock, and
four at once took 8.8 GB and made a normal request wait 13.8 s (issue #31).

- Memory: each decoder process runs under RLIMIT_DATA, its own footprint after start-up plus
  `--max-decode-mb`, so an allocation past it fails at once in the decoder (one line: 400) and
  nothing else in the server grows (50 MP photos, the pixel limit, decode in about 330 MiB).
- Time: a decode not answered within `--max-decode-seconds` is cancelled: its process is killed and
  replaced, and the request answered 400. A decoder that dies (a crash in a C library) is
  replaced the same way.
- Isolation: the worker receives arrays only, a JSON header (shapes checked against the limits)
  and raw pixels, never a pickle: a decoder compromised by a hostile file cannot run code in the
  worker.

A worker keeps `threads + 1` decoders (`WorkerState`), so one slow upload never holds them all.
The child runs `main` (this module, from the worker's own copy of mimika): it imports only the
image reader.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from multiprocessing import BufferTooShort
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ..common.errors import MimikaError
from ..prepare.images import MAX_SIDE, LoadedImage

START_SECONDS = 120  # a decoder's start-up (importing OpenCV and Pillow on a loaded machine)
_HEADER_BYTES = 1 << 16  # the largest JSON header either side sends
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding this copy of mimika
_CHILD = f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); from mimika.serve.decoders import main; main()"


class BadImage(MimikaError):
    """The uploaded bytes are not an image the server takes (HTTP 400)."""


@dataclass(frozen=True)
class DecodeLimits:
    """What one decode may take, and what the decoders need to know of the server's settings."""

    memory_mb: float  # beyond the decoder process's own footprint
    seconds: float
    max_pixels: int
    threads: int = 1  # OpenCV's threads in the decoder (resizing a large photo)


def named(message: str, name: str) -> str:
    """The reader names in-memory sources "<bytes>" / "<array>": name the upload instead."""
    for anon in ("<bytes>", "<array>"):
        if message.startswith(anon):
            return name + message[len(anon):]
    return message


# --- the worker's side -------------------------------------------------------------------------

class _Decoder:
    """One decoder process and the socket to it."""

    def __init__(self, limits: DecodeLimits):
        ours, theirs = socket.socketpair()
        seconds = max(1, int(limits.seconds))  # a decoder that stops reading cannot block the worker's send
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
        env = {**os.environ, "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(theirs.fileno()), json.dumps(limits.__dict__)],
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env)
        theirs.close()
        self.conn = Connection(ours.detach())
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            if not self.conn.poll(START_SECONDS) or json.loads(self.conn.recv_bytes(_HEADER_BYTES)) != {"ready": True}:
                raise MimikaError(f"a decoder process did not start within {START_SECONDS} s")
            self.ready = True

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        self.proc.wait()
        self.conn.close()

    def ask(self, request: dict, data: bytes, deadline: float, limit: int) -> tuple[dict, list[np.ndarray]]:
        """Send one decode; its reply's header and arrays (each at most `limit` bytes), by `deadline`."""
        self.conn.send_bytes(json.dumps(request).encode())
        self.conn.send_bytes(data)
        reply = json.loads(self._recv(deadline, bytearray(_HEADER_BYTES)))
        arrays = []
        for shape in reply.get("arrays", []):
            if not (isinstance(shape, list) and len(shape) in (2, 3) and shape[2:] in ([], [3])
                    and all(isinstance(n, int) and n > 0 for n in shape) and math.prod(shape) <= limit):
                raise _Broken(f"a decoder answered an array of shape {shape}")
            out = np.empty(shape, np.uint8)
            if self._recv(deadline, memoryview(out).cast("B")) != out.nbytes:
                raise _Broken("a decoder answered fewer bytes than its array holds")
            arrays.append(out)
        return reply, arrays

    def _recv(self, deadline: float, buffer):
        if not self.conn.poll(max(0.0, deadline - time.monotonic())):
            raise _Late()
        n = self.conn.recv_bytes_into(buffer)
        return bytes(buffer[:n]) if isinstance(buffer, bytearray) else n


class _Late(Exception):
    pass


class _Broken(Exception):
    pass


class DecoderPool:
    """`size` decoder processes; `load` and `read_color` block until one has answered (call them
    from threads: `WorkerState.decode`)."""

    def __init__(self, size: int, limits: DecodeLimits):
        self.size, self.limits = size, limits
        self._idle: queue.Queue[_Decoder] = queue.Queue()

    def start(self) -> None:
        """Start the processes (they import the reader meanwhile); `wait_ready` waits for them."""
        for _ in range(self.size):
            self._idle.put(_Decoder(self.limits))

    def wait_ready(self) -> None:
        for d in list(self._idle.queue):
            d.wait_ready()

    def close(self) -> None:
        while not self._idle.empty():
            self._idle.get_nowait().kill()

    def load(self, data: bytes, name: str, keep_color: bool) -> LoadedImage:
        """The upload as `mimika.prepare.images.load_image` reads it (gray, shrunk to MAX_SIDE, and
        a colour copy with `keep_color`)."""
        reply, arrays = self._ask({"op": "load", "keep_color": keep_color}, data, name, 3 * MAX_SIDE * MAX_SIDE)
        gray, color = (arrays + [None, None])[:2]
        try:
            meta = reply["meta"]
            if gray is None or gray.ndim != 2 or len(arrays) > 2 or \
                    (color is not None and color.shape != (*gray.shape, 3)):
                raise ValueError(f"arrays of shapes {[a.shape for a in arrays]}")
            return LoadedImage(gray, float(meta["scale"]), (int(meta["size"][0]), int(meta["size"][1])), name,
                               [str(n) for n in meta["notes"]], [str(m) for m in meta["decoder_messages"]], color)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise RuntimeError(f"decoding {name}: a decoder answered {e}") from None

    def read_color(self, data: bytes, name: str) -> np.ndarray:
        """The upload as 8-bit BGR at full size, upright (`mimika.prepare.images.read_color`)."""
        _, arrays = self._ask({"op": "color"}, data, name, 3 * self.limits.max_pixels)
        if len(arrays) != 1 or arrays[0].ndim != 3:
            raise RuntimeError(f"decoding {name}: a decoder answered arrays of shapes {[a.shape for a in arrays]}")
        return arrays[0]

    def _ask(self, request: dict, data: bytes, name: str, limit: int) -> tuple[dict, list[np.ndarray]]:
        decoder = self._idle.get()
        try:
            if decoder.proc.poll() is not None:  # ended while idle (the OOM killer): not this upload's doing
                decoder = self._replace(decoder)
            try:
                decoder.wait_ready()
                reply, arrays = decoder.ask(request, data, time.monotonic() + self.limits.seconds, limit)
            except _Late:
                decoder = self._replace(decoder)
                raise BadImage(f"{name}: not decoded within {self.limits.seconds:g} s (the server's limit, "
                               "--max-decode-seconds)") from None
            except (_Broken, BufferTooShort, EOFError, OSError, ValueError) as e:  # ValueError: no JSON
                why = _why(e, decoder)
                decoder = self._replace(decoder)
                raise BadImage(f"{name}: the decoder failed on this file ({why})") from None
        finally:
            self._idle.put(decoder)
        if "error" in reply:
            if reply.get("kind") == "internal":
                raise RuntimeError(f"decoding {name}: {reply['error']}")
            raise BadImage(named(str(reply["error"]), name))
        return reply, arrays

    def _replace(self, decoder: _Decoder) -> _Decoder:
        decoder.kill()
        fresh = _Decoder(self.limits)
        fresh.wait_ready()
        return fresh


def _why(e: Exception, decoder: _Decoder) -> str:
    try:
        code = decoder.proc.wait(1)
    except subprocess.TimeoutExpired:
        code = None
    if code is not None and code < 0:
        return f"its process ended with signal {signal.Signals(-code).name}"
    return str(e) or type(e).__name__


# --- the decoder's side ------------------------------------------------------------------------

def _serve(fd: int, limits: DecodeLimits) -> None:
    """Answer decodes until the worker closes the socket."""
    import cv2

    from ..prepare import images
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which then closes the socket
    cv2.setNumThreads(limits.threads)
    images.settings.max_pixels = limits.max_pixels
    for fmt in (".jpg", ".png"):  # load what a first decode loads lazily, before the limit
        images.load_image(cv2.imencode(fmt, np.zeros((8, 8, 3), np.uint8))[1].tobytes(), keep_color=True)
    _limit_memory(limits.memory_mb)
    conn = Connection(fd)
    conn.send_bytes(json.dumps({"ready": True}).encode())
    while True:
        try:
            request = json.loads(conn.recv_bytes(_HEADER_BYTES))
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        arrays = []
        try:
            if request["op"] == "load":
                img = images.load_image(data, keep_color=bool(request["keep_color"]))
                arrays = [img.gray] + ([img.color] if img.color is not None else [])
                meta = {"scale": img.scale, "size": list(img.size), "notes": img.notes,
                        "decoder_messages": img.decoder_messages}
            else:
                arrays, meta = [images.read_color(data)], {}
            reply = {"meta": meta, "arrays": [list(a.shape) for a in arrays]}
        except MimikaError as e:
            arrays, reply = [], {"error": _with_limit(str(e), limits)}
        except MemoryError:
            arrays, reply = [], {"error": f"<bytes>: needs more memory to decode than the server allows "
                                          f"({limits.memory_mb:g} MB, --max-decode-mb)"}
        except Exception as e:  # noqa: BLE001 - a bug in mimika's reader: the worker logs it (500)
            arrays, reply = [], {"error": f"{type(e).__name__}: {e}", "kind": "internal"}
        del data
        conn.send_bytes(json.dumps(reply).encode())
        for a in arrays:
            conn.send_bytes(memoryview(np.ascontiguousarray(a, np.uint8)).cast("B"))
        del arrays
        _trim()


def _with_limit(message: str, limits: DecodeLimits) -> str:
    """A decoder's failed allocation (within the limit below) says which limit it met."""
    if "allocate" in message.lower() or "memory" in message.lower():
        return f"{message} (the server's memory for one decode: {limits.memory_mb:g} MB, --max-decode-mb)"
    return message


def _limit_memory(memory_mb: float) -> None:
    """RLIMIT_DATA (private writable memory: the heap and anonymous maps) at what this process holds
    now plus `memory_mb`. Not Linux: no limit (the time limit still holds)."""
    try:
        import resource
        with open("/proc/self/status") as f:
            held = next(int(line.split()[1]) for line in f if line.startswith("VmData:")) * 1024
    except (ImportError, OSError, StopIteration, ValueError):
        return
    limit = held + int(memory_mb * 1_000_000)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _trim() -> None:
    """Give freed memory back, so the next decode has the whole budget (glibc keeps it otherwise)."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def main() -> None:
    """A decoder process (`_Decoder` starts it): argv holds its socket's fd and its limits."""
    _serve(int(sys.argv[1]), DecodeLimits(**json.loads(sys.argv[2])))
