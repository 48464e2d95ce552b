"""The server's counters, exposed at GET /metrics in Prometheus' text format (version 0.0.4).

Written by hand: a dozen counters and gauges do not need a client library.
Requests are counted by endpoint and status; tokens, cache hits and the
decode rate come from the scheduler's worker thread, hence the lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque

__all__ = ["Metrics"]

_WINDOW_S = 10.0  # the decode rate is over the last this many seconds


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.completion_tokens = 0
        self.cache_hits = 0  # requests that reused at least one prompt token
        self.queue_depth = 0
        self.active = 0
        self.slots = 0
        self._steps: deque[tuple[float, int]] = deque()  # (time, tokens decoded in that step)

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            key = (endpoint, status)
            self.requests[key] = self.requests.get(key, 0) + 1

    def prompt(self, tokens: int, cached: int) -> None:
        with self._lock:
            self.prompt_tokens += tokens
            self.cached_tokens += cached
            if cached:
                self.cache_hits += 1

    def decoded(self, tokens: int) -> None:
        now = time.monotonic()
        with self._lock:
            self.completion_tokens += tokens
            self._steps.append((now, tokens))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._steps and self._steps[0][0] < now - _WINDOW_S:
            self._steps.popleft()

    def decode_rate(self) -> float:
        """Tokens per second decoded over the last window (all slots together)."""
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            if not self._steps:
                return 0.0
            span = max(now - self._steps[0][0], 1e-3)
            return sum(n for _, n in self._steps) / max(span, 1.0)

    def text(self) -> str:
        rate = self.decode_rate()
        with self._lock:
            lines = [
                "# HELP gptoss_requests_total HTTP requests by endpoint and status.",
                "# TYPE gptoss_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'gptoss_requests_total{{endpoint="{endpoint}",status="{status}"}} {n}')
            for name, kind, help_, value in (
                ("prompt_tokens_total", "counter", "Prompt tokens of completed prompts.", self.prompt_tokens),
                ("prompt_cached_tokens_total", "counter", "Prompt tokens reused from a KV cache, not computed.",
                 self.cached_tokens),
                ("completion_tokens_total", "counter", "Tokens generated.", self.completion_tokens),
                ("cache_hits_total", "counter", "Requests that reused part of their prompt.", self.cache_hits),
                ("decode_tokens_per_second", "gauge", f"Tokens generated per second over the last {_WINDOW_S:g} s.",
                 round(rate, 3)),
                ("queue_depth", "gauge", "Requests waiting for a slot.", self.queue_depth),
                ("active_requests", "gauge", "Requests in a slot.", self.active),
                ("slots", "gauge", "Slots (--parallel).", self.slots),
            ):
                lines += [f"# HELP gptoss_{name} {help_}", f"# TYPE gptoss_{name} {kind}", f"gptoss_{name} {value}"]
        return "\n".join(lines) + "\n"
