"""Atomic file writes: everything mimika writes appears whole or not at all, so an interrupted
job never leaves a half-written model, checkpoint, report or image behind.

A temporary file is written beside the target and renamed over it. Its name carries the writing
process's id, so the next write of the same target removes the leftovers of a killed process
(and only those). A full disk, a quota or a read-only place ends in one MimikaError naming the
file, the previous version left intact.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import MimikaError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(path: Path) -> str:
    return f".{path.stem}.tmp-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed processes left beside `path`; returns them."""
    path = Path(path)
    removed = []
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(_temp_prefix(path) + "*"):
            pid = tmp.name[len(_temp_prefix(path)):].split(".", 1)[0]
            if pid.isdigit() and tmp.name.endswith(path.suffix) and not _alive(int(pid)):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


def write_error(path: Path, e: OSError) -> MimikaError:
    """One line for a failed write, saying whether the previous version survives."""
    why = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
           errno.EFBIG: "the file is too large for this place", errno.EROFS: "the place is read-only",
           errno.EACCES: "permission denied", errno.EPERM: "permission denied"}.get(e.errno, e.strerror or str(e))
    kept = f"; the previous {path.name} is intact" if path.exists() else ""
    return MimikaError(f"{path}: cannot write ({why}){kept}")


class PendingFile:
    """A temporary file beside `path` (same suffix) for an output written over time (a video, frame
    by frame): `commit` puts it in place once it is whole, `discard` removes it, so an output that
    was never finished never appears as if it were."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.path)
            fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(self.path)}{os.getpid()}.", suffix=self.path.suffix,
                                       dir=self.path.parent)
            os.close(fd)
        except OSError as e:
            raise write_error(self.path, e) from None
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        try:
            os.chmod(self.tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
            os.replace(self.tmp, self.path)
        except OSError as e:
            raise write_error(self.path, e) from None
        finally:
            self.discard()
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside `path` (same suffix) for a writer that takes a file name; renamed
    to `path` when the block ends without error, removed otherwise."""
    pending = PendingFile(path)
    try:
        yield pending.tmp
    except BaseException as e:
        pending.discard()
        if isinstance(e, OSError):
            raise write_error(pending.path, e) from None
        raise
    pending.commit()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail now, with one line, if `path` cannot be written later (an unwritable folder, a folder
    in its place, a file where its folder should be), so a long job does not end in that error."""
    path = Path(path)
    if path.is_dir():
        raise MimikaError(f"{path}: is a folder; the {what} needs a file name")
    parent = path.parent
    for p in [parent, *parent.parents]:
        if p.exists():
            if not p.is_dir():
                raise MimikaError(f"{path}: cannot write the {what} ({p} is a file, not a folder)")
            if not os.access(p, os.W_OK | os.X_OK):
                raise MimikaError(f"{path}: cannot write the {what} (no permission to write in {p})")
            break
    return path


def check_writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Like `check_writable`, for a folder that will hold outputs."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MimikaError(f"{path}: is a file; the {what} must be a folder")
    return check_writable(path / "x", what).parent
