"""How `gptoss run` shows a generation: text (default), --raw, --json, --jsonl, plus -v stats.

Each renderer takes the generation events (gptoss_cli.generate) one by one and
writes to the streams it was given; `finish(result)` writes what comes at the end.

- text: the final channel streams to stdout and nothing else does;
  show_reasoning streams analysis (and commentary preambles) to stderr, dimmed
  on a terminal; a tool call is reported on stdout as
  `tool call: functions.NAME {"arg": ...}`.
- raw: the prompt and the completion as decoded Harmony text, special tokens spelled out.
- json: one object at the end (model, final, analysis, messages, tool_calls,
  stop_reason, usage, timings).
- jsonl: one JSON object per line: message_start, delta, message_end, tool_call, done.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any

from .events import (
    INTERRUPTED,
    Done,
    GenerationResult,
    MessageEnd,
    MessageStart,
    TextDelta,
    Token,
    message_kind,
)

__all__ = ["make_renderer", "TextRenderer", "RawRenderer", "JsonRenderer", "JsonlRenderer", "stats_line"]

DIM = "\x1b[2m"
RESET = "\x1b[0m"


def use_color(stream: IO[str]) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


class Renderer:
    """Base: remembers the run's facts; subclasses override event() and finish()."""

    def __init__(self, out: IO[str], err: IO[str], *, model: str, model_path: str, load_s: float | None = None,
                 compile_s: float | None = None, show_reasoning: bool = False, precision: str | None = None):
        self.out = out
        self.err = err
        self.model = model
        self.model_path = model_path
        self.load_s = load_s
        self.compile_s = compile_s
        self.show_reasoning = show_reasoning
        self.precision = precision  # "fast" or "exact" (docs/design.md §2.8): the timings name it

    def prompt(self, prompt_text: str) -> None:
        """Called once before generation with the decoded prompt."""

    def event(self, ev: Any) -> None:
        pass

    def finish(self, result: GenerationResult) -> None:
        pass

    def timings(self, result: GenerationResult) -> dict[str, Any]:
        t = result.timings(self.load_s)
        if self.compile_s is not None:
            t["compile_s"] = round(self.compile_s, 3)
        if self.precision is not None:
            t["precision"] = self.precision
        return t

    def _write(self, stream: IO[str], text: str) -> None:
        if text:
            stream.write(text)
            stream.flush()


class TextRenderer(Renderer):
    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.color = use_color(self.err)
        self._kind: str | None = None
        self._out_any = False
        self._out_last = "\n"
        self._err_open = False
        self._finals = 0

    def _say(self, text: str) -> None:
        if text:
            self._write(self.out, text)
            self._out_any = True
            self._out_last = text[-1]

    def event(self, ev: Any) -> None:
        if isinstance(ev, MessageStart):
            self._kind = message_kind(ev.channel, ev.recipient, ev.raw)
            if self._kind == "final":
                if self._finals and self._out_last != "\n":
                    self._say("\n")
                self._finals += 1
            elif self._kind in ("analysis", "commentary") and self.show_reasoning:
                self._err_open = True
                if self.color:
                    self._write(self.err, DIM)
        elif isinstance(ev, TextDelta):
            if self._kind == "final":
                self._say(ev.text)
            elif self._err_open:
                self._write(self.err, ev.text)
        elif isinstance(ev, MessageEnd):
            if self._err_open:
                self._write(self.err, (RESET if self.color else "") + "\n")
                self._err_open = False
            self._kind = None

    def finish(self, result: GenerationResult) -> None:
        if self._err_open:
            self._write(self.err, (RESET if self.color else "") + "\n")
            self._err_open = False
        for call in result.tool_calls:
            if self._out_any and self._out_last != "\n":
                self._say("\n")
            args = call.arguments_text if call.arguments is None else json.dumps(call.arguments, ensure_ascii=False)
            self._say(f"tool call: {call.recipient} {args}\n")
        if self._out_any and self._out_last != "\n":
            self._say("\n")
        if result.stop_reason != INTERRUPTED and not result.final and not result.tool_calls:
            self._write(self.err, "gptoss: note: " + _no_answer_reason(result) + "\n")


def _no_answer_reason(result: GenerationResult) -> str:
    n = result.completion_tokens
    if result.stop_reason == "max_tokens":
        why = f"the token limit ({n}) was reached before a final answer; raise -n/--max-tokens"
    elif result.stop_reason == "context_full":
        why = "the context filled up before a final answer; raise -c/--ctx-size"
    elif any(result.raw):
        why = f"the model's output ({n} tokens) was not valid Harmony"
    else:
        why = "the model gave no final answer"
    return why + " (--show-reasoning or --raw shows what it wrote)"


class RawRenderer(Renderer):
    def prompt(self, prompt_text: str) -> None:
        self._write(self.out, prompt_text)
        self._last = prompt_text[-1:] or "\n"

    def event(self, ev: Any) -> None:
        if isinstance(ev, Token) and ev.text:
            self._write(self.out, ev.text)
            self._last = ev.text[-1]

    def finish(self, result: GenerationResult) -> None:
        if getattr(self, "_last", "\n") != "\n":
            self._write(self.out, "\n")


class JsonRenderer(Renderer):
    def finish(self, result: GenerationResult) -> None:
        obj = {
            "model": self.model,
            "model_path": self.model_path,
            "final": result.final,
            "analysis": result.analysis,
            "messages": [m.to_dict() for m in result.messages],
            "tool_calls": [c.to_dict() for c in result.tool_calls],
            "stop_reason": result.stop_reason,
            "usage": result.usage(),
            "timings": self.timings(result),
        }
        self._write(self.out, _dumps(obj) + "\n")


class JsonlRenderer(Renderer):
    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self._channel: str | None = None

    def _line(self, obj: dict[str, Any]) -> None:
        self._write(self.out, _dumps(obj) + "\n")

    def event(self, ev: Any) -> None:
        if isinstance(ev, MessageStart):
            self._channel = ev.channel
            obj = {
                "type": "message_start",
                "role": ev.role.value,
                "name": ev.name,
                "channel": ev.channel,
                "recipient": ev.recipient,
                "content_type": ev.content_type,
            }
            if ev.raw:
                obj["raw"] = True
            self._line(obj)
        elif isinstance(ev, TextDelta):
            self._line({"type": "delta", "channel": self._channel, "text": ev.text})
        elif isinstance(ev, MessageEnd):
            obj = {"type": "message_end", "message": ev.message.to_dict()}
            if ev.raw:
                obj["raw"] = True
            self._line(obj)
        elif isinstance(ev, Done):
            pass  # finish() writes the done line

    def finish(self, result: GenerationResult) -> None:
        for call in result.tool_calls:
            self._line({"type": "tool_call", **call.to_dict()})
        self._line(
            {
                "type": "done",
                "model": self.model,
                "stop_reason": result.stop_reason,
                "final": result.final,
                "tool_calls": [c.to_dict() for c in result.tool_calls],
                "usage": result.usage(),
                "timings": self.timings(result),
            }
        )


def make_renderer(mode: str, out: IO[str], err: IO[str], **kw: Any) -> Renderer:
    """mode: 'text', 'raw', 'json' or 'jsonl'."""
    cls = {"text": TextRenderer, "raw": RawRenderer, "json": JsonRenderer, "jsonl": JsonlRenderer}[mode]
    return cls(out, err, **kw)


def _fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def stats_line(result: GenerationResult, load_s: float | None, compile_s: float | None = None,
               precision: str | None = None) -> str:
    """One line like ollama's --verbose: load time, prompt and generation speed (and their precision), stop reason."""
    parts = []
    if load_s is not None:
        parts.append(f"load {load_s:.2f} s")
    if compile_s is not None:
        parts.append(f"compile {compile_s:.1f} s")
    computed = f"{result.computed_tokens} computed in {result.compute_s:.2f} s, {_fmt_rate(result.prompt_tok_s)} tok/s"
    cached = f" ({result.cached_tokens} cached)" if result.cached_tokens else ""
    restored = f" (cache read in {result.restore_s:.2f} s)" if result.restore_s else ""
    parts.append(f"prompt {result.prompt_tokens} tokens{cached}: {computed}{restored}")
    parts.append(
        f"generated {result.completion_tokens} tokens in {result.gen_s:.2f} s, {_fmt_rate(result.gen_tok_s)} tok/s"
    )
    if precision is not None:
        parts.append(f"precision {precision}")
    parts.append(f"stop: {result.stop_reason}")
    return "gptoss: " + " | ".join(parts)
