"""`gptoss serve`: an OpenAI-compatible HTTP endpoint over the same engine (see docs/serving.md).

    serve(settings)   # gptoss_cli.serve.server.serve: the whole command

Modules, one job each: server (socket, uvicorn, loading, signals), app
(routes, limits), auth (the API key), errors (OpenAI error objects), state
(what the endpoints share), chat / messages / output (Chat Completions over
Harmony), responses (the Responses API), completions (raw prompts),
structured (response formats and tools as one constraint), scheduler / slots
(continuous batching on one model thread), pipe (worker thread to coroutine),
continuations (agent-loop KV reuse), params / fields (request checks),
tool_choice, stops, logprobs, sse, metrics.
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve"]


def serve(opts: Any, **kw: Any) -> int:
    from .server import serve as _serve

    return _serve(opts, **kw)
