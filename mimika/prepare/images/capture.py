"""The decoders' noise, captured per decode; and how a failure is said.

Decoders print warnings from C (libjpeg "Corrupt JPEG data", libpng, OpenCV's log) on file
descriptor 2. Each probe and decode runs inside `decoding(name)`, with fd 2 redirected to a
temporary file and Python's warnings caught, under a lock since both belong to the whole process
(what other threads write to fd 2 meanwhile is caught too): the text reaches the terminal only
after `set_verbose(True)`, is kept in `LoadedImage.decoder_messages`, and ends the error message of
a file that fails. Cost per file: the capture 11 us (bench/large_image.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import warnings
from typing import Iterator

from ...common.errors import MimikaError
from .config import settings


class Unreadable(Exception):
    """Why a file cannot be read; the decoders' messages are appended when it is raised."""


class _Log:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def said(self) -> str:
        """' (decoder: ...)' when a decoder said something, for an error message."""
        if not self.messages:
            return ""
        text = "; ".join(dict.fromkeys(self.messages))
        return f" (decoder: {text[:300]}{'...' if len(text) > 300 else ''})"


_lock = threading.Lock()
_capture_file: tuple[int, int] | None = None  # (pid, fd) of an unlinked temporary file


def _after_fork_in_child() -> None:
    """A child forked while another thread decoded must not inherit a held lock or share our
    capture file's offset with its parent."""
    global _lock, _capture_file
    _lock, _capture_file = threading.Lock(), None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
_CV_LOG_PREFIX = re.compile(r"^\[\s*[A-Z]+:\d+@[\d.]+\]\s+(global\s+)?\S+:\d+\s+\S+\s+")


@contextlib.contextmanager
def decoding(name: str) -> Iterator[_Log]:
    """Run a probe and decode with the decoders' C-level stderr and Python warnings caught.
    An Unreadable raised inside becomes a MimikaError naming the file, with what they said."""
    log = _Log()
    raised: Unreadable | None = None
    with _lock, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved, tmp = _redirect_fd2()
        try:
            yield log
        except Unreadable as e:
            raised = e
        finally:
            text = _restore_fd2(saved, tmp)
            lines = [_CV_LOG_PREFIX.sub("", line).strip() for line in text.splitlines()]
            log.messages = [line for line in lines if line] + [f"{w.category.__name__}: {w.message}" for w in caught]
            if settings.verbose:
                with contextlib.suppress(OSError):
                    os.write(2, text.encode(errors="replace"))
                for w in caught:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if raised is not None:
        raise MimikaError(f"{name}: {raised}{log.said()}") from None


def _redirect_fd2() -> tuple[int, int]:
    """Point fd 2 at the capture file; (saved fd 2, capture fd), or (-1, -1) if there is no fd 2."""
    global _capture_file
    try:
        if _capture_file is None or _capture_file[0] != os.getpid():
            with tempfile.TemporaryFile() as f:
                _capture_file = (os.getpid(), os.dup(f.fileno()))
        tmp = _capture_file[1]
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        saved = os.dup(2)
    except OSError:
        return -1, -1
    try:
        os.ftruncate(tmp, 0)
        os.lseek(tmp, 0, os.SEEK_SET)
        os.dup2(tmp, 2)
    except OSError:
        os.close(saved)
        return -1, -1
    return saved, tmp


def _restore_fd2(saved: int, tmp: int) -> str:
    if saved < 0:
        return ""
    os.dup2(saved, 2)
    os.close(saved)
    try:
        n = os.lseek(tmp, 0, os.SEEK_END)
        os.lseek(tmp, 0, os.SEEK_SET)
        return os.read(tmp, min(n, 1 << 16)).decode(errors="replace") if n else ""
    except OSError:
        return ""


def short_text(e: BaseException) -> str:
    """An exception's text on one line, at most 200 characters, for an error message."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:200]
