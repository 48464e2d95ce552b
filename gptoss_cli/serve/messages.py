"""OpenAI chat messages to the Harmony conversation gpt-oss was trained on.

- system and developer messages become the developer message's
  instructions (Harmony's own system message carries the model identity,
  the date and the reasoning effort, as openai-harmony renders it);
- an assistant message's `reasoning_content` (or `reasoning`) becomes its
  analysis message, its `content` the final answer, or a commentary
  preamble when it also has `tool_calls`; each call is a commentary message
  to `functions.NAME` whose text is the arguments, ended by `<|call|>`;
- a `tool` message answers the call its `tool_call_id` names: a message from
  `functions.NAME` to the assistant on the commentary channel;
- analysis of turns that reached a final answer is dropped (OpenAI's rule
  for gpt-oss); analysis after the last final answer (a turn still between
  tool calls) is kept, so the model sees its own reasoning across calls.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import InputError
from ..harmony.model import Author, Message, Role, TextContent, ToolDescription
from ..prompt import developer_content, developer_message, drop_answered_analysis, system_content, tools_from_openai
from .fields import Fields, bad_param

__all__ = ["chat_to_harmony", "content_text", "parse_tools", "call_message", "tool_message",
           "assistant_to_harmony", "head_messages"]

_TEXT_PARTS = ("text", "input_text", "output_text")


def content_text(value: Any, param: str, allow_null: bool = False) -> str | None:
    """A message's content: a string, or an array of text parts joined; images and audio are refused."""
    if value is None:
        if allow_null:
            return None
        raise bad_param(param, f"'{param}' is required", "missing_required_parameter")
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise bad_param(param, f"'{param}' must be a string or an array of content parts", "invalid_type")
    texts = []
    for i, part in enumerate(value):
        p = Fields(part, f"{param}[{i}].")
        kind = p.str("type", "text")
        if kind not in _TEXT_PARTS:
            raise bad_param(f"{param}[{i}].type", f"content parts of type {kind!r} are not supported (text only)")
        text = p.str("text")
        if text is None:
            raise bad_param(f"{param}[{i}].text", f"'{param}[{i}].text' is required", "missing_required_parameter")
        texts.append(text)
    return "".join(texts)


def parse_tools(value: Any, param: str = "tools") -> list[ToolDescription]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise bad_param(param, f"'{param}' must be an array", "invalid_type")
    try:
        return tools_from_openai(value, where=param)
    except InputError as e:
        raise bad_param(param, str(e)) from None


def call_message(name: str, arguments: str) -> Message:
    """An assistant's function call, as gpt-oss writes it (commentary, `<|constrain|>json`)."""
    return Message(
        author=Author(Role.ASSISTANT),
        content=[TextContent(arguments)],
        channel="commentary",
        recipient=f"functions.{name}",
        content_type="<|constrain|>json",
    )


def tool_message(name: str, text: str) -> Message:
    """A tool's result: from functions.NAME to the assistant, on the commentary channel."""
    return Message(
        author=Author(Role.TOOL, f"functions.{name}"),
        content=[TextContent(text)],
        channel="commentary",
        recipient="assistant",
    )


def assistant_to_harmony(raw: Any, param: str = "message", call_names: dict[str, str] | None = None) -> list[Message]:
    """An assistant message's Harmony messages: analysis, then answer or preamble, then its calls."""
    m = raw if isinstance(raw, Fields) else Fields(raw, param + ".")
    call_names = {} if call_names is None else call_names
    out: list[Message] = []
    reasoning = m.str("reasoning_content") if m.has("reasoning_content") else m.str("reasoning")
    if reasoning:
        out.append(Message(author=Author(Role.ASSISTANT), content=[TextContent(reasoning)], channel="analysis"))
    text = content_text(m.raw("content"), f"{param}.content", allow_null=True)
    calls = m.list("tool_calls") or []
    if text:
        out.append(Message(author=Author(Role.ASSISTANT), content=[TextContent(text)],
                           channel="commentary" if calls else "final"))
    for j, raw in enumerate(calls):
        c = Fields(raw, f"{param}.tool_calls[{j}].")
        fn = c.sub("function")
        if fn is None:
            raise bad_param(f"{param}.tool_calls[{j}].function", "a tool call needs a 'function' object",
                            "missing_required_parameter")
        name = fn.str("name")
        if not name:
            raise bad_param(f"{param}.tool_calls[{j}].function.name", "a tool call needs a function name",
                            "missing_required_parameter")
        args = fn.raw("arguments")
        if args is None:
            args = "{}"
        elif not isinstance(args, str):  # some clients send the object itself
            args = json.dumps(args, ensure_ascii=False)
        call_id = c.str("id")
        if call_id:
            call_names[call_id] = name
        out.append(call_message(name, args))
    return out


def head_messages(
    reasoning_effort: str, instructions: list[str], tools: list[ToolDescription] | None,
    response_format: Any = None, date: str | None = None,
) -> list[Message]:
    """The system message, and the developer message (instructions, tools, and the response format's
    `# Response Formats` section, as `gptoss run --json-schema` renders it) when it has anything."""
    head = [Message.from_role_and_content(Role.SYSTEM, system_content(reasoning_effort, date))]
    dev = developer_message(developer_content("\n\n".join(t for t in instructions if t) or None, tools or None),
                            response_format)
    return head + ([dev] if dev is not None else [])


def chat_to_harmony(
    messages: Any,
    tools: list[ToolDescription],
    reasoning_effort: str,
    date: str | None = None,
    response_format: Any = None,
) -> list[Message]:
    """The Harmony messages (system, developer, then the turns) of a Chat Completions request."""
    if not isinstance(messages, list) or not messages:
        raise bad_param("messages", "'messages' must be a non-empty array", "invalid_type")
    instructions: list[str] = []
    turns: list[Message] = []
    call_names: dict[str, str] = {}
    for i, raw in enumerate(messages):
        param = f"messages[{i}]"
        m = Fields(raw, param + ".")
        role = m.str("role")
        if role is None:
            raise bad_param(f"{param}.role", f"'{param}.role' is required", "missing_required_parameter")
        if role in ("system", "developer"):
            text = content_text(m.raw("content"), f"{param}.content")
            if text:
                instructions.append(text)
        elif role == "user":
            turns.append(Message.from_role_and_content(Role.USER, content_text(m.raw("content"), f"{param}.content")))
        elif role == "assistant":
            turns.extend(assistant_to_harmony(m, param, call_names))
        elif role in ("tool", "function"):
            call_id = m.str("tool_call_id")
            name = call_names.get(call_id) if call_id else None
            if name is None:
                name = m.str("name")
            if not name:
                raise bad_param(f"{param}.tool_call_id",
                                f"'{param}.tool_call_id' does not match a tool call of an earlier assistant message")
            text = content_text(m.raw("content"), f"{param}.content")
            turns.append(tool_message(name, text or ""))
        else:
            raise bad_param(f"{param}.role", f"unknown role {role!r} (system, developer, user, assistant or tool)")
    return head_messages(reasoning_effort, instructions, tools, response_format, date) + drop_answered_analysis(turns)
