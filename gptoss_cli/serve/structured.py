"""Structured output for the server: a request's response format and tools become one constraint.

Chat Completions' `response_format` and the Responses API's `text.format` are
checked here (gptoss_cli.structured does the work), and every refusal (a bad
schema, an unknown type, a strict tool whose schema llguidance refuses) is a
400 naming the field, never a 500. With tools declared the constraint is
always built, so a call's arguments always parse and name a declared tool.
The constraint follows one generation; a job carries it to the scheduler.
"""

from __future__ import annotations

from typing import Any

from ..errors import OptionError
from ..structured import ResponseFormat, constraint_for, format_from_openai
from .fields import bad_param

__all__ = ["parse_format", "request_constraint", "format_echo", "warm_up"]


def parse_format(value: Any, param: str) -> ResponseFormat | None:
    """The format a request asks for (None: plain text); 400 naming `param` when it is unusable."""
    try:
        return format_from_openai(value, param)
    except OptionError as e:
        raise bad_param(param, _one_line(str(e))) from None


def request_constraint(fmt: ResponseFormat | None, tools: list[Any] | None, tokenizer: Any) -> Any:
    """A fresh constraint for one generation (None when nothing is constrained); 400 on `tools`
    when a strict tool's parameter schema is refused (the format was checked by parse_format)."""
    try:
        return constraint_for(fmt, tools or None, tokenizer)
    except OptionError as e:
        raise bad_param("tools", _one_line(str(e))) from None


def format_echo(value: Any) -> dict[str, Any]:
    """The `text.format` a response object repeats: the request's, else plain text."""
    return value if isinstance(value, dict) else {"type": "text"}


def warm_up(tokenizer: Any) -> None:
    """Index the vocabulary for llguidance now (1.5-2.7 s, once per process), so no request pays it."""
    from ..structured.vocabulary import ll_tokenizer

    ll_tokenizer(tokenizer)


def _one_line(message: str) -> str:
    return " ".join(message.split())
