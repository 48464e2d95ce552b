"""The ``<file>.part`` a download writes into, with the sha256 of its bytes kept in step.

Bytes only ever reach the user's models folder through this file and a final
rename, so a failed or interrupted download leaves at most a .part (which the
next pull resumes), never a half-written model.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import shutil
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

from .byte_sizes import format_bytes
from .pull_errors import PullError

__all__ = ["CHUNK", "Dropped", "PartFile", "check_space"]

CHUNK = 1 << 20


class Dropped(Exception):
    """The connection failed while the body was being read (the bytes so far are kept)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause) or cause.__class__.__name__)
        self.cause = str(cause) or cause.__class__.__name__


class _Body(Protocol):
    def read1(self, n: int) -> bytes: ...


def _hash_prefix(path: Path, upto: int) -> "hashlib._Hash":
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = upto
        while left > 0:
            b = f.read(min(CHUNK, left))
            if not b:
                break
            h.update(b)
            left -= len(b)
    return h


class PartFile:
    """The .part of one download: its size, its running sha256, and appending a response body to it."""

    def __init__(self, path: Path, *, fresh: bool = False, max_size: int | None = None) -> None:
        """Open an existing .part to resume (unless `fresh`, or it is larger than `max_size`)."""
        self.path = path
        if fresh or (max_size is not None and self._disk_size() > max_size):
            self.remove()
        self.size = self._disk_size()
        self._hasher = _hash_prefix(path, self.size) if self.size else hashlib.sha256()

    def _disk_size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def remove(self) -> None:
        """Delete the .part (if any) and forget its bytes."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        self.size = 0
        self._hasher = hashlib.sha256()

    def hexdigest(self) -> str:
        return self._hasher.hexdigest()

    def append_body(self, body: _Body, on_progress: Callable[[int], None]) -> None:
        """Append `body` to the .part until it ends (an early end is the caller's to notice).
        Dropped when reading fails; PullError when writing fails (no space: the .part is kept)."""
        try:
            with open(self.path, "ab") as f:
                self._copy(body, f, on_progress)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise PullError(
                    f"no space left in {self.path.parent}; the partial download is kept "
                    f"({self.path}), free some space and pull again to resume"
                ) from None
            raise PullError(f"cannot write {self.path}: {e.strerror or e}") from None

    def _copy(self, body: _Body, f: BinaryIO, on_progress: Callable[[int], None]) -> None:
        while True:
            try:
                chunk = body.read1(CHUNK)  # what has arrived: a stall loses no received bytes
            except (OSError, ValueError, http.client.HTTPException) as e:
                raise Dropped(e) from None
            if not chunk:
                return
            f.write(chunk)
            self._hasher.update(chunk)
            self.size += len(chunk)
            on_progress(self.size)


def check_space(directory: Path, need: int) -> None:
    """PullError when `directory` has less than `need` bytes free (unknown free space passes)."""
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if need > free:
        raise PullError(
            f"not enough disk space in {directory}: need {format_bytes(need)}, {format_bytes(free)} free"
        )
