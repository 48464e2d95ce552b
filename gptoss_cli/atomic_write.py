"""Replace a file in one step, so an interrupted or failed write never leaves it half written.

The new content goes to a temporary file in the same directory (same file
system, so the rename is atomic) and is renamed over the target; on any error
the temporary file is removed and the old file is untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], None], *, durable: bool = False) -> None:
    """Call write(f) on a temporary file beside `path`, then rename it over `path`.

    durable=True also flushes it to disk before the rename (for user files). OSError
    propagates; no temporary file is left behind.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
