"""Server-sent events as OpenAI streams them: `data: {json}` (Chat, Completions) or `event:` + `data:` (Responses)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["sse_data", "sse_event", "SSE_HEADERS"]

#: no caching, and no buffering by a reverse proxy (nginx), so each token is sent as it comes
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse_data(obj: Any) -> str:
    return f"data: {_json(obj)}\n\n"


def sse_event(event: str, obj: Any) -> str:
    return f"event: {event}\ndata: {_json(obj)}\n\n"
