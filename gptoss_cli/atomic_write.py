"""Replace a file in one step, so an interrupted or failed write never leaves it half written.

The new content goes to a temporary file in the same directory (same file
system, so the rename is atomic) and is renamed over the target; on any error
the temporary file is removed and the old file is untouched.

A write can also end without an exception. SIGTERM or SIGHUP (``kill``, a
closed terminal) would skip the clean-up, so while a write runs in the main
thread a handler removes the temporary file and then lets the signal do what
it did before (by default the process dies of it: status 143 for SIGTERM in a
shell). Python runs that handler between bytecodes, so a signal that comes
during one long native call (a quantization kernel) acts when it returns.
SIGKILL, a crash or a power cut cannot be caught: the temporary file stays,
and the next write into that folder removes it. Only names of our own pattern
(``.<name>.<pid>.<12 hex>.part``) are considered, and only when that process
is gone and no process holds the file's lock (a writer in another PID
namespace or on another host sharing the folder keeps a lock while it writes).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; the sweep is skipped there
    fcntl = None  # type: ignore[assignment]

Notice = Callable[[str], None]

TEMP_NAME = re.compile(r"\.(?P<name>.+)\.(?P<pid>[1-9][0-9]{0,9})\.[0-9a-f]{12}\.part")
"""Names of our temporary files (fullmatch); nothing else in a folder is ever removed."""

_SIGNALS = tuple(getattr(signal, s) for s in ("SIGTERM", "SIGHUP") if hasattr(signal, s))
_live: set[str] = set()  # temporary files of writes in progress: the signal handler removes them
_previous: dict[int, Any] = {}  # handlers ours replaced, put back when the last write ends
_depth = 0  # main-thread writes in progress


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside `path`, of the TEMP_NAME pattern."""
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.part"


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts; unsure counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True
    return True


def _remove_if_abandoned(path: Path) -> bool:
    """Remove a temporary file nobody holds the lock of; False when it is in use or not ours to touch."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live writer holds it
        except OSError:
            pass  # a file system without locks: the dead pid decides alone
        st, now = os.fstat(fd), os.stat(path, follow_symlinks=False)
        if (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino):
            return False  # replaced by another file since we opened it
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def sweep(folder: str | os.PathLike[str], notice: Notice | None = None) -> list[Path]:
    """Remove the temporary files that dead processes left in `folder` (SIGKILL, a crash); the removed paths."""
    if fcntl is None:
        return []
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError:
        return []
    removed = []
    for e in entries:
        m = TEMP_NAME.fullmatch(e.name)
        if m is None or _alive(int(m["pid"])):
            continue
        try:
            if not e.is_file(follow_symlinks=False):
                continue
            size = e.stat(follow_symlinks=False).st_size
        except OSError:
            continue
        if _remove_if_abandoned(Path(e.path)):
            removed.append(Path(e.path))
            if notice is not None:
                notice(f"removed {e.path} ({size / 2**20:.1f} MiB), left by an interrupted write")
    return removed


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Remove the temporary files, put the old handlers back and let the signal act as it would have."""
    for p in list(_live):
        try:
            os.unlink(p)
        except OSError:
            pass
    previous = _previous.get(signum, signal.SIG_DFL)
    _restore()
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # dies of it, as without our handler
    os._exit(128 + signum)  # not reached unless the signal was held back


def _install() -> None:
    for sig in _SIGNALS:
        old = signal.getsignal(sig)
        if old is signal.SIG_IGN or old is None or old is _on_signal:
            continue  # ignored on purpose, or set outside Python: left as it is
        _previous[sig] = old
        signal.signal(sig, _on_signal)


def _restore() -> None:
    for sig, old in _previous.items():
        signal.signal(sig, old)
    _previous.clear()


@contextmanager
def _removed_on_signal(tmp: Path) -> Iterator[None]:
    """Keep `tmp` in the set the signal handler removes; the handler is installed by the outermost main-thread write."""
    global _depth
    main = threading.current_thread() is threading.main_thread()
    if main:
        if _depth == 0:
            _install()
        _depth += 1
    _live.add(str(tmp))
    try:
        yield
    finally:
        _live.discard(str(tmp))
        if main:
            _depth -= 1
            if _depth == 0:
                _restore()


def _lock(fd: int) -> None:
    """Hold the file's lock until fd is closed: "in use" to any sweep, whatever its PID namespace."""
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        pass  # no locks on this file system: the pid in the name still protects it


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, mode: int = 0o666, notice: Notice | None = None) -> Iterator[Path]:
    """Yield a new, empty temporary file beside `path` to write (by name, e.g. for a library
    that opens it itself); a clean exit renames it over `path`, an exception or a SIGTERM removes it.

    First removes what dead writers left in that folder (see sweep; notice tells of each).
    `mode` is filtered by the umask as usual. OSError propagates.
    """
    path = Path(path)
    sweep(path.parent, notice)
    tmp = temp_path(path)
    with _removed_on_signal(tmp):
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
        try:
            _lock(fd)
            yield tmp
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        finally:
            os.close(fd)


def write_atomically(
    path: str | os.PathLike[str],
    write: Callable[[BinaryIO], None],
    *,
    durable: bool = False,
    notice: Notice | None = None,
) -> None:
    """Call write(f) on a temporary file beside `path`, then rename it over `path`.

    durable=True also flushes it to disk before the rename (for user files). The file
    is private to the user (0600), as before. OSError propagates; no temporary file is
    left behind, also when SIGTERM ends the process.
    """
    with atomic_path(path, mode=0o600, notice=notice) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
