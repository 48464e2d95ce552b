"""Download progress on stderr: a rich bar on a terminal, one plain line per 10% in logs."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator

from .byte_sizes import format_bytes

__all__ = ["Reporter"]


class Reporter:
    """Progress and notes for one download; silent when not `enabled`."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None
        self._last_tenth = -1

    def note(self, msg: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(msg, highlight=False, markup=False)
        else:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    @contextmanager
    def bar(self, name: str) -> Iterator[None]:
        if not self.tty:
            yield
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress = progress
        self._task = progress.add_task(name, total=None)
        try:
            with progress:
                yield
        finally:
            self._progress = None
            self._task = None

    def update(self, completed: int, total: int | None) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed, total=total)
        elif self.enabled and not self.tty and total:
            # logs: one plain line per 10% instead of a bar
            tenth = completed * 10 // total
            if tenth > self._last_tenth:
                if self._last_tenth >= 0:
                    self.note(f"  {tenth * 10}% ({format_bytes(completed)} of {format_bytes(total)})")
                self._last_tenth = tenth
