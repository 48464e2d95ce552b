"""A generation's Harmony messages as OpenAI sees them: reasoning text, answer text, tool calls.

Fed the events of each token as they stream (on the scheduler's thread),
it decides per message, from its header alone, where the text goes:

- the analysis channel: reasoning (`reasoning_content`);
- a message to a recipient that names one of the request's tools (with or
  without the `functions.` namespace, on whatever channel): a tool call,
  its text the arguments;
- everything else is answer text: the final channel, commentary without a
  recipient (a preamble), an unknown or missing channel, a recipient that
  is not a known tool, and text that is not valid Harmony at all (the
  parser's raw messages). Nothing the model writes is an error.

Stop strings cut the answer text (they do not apply to reasoning or to
arguments). Reasoning tokens are counted as the tokens from a reasoning
message's header to its end.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from ..events import Done, MessageEnd, MessageStart, TextDelta, Token
from .stops import StopStrings

__all__ = ["OutputMapper", "Delta", "OutCall", "REASONING", "CONTENT", "CALL", "new_call_id"]

REASONING, CONTENT, CALL = "reasoning", "content", "call"


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class OutCall:
    index: int
    id: str
    name: str
    arguments: str = ""


@dataclass
class Delta:
    """One piece of output: text of a kind, or a message opening (opens, text empty; a call's has `call`)."""

    kind: str
    text: str = ""
    call: OutCall | None = None
    opens: bool = False  # a message begins (for a call: its id and name are new)
    token: int | None = None  # the token that produced it


def tool_name(recipient: str | None, tools: Iterable[str]) -> str | None:
    """The tool a recipient names, or None ('functions.get_weather' and 'get_weather' both name get_weather)."""
    if not recipient or recipient == "all":
        return None
    names = set(tools)
    bare = recipient.split(".", 1)[1] if recipient.startswith("functions.") else recipient
    bare = bare.strip()
    return bare if bare in names else None


@dataclass
class OutputMapper:
    tools: Sequence[str] = ()
    stop: Sequence[str] = ()
    reasoning: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    calls: list[OutCall] = field(default_factory=list)
    reasoning_tokens: int = 0
    content_tokens: list[int] = field(default_factory=list)  # tokens that produced answer text, in order

    def __post_init__(self) -> None:
        self._stops = StopStrings(self.stop)
        self._kind: str | None = None  # the open message's kind
        self._seen: set[str] = set()  # kinds that already had a message (a second one gets a newline)
        self._pending = 0  # tokens of a header not yet known to belong to a message
        self._token: int | None = None
        self._call: OutCall | None = None

    @property
    def stopped(self) -> bool:
        return self._stops.hit

    def feed(self, events: Iterable[object]) -> list[Delta]:
        out: list[Delta] = []
        for ev in events:
            if isinstance(ev, Token):
                self._token = ev.id
                if ev.id is not None:
                    if self._kind is None:
                        self._pending += 1
                    elif self._kind == REASONING:
                        self.reasoning_tokens += 1
            elif isinstance(ev, MessageStart):
                self._open(ev, out)
            elif isinstance(ev, TextDelta):
                self._text(ev.text, out)
            elif isinstance(ev, MessageEnd):
                self._close(ev, out)
            elif isinstance(ev, Done):
                self._text_flush(out)
        return out

    def _open(self, ev: MessageStart, out: list[Delta]) -> None:
        name = None if ev.raw else tool_name(ev.recipient, self.tools)
        if name is not None:
            kind = CALL
        elif ev.channel == "analysis" and not ev.raw:
            kind = REASONING
        else:
            kind = CONTENT
        if kind == REASONING:
            self.reasoning_tokens += self._pending
        self._pending = 0
        self._kind = kind
        if kind == CALL:
            call = OutCall(len(self.calls), new_call_id(), name or "")
            self.calls.append(call)
            self._call = call
            out.append(Delta(CALL, "", call, opens=True, token=self._token))
        else:
            out.append(Delta(kind, "", opens=True, token=self._token))
            if kind in self._seen:
                self._text("\n" if kind == REASONING else "", out)
        self._seen.add(kind)

    def _text(self, text: str, out: list[Delta]) -> None:
        if not text:
            return
        kind = self._kind or CONTENT
        if kind == CALL:
            assert self._call is not None
            self._call.arguments += text
            out.append(Delta(CALL, text, self._call, token=self._token))
        elif kind == REASONING:
            self.reasoning.append(text)
            out.append(Delta(REASONING, text, token=self._token))
        else:
            shown = self._stops.feed(text)
            if shown:
                self.content.append(shown)
                if self._token is not None and (not self.content_tokens or self.content_tokens[-1] != self._token):
                    self.content_tokens.append(self._token)
                out.append(Delta(CONTENT, shown, token=self._token))

    def _text_flush(self, out: list[Delta]) -> None:
        tail = self._stops.flush()
        if tail:
            self.content.append(tail)
            out.append(Delta(CONTENT, tail, token=self._token))

    def _close(self, ev: MessageEnd, out: list[Delta]) -> None:
        self._kind = None  # the end token was counted with the message's tokens
        self._call = None

    # -- the totals ------------------------------------------------------------------

    @property
    def reasoning_text(self) -> str:
        return "".join(self.reasoning)

    @property
    def content_text(self) -> str:
        return "".join(self.content)

    def finish_reason(self, stop_reason: str) -> str:
        """OpenAI's finish_reason for the generation's stop reason."""
        if self.stopped:
            return "stop"
        if stop_reason in ("max_tokens", "context_full"):
            return "length"
        if self.calls:
            return "tool_calls"
        return "stop"
