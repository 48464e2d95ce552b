"""The grammar of an assistant message's header, and reading the header once it is written.

A header is constrained so that a tool call can only name a declared tool and
always announces JSON arguments (`<|constrain|>json`), and so that a turn with
a response format cannot wander into undeclared recipients. The channel and
recipient positions follow what gpt-oss writes (the Harmony guide: the
recipient may stand before or after the channel):

    <|channel|>analysis<|message|>
    <|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>
     to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Sequence

__all__ = ["header_grammar", "Header", "read_header", "CHANNELS"]

CHANNELS = ("analysis", "commentary", "final")


def header_grammar(tools: Sequence[str], after_end: bool) -> str:
    """Lark (llguidance) for one header; after_end: the header of a later message, which starts
    with `<|start|>assistant` (the first one follows the prompt's)."""
    lines = [
        "start: " + ('<|start|> "assistant" ' if after_end else "") + "body",
        "body: plain" + (" | call" if tools else ""),
        "plain: <|channel|> channel <|message|>",
        "channel: " + " | ".join(json.dumps(c) for c in CHANNELS),
    ]
    if tools:
        lines += [
            'call: <|channel|> "commentary" " to=" tool json_args'
            ' | " to=" tool <|channel|> "commentary" json_args',
            'json_args: " "? <|constrain|> "json" <|message|>',
            "tool: " + " | ".join(json.dumps(f"functions.{t}") for t in tools),
        ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Header:
    channel: str | None
    recipient: str | None  # e.g. "functions.get_weather"


_RECIPIENT = re.compile(r" to=([^\s<]+)")
_CHANNEL = re.compile(r"<\|channel\|>([^\s<]+)")


def read_header(text: str) -> Header:
    """Channel and recipient of a header's text (special tokens spelled out)."""
    c = _CHANNEL.search(text)
    r = _RECIPIENT.search(text)
    return Header(c.group(1) if c else None, r.group(1) if r else None)
