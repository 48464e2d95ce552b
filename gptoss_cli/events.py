"""What a generation produces: its events as they stream, and its result at the end.

Every completion token yields a `Token` (its id and raw text, special tokens
spelled out), then whatever Harmony events it causes (`MessageStart`,
`TextDelta`, `MessageEnd` from gptoss_cli.harmony.parse). The first event is
`PromptProcessed`, the last always `Done` with the `GenerationResult`.

Generation ends at a stop token for assistant actions (`<|return|>`: stop
reason "stop"; `<|call|>`: "tool_call"), after `max_tokens` tokens
("max_tokens"), when the context is full ("context_full"), or on Ctrl-C
("interrupted").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union

from .harmony.model import Message
from .harmony.parse import MessageEnd, MessageStart, TextDelta

__all__ = [
    "PromptProcessed",
    "Token",
    "Done",
    "MessageStart",
    "TextDelta",
    "MessageEnd",
    "GenerationEvent",
    "GenerationResult",
    "ToolCall",
    "message_kind",
    "STOP",
    "TOOL_CALL",
    "MAX_TOKENS",
    "CONTEXT_FULL",
    "INTERRUPTED",
]

# stop reasons
STOP = "stop"
TOOL_CALL = "tool_call"
MAX_TOKENS = "max_tokens"
CONTEXT_FULL = "context_full"
INTERRUPTED = "interrupted"


# -- events ---------------------------------------------------------------------------


@dataclass
class PromptProcessed:
    """The prompt has been run through the model (first event of a generation)."""

    prompt_tokens: int  # length of the prompt
    cached_tokens: int  # of those, how many were already in the KV cache
    seconds: float


@dataclass
class Token:
    """One completion token: its id and its raw text (special tokens spelled out).

    Bytes of an unfinished UTF-8 character are held back until the character is
    complete; id None carries bytes still held back when generation ends.
    """

    id: int | None
    text: str


@dataclass
class Done:
    result: "GenerationResult"


GenerationEvent = Union[PromptProcessed, Token, MessageStart, TextDelta, MessageEnd, Done]


def message_kind(channel: str | None, recipient: str | None = None, raw: bool = False) -> str:
    """How a message should be shown: 'final', 'analysis', 'commentary', 'tool_call', 'raw' or 'other'.

    Accepts a MessageStart's or a Message's fields. Only the final channel is
    'final'; text that is not valid Harmony is 'raw'; a message without a
    channel (gpt-oss always names one) or on an unknown channel is 'other'.
    """
    if raw:
        return "raw"
    if recipient is not None and recipient != "all":
        return "tool_call"
    if channel in ("final", "analysis", "commentary"):
        return channel
    return "other"


# -- results ----------------------------------------------------------------------------


@dataclass
class ToolCall:
    """A function call the model made (an assistant message to a recipient, ended by <|call|>)."""

    recipient: str  # e.g. "functions.get_weather"
    name: str  # "get_weather"
    namespace: str | None  # "functions"
    arguments: Any  # the parsed JSON arguments, or None when they are not valid JSON
    arguments_text: str
    channel: str | None = None
    content_type: str | None = None
    error: str | None = None

    @classmethod
    def from_message(cls, msg: Message) -> "ToolCall":
        recipient = msg.recipient or ""
        namespace, dot, name = recipient.partition(".")
        if not dot:
            namespace, name = None, recipient
        text = msg.text
        error = None
        try:
            args = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            args, error = None, f"arguments are not valid JSON: {e.msg}"
        return cls(recipient, name, namespace, args, text, msg.channel, msg.content_type, error)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "namespace": self.namespace,
            "recipient": self.recipient,
            "arguments": self.arguments,
            "arguments_text": self.arguments_text,
            "channel": self.channel,
            "content_type": self.content_type,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


def _rate(n: int, seconds: float) -> float | None:
    return round(n / seconds, 3) if n and seconds > 0 else None


@dataclass
class GenerationResult:
    prompt_tokens: int
    cached_tokens: int = 0
    tokens: list[int] = field(default_factory=list)  # completion tokens, stop token included
    messages: list[Message] = field(default_factory=list)
    end_tokens: list[int | None] = field(default_factory=list)  # per message: the token that ended it
    raw: list[bool] = field(default_factory=list)  # per message: not valid Harmony
    stop_reason: str = STOP
    prompt_s: float = 0.0  # the whole prompt phase: restoring a snapshot, then computing the rest
    restore_s: float = 0.0  # of which restoring cached tokens from disk
    gen_s: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    def texts(self, kind: str) -> list[str]:
        """Texts of the messages of one message_kind, in order."""
        return [
            m.text
            for m, raw in zip(self.messages, self.raw)
            if message_kind(m.channel, m.recipient, raw) == kind
        ]

    @property
    def final(self) -> str:
        return "\n".join(self.texts("final"))

    @property
    def analysis(self) -> str:
        return "\n".join(self.texts("analysis"))

    @property
    def computed_tokens(self) -> int:
        """Prompt tokens run through the model (the rest came from the cache)."""
        return self.prompt_tokens - self.cached_tokens

    @property
    def compute_s(self) -> float:
        return max(self.prompt_s - self.restore_s, 0.0)

    @property
    def prompt_tok_s(self) -> float | None:
        """Speed of the prompt tokens computed, over the time spent computing them."""
        return _rate(self.computed_tokens, self.compute_s)

    @property
    def gen_tok_s(self) -> float | None:
        return _rate(self.completion_tokens, self.gen_s)

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    def timings(self, load_s: float | None = None) -> dict[str, Any]:
        return {
            "load_s": None if load_s is None else round(load_s, 3),
            "prompt_s": round(self.prompt_s, 3),
            "prompt_cached_tokens": self.cached_tokens,
            "prompt_computed_tokens": self.computed_tokens,
            "cache_restore_s": round(self.restore_s, 3),
            "prompt_compute_s": round(self.compute_s, 3),
            "prompt_tok_s": self.prompt_tok_s,
            "gen_s": round(self.gen_s, 3),
            "gen_tok_s": self.gen_tok_s,
        }
