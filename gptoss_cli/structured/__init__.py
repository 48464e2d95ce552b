"""Structured output that respects Harmony: JSON schemas and grammars on the final channel and tool arguments.

    fmt = load_format_file("json_schema", "person.json")        # OptionError (exit 2) when unusable
    plan = make_plan(lm.tokenizer, fmt, tools)                   # None when nothing is constrained
    g = gen.generate(prompt_ids, sampling, constraint=plan.constraint())

The server calls `constraint_for(response_format, tools, tokenizer)` with a
request's OpenAI objects. The masks come from llguidance (see README,
Dependencies); the analysis channel is never constrained.
"""

from __future__ import annotations

from typing import Any, Sequence

from .constraint import DONE, FREE, HEADER, VALUE, HarmonyConstraint, StructuredPlan, compile_tools, make_plan
from .formats import ResponseFormat, format_from_openai, format_from_settings, load_format_file

__all__ = [
    "ResponseFormat",
    "StructuredPlan",
    "HarmonyConstraint",
    "load_format_file",
    "format_from_openai",
    "format_from_settings",
    "make_plan",
    "compile_tools",
    "constraint_for",
    "HEADER",
    "FREE",
    "VALUE",
    "DONE",
]


def _openai_tools(tools: Sequence[Any]) -> tuple[list[Any], list[str]]:
    """ToolDescriptions of OpenAI tools (or ToolDescriptions as they are), and the names marked strict."""
    from ..harmony.model import ToolDescription
    from ..prompt import tools_from_openai

    if all(isinstance(t, ToolDescription) for t in tools):
        return list(tools), []
    described = tools_from_openai(list(tools), where="tools")
    strict = []
    for item in tools:
        fn = item.get("function", item) if isinstance(item, dict) else {}
        if isinstance(fn, dict) and (fn.get("strict") is True or item.get("strict") is True):
            strict.append(fn.get("name"))
    return described, strict


def constraint_for(response_format: Any, tools: Sequence[Any] | None, tokenizer: Any) -> HarmonyConstraint | None:
    """A fresh constraint for one request, or None when it constrains nothing.

    response_format: Chat Completions' `response_format`, the Responses API's `text.format`
    (`{"type": "text" | "json_object" | "json_schema", ...}`), a ResponseFormat, or None.
    tools: OpenAI function tools (`strict: true` ones are compiled strictly: an
    unsupported keyword is refused) or ToolDescriptions. Raises OptionError (an
    InputError: a 400 for the server) with one line naming what is wrong.
    """
    fmt = response_format if isinstance(response_format, ResponseFormat) else format_from_openai(response_format)
    described, strict = _openai_tools(tools) if tools else ([], [])
    plan = make_plan(tokenizer, fmt, described, strict)
    return plan.constraint() if plan is not None else None
