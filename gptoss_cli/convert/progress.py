"""Byte progress on stderr for convert / quantize: a rich bar on a terminal, a
plain line per 10% otherwise, nothing when disabled."""

from __future__ import annotations

import sys
import time
from typing import Any


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class ByteProgress:
    def __init__(self, label: str, total: int, enabled: bool = True) -> None:
        self.label = label
        self.total = max(int(total), 1)
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.done = 0
        self._progress: Any = None
        self._task: Any = None
        self._last_tenth = 0
        self.started = time.perf_counter()

    def __enter__(self) -> "ByteProgress":
        self.started = time.perf_counter()
        if self.tty:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[tensor]}"),
                console=Console(stderr=True),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=self.total, tensor="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def advance(self, name: str, n: int) -> None:
        self.done += n
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, tensor=name)
        elif self.enabled:
            tenth = self.done * 10 // self.total
            if tenth > self._last_tenth:
                self._last_tenth = tenth
                self.note(f"  {tenth * 10}% ({fmt_bytes(self.done)} of {fmt_bytes(self.total)})")

    def note(self, msg: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(msg, highlight=False, markup=False)
        else:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started
