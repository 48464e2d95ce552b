"""What an HTTP answer means for one download attempt: go on, resume, start over, retry, or stop.

Kept apart from the transfer loop so that each rule about status codes and
Content-Range is written once and can be read on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from urllib.error import HTTPError

from .pull_errors import PullError

__all__ = ["BodyPlan", "Retry", "body_plan", "complete_size_or_raise"]

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_CONTENT_RANGE_UNSAT = re.compile(r"bytes\s+\*/(\d+)")


class Retry(Exception):
    """This attempt failed in a way another attempt may fix.

    `why` is the error to give if no attempt does, `note` a line to say now, and
    `restart` asks to drop the .part before the next attempt.
    """

    def __init__(self, why: str, *, note: str | None = None, restart: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.note = note
        self.restart = restart


@dataclass(frozen=True)
class BodyPlan:
    """How to use a successful response's body."""

    append: bool  # True: it continues the .part (206); False: it is the file from byte 0
    total: int | None  # the whole file's size, when the response says it


def body_plan(status: int, headers: Message, offset: int, name: str) -> BodyPlan:
    """Check a 200/206 response against the offset asked for. Retry(restart) on a range
    that does not start where the .part ends."""
    if status == 206:
        m = _CONTENT_RANGE.match((headers.get("Content-Range") or "").strip())
        if not m or int(m.group(1)) != offset:
            raise Retry(
                f"download of {name} failed: bad ranges from the server",
                note=f"the server sent an unexpected range for {name}; starting over",
                restart=True,
            )
        return BodyPlan(True, int(m.group(3)) if m.group(3) != "*" else None)
    length = (headers.get("Content-Length") or "").strip()
    return BodyPlan(False, int(length) if length.isdigit() else None)


def complete_size_or_raise(e: HTTPError, url: str, name: str, offset: int, *, sent_token: bool) -> int:
    """The file's size when the error is a 416 saying the .part is already whole; otherwise
    Retry for what another attempt may fix (5xx, 429, a .part the server cannot resume)
    and PullError for the rest (401/403, 404, other 4xx)."""
    e.close()
    if e.code == 416 and offset:
        m = _CONTENT_RANGE_UNSAT.match((e.headers.get("Content-Range") or "").strip())
        if m and int(m.group(1)) == offset:
            return offset
        raise Retry(
            f"download of {url} failed: the server refuses to resume",
            note=f"the partial {name} does not match the server's file; starting over",
            restart=True,
        )
    if e.code in (401, 403):
        hint = "" if sent_token else "; if the model is gated, set HF_TOKEN"
        raise PullError(f"access denied (HTTP {e.code}) for {url}{hint}")
    if e.code == 404:
        raise PullError(f"not found (HTTP 404): {url}")
    failed = f"download of {url} failed: HTTP {e.code} {e.reason}"
    if e.code >= 500 or e.code == 429:
        raise Retry(failed)
    raise PullError(failed)
