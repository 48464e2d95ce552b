"""When a download gives up: a bounded number of consecutive attempts that brought no new bytes.

An attempt that added bytes to the .part resets the count, so a long download
over a flaky link goes on as long as it makes progress, while a dead server or a
stalled connection ends after `retries` more tries, with a growing pause between them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from .pull_errors import PullError

__all__ = ["RETRIES", "RetryPolicy"]

RETRIES = 5  # consecutive failed attempts (no new bytes) before giving up


@dataclass
class RetryPolicy:
    """Counts failed attempts; `failed` raises the final PullError once they are too many."""

    retries: int = RETRIES
    sleep: Callable[[float], None] = time.sleep
    failures: int = 0

    def failed(self, why: str, *, progressed: bool = False) -> None:
        """Record a failed attempt. Raise PullError(why) past the limit, else pause before the next
        (no pause after an attempt that progressed: resume at once)."""
        self.failures = 0 if progressed else self.failures + 1
        if self.failures > self.retries:
            raise PullError(why)
        if self.failures:
            self.sleep(min(2.0**self.failures, 30.0) / 10)
