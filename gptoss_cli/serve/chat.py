"""POST /v1/chat/completions: OpenAI's Chat Completions over Harmony, streamed or not.

The request becomes a Harmony conversation (gptoss_cli.serve.messages), the
completion prompt is rendered as openai-harmony renders it, and the output
is mapped back by gptoss_cli.serve.output: `message.content`,
`message.reasoning_content` (the analysis channel, as llama.cpp's and
vLLM's servers name it) and `message.tool_calls`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, AsyncIterator

from .errors import APIError
from .fields import Fields, bad_param
from .logprobs import chat_logprobs
from .messages import chat_to_harmony, parse_tools
from .output import CALL, CONTENT, REASONING, OutputMapper
from .params import REASONING_EFFORTS, check_model, check_n, sampling, stop_strings
from .pipe import Pipe, run_to_end, stream_items
from .scheduler import Job
from .sse import sse_data
from .structured import parse_format, request_constraint
from .tool_choice import ToolChoiceGuide

__all__ = ["ChatRequest", "parse_chat", "chat_completion", "chat_chunks", "submit_stream", "assistant_message"]


@dataclass
class ChatRequest:
    messages: list[Any]  # the Harmony conversation rendered into the prompt
    prompt: list[int]
    job_args: dict[str, Any]
    tools: list[str]
    stop: list[str]
    stream: bool
    include_usage: bool
    logprobs: int | None
    guide: Any
    constraint: Any = None  # structured output: response_format and the tools' arguments


def parse_tool_choice(f: Fields, tool_names: list[str]) -> tuple[str, str | None]:
    """("auto" | "none" | "required", the named function or None)."""
    v = f.raw("tool_choice")
    if v is None:
        return "auto", None
    if isinstance(v, str):
        if v not in ("auto", "none", "required"):
            raise bad_param("tool_choice", f"'tool_choice' must be auto, none, required or a function; got {v!r}")
        if v == "required" and not tool_names:
            raise bad_param("tool_choice", "tool_choice 'required' needs 'tools'")
        return v, None
    c = Fields(v, "tool_choice.")
    fn = c.sub("function")
    name = fn.str("name") if fn is not None else c.str("name")
    if not name:
        raise bad_param("tool_choice", "a named tool_choice needs {'type': 'function', 'function': {'name': ...}}")
    if name not in tool_names:
        raise bad_param("tool_choice", f"tool_choice names {name!r}, which is not in 'tools'")
    return "required", name


def parse_chat(data: Any, state: Any) -> ChatRequest:
    """Check a request body and render its prompt; APIError (4xx) naming the field when it is unusable."""
    f = Fields(data)
    check_model(f, state.model_names)
    check_n(f)
    tools = parse_tools(f.raw("tools"))
    names = [t.name for t in tools]
    choice, named = parse_tool_choice(f, names)
    effort = f.str("reasoning_effort", state.settings.reasoning_effort, choices=REASONING_EFFORTS)
    fmt = parse_format(f.raw("response_format"), "response_format")
    constraint = request_constraint(fmt, None if choice == "none" else f.raw("tools"), state.tokenizer)
    messages = chat_to_harmony(f.raw("messages"), [] if choice == "none" else tools, effort, response_format=fmt)
    prompt = state.render(messages)
    max_tokens = f.int("max_completion_tokens", None, lo=1)
    if max_tokens is None:
        max_tokens = f.int("max_tokens", state.settings.max_tokens, lo=1)
    so = f.sub("stream_options")
    logprobs = None
    if f.bool("logprobs"):
        logprobs = f.int("top_logprobs", 0, lo=0, hi=20)
    elif f.has("top_logprobs"):
        raise bad_param("top_logprobs", "'top_logprobs' needs 'logprobs': true")
    guide = ToolChoiceGuide(state.encoding, named) if choice == "required" else None
    return ChatRequest(
        messages=messages,
        prompt=prompt,
        job_args={"sampling": sampling(f, state.settings), "max_tokens": max_tokens},
        tools=[] if choice == "none" else names,
        stop=stop_strings(f),
        stream=f.bool("stream"),
        include_usage=bool(so is not None and so.bool("include_usage")),
        logprobs=logprobs,
        guide=guide,
        constraint=constraint,
    )


def usage(result: Any, mapper: OutputMapper) -> dict[str, Any]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": mapper.reasoning_tokens},
    }


def assistant_message(mapper: OutputMapper) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": mapper.content_text or None}
    if mapper.reasoning_text:
        msg["reasoning_content"] = mapper.reasoning_text
    if mapper.calls:
        msg["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in mapper.calls
        ]
    elif msg["content"] is None:
        msg["content"] = ""
    return msg


def _job(req: ChatRequest, pipe: Pipe) -> Job:
    return Job(req.prompt, consumer=pipe, logprobs=req.logprobs, adjust=req.guide, constraint=req.constraint,
               **req.job_args)


async def chat_completion(req: ChatRequest, state: Any, receive: Any) -> dict[str, Any]:
    """The whole chat.completion object (non-streaming)."""
    mapper = OutputMapper(req.tools, req.stop)
    pipe = Pipe(asyncio.get_running_loop(), mapper)
    job = _job(req, pipe)
    result = await run_to_end(pipe, job, state.scheduler, receive)
    state.after_reply(req, result, mapper)
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": state.model_id,
        "system_fingerprint": state.fingerprint,
        "choices": [{
            "index": 0,
            "message": assistant_message(mapper),
            "logprobs": chat_logprobs(state.tokenizer, pipe.logprobs) if req.logprobs is not None else None,
            "finish_reason": mapper.finish_reason(result.stop_reason),
        }],
        "usage": usage(result, mapper),
    }


def submit_stream(req: ChatRequest, state: Any) -> tuple[Pipe, Job]:
    """Queue a streaming request now, so that 429 and 503 come back as HTTP statuses, not in the stream."""
    mapper = OutputMapper(req.tools, req.stop)
    pipe = Pipe(asyncio.get_running_loop(), mapper)
    job = _job(req, pipe)
    state.scheduler.submit(job)
    return pipe, job


async def chat_chunks(req: ChatRequest, state: Any, pipe: Pipe, job: Job) -> AsyncIterator[str]:
    """The SSE lines of a streamed completion: chat.completion.chunk objects, then `data: [DONE]`."""
    cid = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": state.model_id,
            "system_fingerprint": state.fingerprint}

    def chunk(delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> str:
        body = dict(base, choices=[{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}])
        if req.include_usage:
            body["usage"] = None
        return sse_data(body)

    yield chunk({"role": "assistant", "content": ""})
    async for kind, value, lps in stream_items(pipe, job, state.scheduler):
        if kind == "deltas":
            lp = chat_logprobs(state.tokenizer, lps) if req.logprobs is not None and lps else None
            for d in value:
                if d.opens and d.kind != CALL:
                    continue
                if d.kind == REASONING:
                    yield chunk({"reasoning_content": d.text})
                elif d.kind == CONTENT:
                    yield chunk({"content": d.text}, logprobs=lp)
                    lp = None
                elif d.kind == CALL and d.call is not None:
                    if d.opens:
                        call = {"index": d.call.index, "id": d.call.id, "type": "function",
                                "function": {"name": d.call.name, "arguments": ""}}
                    else:
                        call = {"index": d.call.index, "function": {"arguments": d.text}}
                    yield chunk({"tool_calls": [call]})
        elif kind == "done":
            state.after_reply(req, value, pipe.mapper)
            yield chunk({}, pipe.mapper.finish_reason(value.stop_reason))
            if req.include_usage:
                yield sse_data(dict(base, choices=[], usage=usage(value, pipe.mapper)))
        else:
            assert isinstance(value, APIError)
            yield sse_data(value.body())
    yield "data: [DONE]\n\n"
