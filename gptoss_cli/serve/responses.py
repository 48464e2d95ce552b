"""POST /v1/responses: OpenAI's Responses API (the one openai/gpt-oss's reference server implements).

`input` (a string, or items: messages, reasoning, function_call,
function_call_output), `instructions`, `reasoning.effort`, function `tools`
and `tool_choice`, `max_output_tokens`, sampling, `stream` with the
documented events, and `previous_response_id`: the conversation of each
response is kept in memory (the last MAX_STORED responses) so the next
request can name it instead of resending it; its tokens continue in the
slot's KV cache like any other prompt (gptoss_cli.serve.continuations).
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from ..harmony.model import Author, Message, Role, TextContent
from ..prompt import drop_answered_analysis
from .chat import ChatRequest, parse_tool_choice
from .errors import APIError
from .fields import Fields, bad_param
from .messages import call_message, content_text, head_messages, parse_tools, tool_message
from .output import CALL, CONTENT, REASONING, OutputMapper
from .params import REASONING_EFFORTS, check_model, sampling
from .pipe import Pipe, run_to_end, stream_items
from .scheduler import Job
from .sse import sse_event
from .structured import format_echo, parse_format, request_constraint
from .tool_choice import ToolChoiceGuide

__all__ = ["ResponseStore", "parse_response_request", "create_response", "response_events", "submit_response"]

MAX_STORED = 256


def _id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


class ResponseStore:
    """The turns (no system or developer message) of recent responses and their calls' names by call_id,
    by response id; the oldest go first."""

    def __init__(self, limit: int = MAX_STORED) -> None:
        self._items: OrderedDict[str, tuple[list[Message], dict[str, str]]] = OrderedDict()
        self._limit = limit

    def put(self, rid: str, turns: list[Message], calls: dict[str, str]) -> None:
        self._items[rid] = (turns, calls)
        while len(self._items) > self._limit:
            self._items.popitem(last=False)

    def get(self, rid: str) -> tuple[list[Message], dict[str, str]] | None:
        return self._items.get(rid)


@dataclass
class ResponseRequest(ChatRequest):
    turns: list[Message] = field(default_factory=list)
    calls: dict[str, str] = field(default_factory=dict)  # call_id -> function name, in turns
    echo: dict[str, Any] = field(default_factory=dict)  # request fields the response object repeats


def _input_turns(value: Any, instructions: list[str], names: dict[str, str]) -> list[Message]:
    """Input items to Harmony turns; system and developer text joins the instructions, and the calls'
    names are added to `names` (call_id -> name, holding those of the previous response)."""
    if isinstance(value, str):
        return [Message.from_role_and_content(Role.USER, value)]
    if not isinstance(value, list):
        raise bad_param("input", "'input' must be a string or an array of items", "invalid_type")
    turns: list[Message] = []
    for i, raw in enumerate(value):
        param = f"input[{i}]"
        item = Fields(raw, param + ".")
        kind = item.str("type", "message")
        if kind == "message":
            role = item.str("role", choices=("user", "assistant", "system", "developer"))
            text = content_text(item.raw("content"), f"{param}.content") or ""
            if role in ("system", "developer"):
                instructions.append(text)
            elif role == "user":
                turns.append(Message.from_role_and_content(Role.USER, text))
            elif role == "assistant":
                turns.append(Message(author=Author(Role.ASSISTANT), content=[TextContent(text)], channel="final"))
            else:
                raise bad_param(f"{param}.role", f"'{param}.role' is required", "missing_required_parameter")
        elif kind == "reasoning":
            parts = item.list("content") or item.list("summary") or []
            text = "".join(Fields(p, f"{param}.content.").str("text", "") or "" for p in parts)
            turns.append(Message(author=Author(Role.ASSISTANT), content=[TextContent(text)], channel="analysis"))
        elif kind == "function_call":
            name, call_id = item.str("name"), item.str("call_id")
            if not name or not call_id:
                raise bad_param(param, f"{param}: a function_call needs 'name' and 'call_id'", "missing_required_parameter")
            names[call_id] = name
            if turns and turns[-1].author.role == Role.ASSISTANT and turns[-1].channel == "final":
                turns[-1].channel = "commentary"  # text before a call is its preamble
            turns.append(call_message(name, item.str("arguments", "{}") or "{}"))
        elif kind == "function_call_output":
            call_id = item.str("call_id")
            if call_id not in names:
                raise bad_param(f"{param}.call_id", f"'{param}.call_id' does not match a function_call in the input")
            out = item.raw("output")
            text = out if isinstance(out, str) else content_text(out, f"{param}.output") or ""
            turns.append(tool_message(names[call_id], text))
        else:
            raise bad_param(f"{param}.type", f"input items of type {kind!r} are not supported")
    return turns


def parse_response_request(data: Any, state: Any) -> ResponseRequest:
    f = Fields(data)
    check_model(f, state.model_names)
    tools = parse_tools(f.raw("tools"))
    names = [t.name for t in tools]
    choice, named = parse_tool_choice(f, names)
    reasoning = f.sub("reasoning")
    effort = (reasoning.str("effort", None, choices=REASONING_EFFORTS) if reasoning else None) \
        or state.settings.reasoning_effort
    instructions: list[str] = [f.str("instructions")] if f.has("instructions") else []
    previous: list[Message] = []
    calls: dict[str, str] = {}
    prev_id = f.str("previous_response_id")
    if prev_id is not None:
        stored = state.responses.get(prev_id)
        if stored is None:
            raise APIError(404, f"Previous response with id '{prev_id}' not found (this server keeps the last"
                           f" {MAX_STORED} in memory)", param="previous_response_id", code="previous_response_not_found")
        previous, calls = list(stored[0]), dict(stored[1])
    if f.raw("input") is None:
        raise bad_param("input", "'input' is required", "missing_required_parameter")
    new = _input_turns(f.raw("input"), instructions, calls)
    turns = previous + new
    text = f.sub("text")
    raw_format = text.raw("format") if text is not None else None
    fmt = parse_format(raw_format, "text.format")
    constraint = request_constraint(fmt, None if choice == "none" else f.raw("tools"), state.tokenizer)
    head = head_messages(effort, instructions, tools if choice != "none" else [], fmt)
    messages = head + drop_answered_analysis(turns)
    prompt = state.render(messages)
    max_tokens = f.int("max_output_tokens", state.settings.max_tokens, lo=1)
    params = sampling(f, state.settings)
    echo = {
        "instructions": f.str("instructions"),
        "max_output_tokens": max_tokens,
        "previous_response_id": prev_id,
        "reasoning": {"effort": effort, "summary": None},
        "temperature": params.temperature,
        "top_p": params.top_p,
        "tools": f.raw("tools") or [],
        "tool_choice": f.raw("tool_choice") or "auto",
        "parallel_tool_calls": False,
        "text": {"format": format_echo(raw_format)},
        "truncation": "disabled",
        "metadata": f.obj("metadata") or {},
        "store": f.bool("store", True),
    }
    return ResponseRequest(
        messages=messages, prompt=prompt, job_args={"sampling": params, "max_tokens": max_tokens},
        tools=[] if choice == "none" else names, stop=[], stream=f.bool("stream"), include_usage=False,
        logprobs=None, guide=ToolChoiceGuide(state.encoding, named) if choice == "required" else None,
        turns=turns, calls=calls, echo=echo, constraint=constraint,
    )


class _Builder:
    """The response's output items, built from the mapper's deltas; each step also gives its stream events."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None
        self._open_kind: str | None = None

    def _close(self, events: list[tuple[str, dict]], status: str = "completed") -> None:
        item, kind = self._open, self._open_kind
        if item is None:
            return
        idx = len(self.items) - 1
        if kind == REASONING:
            text = item["content"][0]["text"]
            events.append(("response.reasoning_text.done", {"item_id": item["id"], "output_index": idx,
                                                            "content_index": 0, "text": text}))
            events.append(("response.content_part.done", {"item_id": item["id"], "output_index": idx,
                                                          "content_index": 0, "part": item["content"][0]}))
        elif kind == CONTENT:
            text = item["content"][0]["text"]
            events.append(("response.output_text.done", {"item_id": item["id"], "output_index": idx,
                                                         "content_index": 0, "text": text, "logprobs": []}))
            events.append(("response.content_part.done", {"item_id": item["id"], "output_index": idx,
                                                          "content_index": 0, "part": item["content"][0]}))
            item["status"] = status
        else:
            events.append(("response.function_call_arguments.done", {"item_id": item["id"], "output_index": idx,
                                                                     "arguments": item["arguments"]}))
            item["status"] = status
        events.append(("response.output_item.done", {"output_index": idx, "item": item}))
        self._open = self._open_kind = None

    def _begin(self, kind: str, d: Any, events: list[tuple[str, dict]]) -> None:
        self._close(events)
        if kind == REASONING:
            part = {"type": "reasoning_text", "text": ""}
            item = {"type": "reasoning", "id": _id("rs"), "summary": [], "content": [part]}
        elif kind == CONTENT:
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item = {"type": "message", "id": _id("msg"), "status": "in_progress", "role": "assistant",
                    "content": [part]}
        else:
            part = None
            item = {"type": "function_call", "id": _id("fc"), "call_id": d.call.id, "name": d.call.name,
                    "arguments": "", "status": "in_progress"}
        self.items.append(item)
        self._open, self._open_kind = item, kind
        idx = len(self.items) - 1
        events.append(("response.output_item.added", {"output_index": idx, "item": _snapshot(item)}))
        if part is not None:
            events.append(("response.content_part.added", {"item_id": item["id"], "output_index": idx,
                                                           "content_index": 0, "part": dict(part)}))

    def feed(self, deltas: list[Any]) -> list[tuple[str, dict]]:
        events: list[tuple[str, dict]] = []
        for d in deltas:
            if d.opens and d.kind == CALL:
                self._begin(CALL, d, events)
                continue
            if not d.text:
                continue
            if self._open_kind != d.kind:
                self._begin(d.kind, d, events)
            item, idx = self._open, len(self.items) - 1
            assert item is not None
            if d.kind == CALL:
                item["arguments"] += d.text
                events.append(("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": idx,
                                                                          "delta": d.text}))
            else:
                item["content"][0]["text"] += d.text
                name = "response.reasoning_text.delta" if d.kind == REASONING else "response.output_text.delta"
                extra = {"logprobs": []} if d.kind == CONTENT else {}
                events.append((name, dict({"item_id": item["id"], "output_index": idx, "content_index": 0,
                                           "delta": d.text}, **extra)))
        return events

    def finish(self, result: Any) -> list[tuple[str, dict]]:
        """Close the last item: "incomplete" when max_output_tokens cut it (a cut value is no complete object)."""
        events: list[tuple[str, dict]] = []
        self._close(events, "incomplete" if _cut(result) else "completed")
        return events


def _cut(result: Any) -> bool:
    """The generation ended at the token limit or the context's end, not where the model ended it."""
    return result.stop_reason in ("max_tokens", "context_full")


def _snapshot(item: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(item)


def _response(state: Any, req: ResponseRequest, rid: str, created: int, status: str, output: list,
              result: Any = None, mapper: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": rid, "object": "response", "created_at": created, "status": status, "model": state.model_id,
        "output": output, "error": None, "incomplete_details": None, "usage": None,
    }
    body.update(req.echo)
    if result is not None:
        if _cut(result):
            body["status"] = "incomplete"
            body["incomplete_details"] = {"reason": "max_output_tokens"}
        body["usage"] = {
            "input_tokens": result.prompt_tokens,
            "input_tokens_details": {"cached_tokens": result.cached_tokens},
            "output_tokens": result.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": mapper.reasoning_tokens},
            "total_tokens": result.prompt_tokens + result.completion_tokens,
        }
    return body


def _remember(state: Any, req: ResponseRequest, rid: str, result: Any, mapper: Any) -> None:
    state.after_reply(req, result, mapper)
    calls = dict(req.calls, **{c.id: c.name for c in mapper.calls})
    state.responses.put(rid, list(req.turns) + state.reply_messages(mapper), calls)


def _job(req: ResponseRequest, pipe: Pipe) -> Job:
    return Job(req.prompt, consumer=pipe, adjust=req.guide, constraint=req.constraint, **req.job_args)


async def create_response(req: ResponseRequest, state: Any, receive: Any) -> dict[str, Any]:
    mapper = OutputMapper(req.tools)
    pipe = Pipe(asyncio.get_running_loop(), mapper)
    builder = _Builder()
    job = _job(req, pipe)
    rid, created = _id("resp"), int(time.time())
    result = await run_to_end(pipe, job, state.scheduler, receive, on_deltas=builder.feed)
    builder.finish(result)
    _remember(state, req, rid, result, mapper)
    return _response(state, req, rid, created, "completed", builder.items, result, mapper)


def submit_response(req: ResponseRequest, state: Any) -> tuple[Pipe, Job]:
    pipe = Pipe(asyncio.get_running_loop(), OutputMapper(req.tools))
    job = _job(req, pipe)
    state.scheduler.submit(job)
    return pipe, job


async def response_events(req: ResponseRequest, state: Any, pipe: Pipe, job: Job) -> AsyncIterator[str]:
    """The SSE events of a streamed response, numbered by sequence_number."""
    rid, created = _id("resp"), int(time.time())
    builder = _Builder()
    seq = 0

    def event(name: str, body: dict[str, Any]) -> str:
        nonlocal seq
        out = sse_event(name, dict(body, type=name, sequence_number=seq))
        seq += 1
        return out

    yield event("response.created", {"response": _response(state, req, rid, created, "in_progress", [])})
    yield event("response.in_progress", {"response": _response(state, req, rid, created, "in_progress", [])})
    async for kind, value, _ in stream_items(pipe, job, state.scheduler):
        if kind == "deltas":
            for name, body in builder.feed(value):
                yield event(name, body)
        elif kind == "done":
            for name, body in builder.finish(value):
                yield event(name, body)
            _remember(state, req, rid, value, pipe.mapper)
            final = _response(state, req, rid, created, "completed", builder.items, value, pipe.mapper)
            yield event("response.incomplete" if final["status"] == "incomplete" else "response.completed",
                        {"response": final})
        else:
            assert isinstance(value, APIError)
            failed = _response(state, req, rid, created, "failed", builder.items)
            failed["error"] = {"code": value.code or "server_error", "message": value.message}
            yield event("response.failed", {"response": failed})
