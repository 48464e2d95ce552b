"""An agent loop's next request continues from the tokens the model actually wrote.

gpt-oss writes a call as `<|channel|>commentary to=functions.f <|constrain|>json`;
rendering the same call from the client's `tool_calls` puts ` to=functions.f`
before the channel. The KV cache holds the model's version, so a prompt
rendered afresh would share only the tokens before the call and recompute
the rest. After a reply that ends in tool calls this records
canonical render of (conversation + that reply) -> the tokens the cache holds
(prompt + completion); a later prompt whose render begins with a recorded
render gets that prefix replaced by the recorded tokens, so its slot
computes only the new messages (the tool results). The chat REPL does the
same (gptoss_cli.chat.session). Only replies the response carries back
without loss are recorded: every message on the analysis channel, a
preamble, or a call to a known tool.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ..harmony.model import Conversation, Role
from .output import tool_name

__all__ = ["Continuations", "reply_is_lossless"]

MAX_ENTRIES = 64
MAX_TOKENS = 4_000_000  # all entries together (a few MB of ints per long agent loop)


def reply_is_lossless(result: Any, tools: list[str]) -> bool:
    """Whether the reply's messages are all ones the response gives back unchanged (see the module notes)."""
    if not result.tool_calls or len(result.messages) != len(result.raw) or any(result.raw):
        return False
    for m in result.messages:
        if m.author.role != Role.ASSISTANT:
            return False
        if m.recipient in (None, "all"):
            if m.channel not in ("analysis", "commentary"):
                return False
        elif tool_name(m.recipient, tools) is None:
            return False
    return True


class Continuations:
    """canonical token prefix -> the model's own tokens for it, least recently used dropped first."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_tokens: int = MAX_TOKENS) -> None:
        self._entries: OrderedDict[tuple[int, ...], list[int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_tokens = max_tokens
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, canonical: list[int], actual: list[int]) -> None:
        key = tuple(canonical)
        if key in self._entries:
            self._tokens -= len(key) + len(self._entries.pop(key))
        self._entries[key] = list(actual)
        self._tokens += len(key) + len(actual)
        while self._entries and (len(self._entries) > self._max_entries or self._tokens > self._max_tokens):
            k, v = self._entries.popitem(last=False)
            self._tokens -= len(k) + len(v)

    def continue_prompt(self, canonical: list[int]) -> list[int]:
        """`canonical` with its longest recorded prefix replaced by the model's own tokens."""
        best: tuple[int, ...] | None = None
        n = len(canonical)
        for key in self._entries:
            k = len(key)
            if k < n and (best is None or k > len(best)) and tuple(canonical[:k]) == key:
                best = key
        if best is None:
            return list(canonical)
        self._entries.move_to_end(best)
        return self._entries[best] + list(canonical[len(best) :])

    def record(self, state: Any, req: Any, result: Any, mapper: Any) -> None:
        """After a reply: remember (conversation + reply as the client returns it) -> prompt + completion."""
        if result.stop_reason != "tool_call" or mapper.stopped or not reply_is_lossless(result, req.tools):
            return
        reply = state.reply_messages(mapper)
        conv = Conversation.from_messages(list(req.messages) + reply)
        canonical = state.encoding.render_conversation(conv)
        self.add(canonical, list(req.prompt) + list(result.tokens))


