"""Building the Harmony conversation for a one-shot prompt: system, developer, user.

Light on purpose (standard library and the Harmony data model only), so the CLI
can check a prompt, a tools file or an option before paying for NumPy.

    conv = build_conversation("Why is the sky blue?", instructions="Answer briefly.",
                              reasoning_effort="high", tools=load_tools_file("tools.json"))

The system message follows openai-harmony's defaults (model identity, knowledge
cutoff 2024-06, the three channels) plus today's date and the reasoning effort,
as OpenAI's gpt-oss reference tools send it. `--system` text and function tools
go in the developer message, where gpt-oss expects instructions; a response
format (`--json-schema`, `--json-object`) ends it with a `# Response Formats`
section, as the Harmony format guide describes (openai-harmony has no field for
it, so it is a text item after the developer content).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import IO, Any, Protocol

from .errors import InputError
from .harmony.model import (
    Conversation,
    DeveloperContent,
    Message,
    ReasoningEffort,
    Role,
    SystemContent,
    TextContent,
    ToolDescription,
    parse_reasoning_effort,
)

__all__ = [
    "build_conversation",
    "system_content",
    "developer_content",
    "developer_message",
    "response_formats_section",
    "today",
    "tools_from_openai",
    "load_tools_file",
    "decode_utf8",
    "read_text_file",
    "gather_prompt",
]

_TOOL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def today() -> str:
    """The local date as YYYY-MM-DD (what the system message's `Current date` carries)."""
    return _dt.date.today().isoformat()


def system_content(reasoning_effort: ReasoningEffort | str = ReasoningEffort.MEDIUM, date: str | None = None) -> SystemContent:
    """openai-harmony's default system content with the reasoning effort and a current date.

    date: 'YYYY-MM-DD'; None means today; '' leaves the date out.
    """
    sc = SystemContent.new().with_reasoning_effort(parse_reasoning_effort(reasoning_effort))
    if date is None:
        date = today()
    if date:
        sc = sc.with_conversation_start_date(date)
    return sc


def developer_content(instructions: str | None = None, tools: list[ToolDescription] | None = None) -> DeveloperContent | None:
    """Developer content with instructions and function tools; None when there is neither."""
    if not instructions and not tools:
        return None
    dc = DeveloperContent.new()
    if instructions:
        dc = dc.with_instructions(instructions)
    if tools:
        dc = dc.with_function_tools(tools)
    return dc


class DescribedFormat(Protocol):
    """What the prompt says about a response format (gptoss_cli.structured.ResponseFormat has it)."""

    name: str
    description: str | None
    schema: dict[str, Any] | None  # None: a grammar, which the prompt does not describe


def response_formats_section(name: str, schema: dict[str, Any], description: str | None = None) -> str:
    """The developer message's `# Response Formats` section (Harmony format guide, structured output):
    the format's name, its description as a `//` comment, then the schema as compact JSON."""
    comment = "".join(f"// {line}\n" for line in description.splitlines()) if description else ""
    body = json.dumps(schema, separators=(",", ":"), ensure_ascii=False)
    return f"# Response Formats\n\n## {name}\n\n{comment}{body}"


def developer_message(
    dev: DeveloperContent | None, response_format: DescribedFormat | None = None
) -> Message | None:
    """The developer message: its content, then the response format's section; None when empty."""
    has_dev = dev is not None and bool(dev.instructions or dev.tools)
    section = None
    if response_format is not None and response_format.schema is not None:
        section = response_formats_section(response_format.name, response_format.schema, response_format.description)
    if section is None:
        return Message.from_role_and_content(Role.DEVELOPER, dev) if has_dev else None
    if not has_dev:
        return Message.from_role_and_content(Role.DEVELOPER, section)
    return Message.from_role_and_contents(Role.DEVELOPER, [dev, TextContent("\n\n" + section)])


def build_conversation(
    user_text: str | None,
    *,
    instructions: str | None = None,
    reasoning_effort: ReasoningEffort | str = ReasoningEffort.MEDIUM,
    tools: list[ToolDescription] | None = None,
    date: str | None = None,
    response_format: DescribedFormat | None = None,
) -> Conversation:
    """system (+ developer) (+ user) messages, ready for render_conversation_for_completion."""
    messages = [Message.from_role_and_content(Role.SYSTEM, system_content(reasoning_effort, date))]
    dev = developer_message(developer_content(instructions, tools), response_format)
    if dev is not None:
        messages.append(dev)
    if user_text is not None:
        messages.append(Message.from_role_and_content(Role.USER, user_text))
    return Conversation.from_messages(messages)


# -- tools --------------------------------------------------------------------------


def drop_answered_analysis(turns: list[Message]) -> list[Message]:
    """The turns as the model should see them again: the analysis of every turn that reached a
    final answer left out (OpenAI's rule for gpt-oss), the analysis after the last final answer
    (a turn still between tool calls) kept. openai-harmony's renderer drops only the analysis
    before the first final message, so chat and serve apply this themselves."""
    last_final = max(
        (i for i, m in enumerate(turns) if m.author.role == Role.ASSISTANT and m.channel == "final"), default=-1
    )
    return [
        m for i, m in enumerate(turns)
        if not (i < last_final and m.author.role == Role.ASSISTANT and m.channel == "analysis")
    ]


def tools_from_openai(data: Any, where: str = "tools") -> list[ToolDescription]:
    """Function tools from OpenAI's tools format.

    Accepts a list (or {"tools": [...]}) whose items are Chat Completions tools
    ({"type": "function", "function": {"name", "description", "parameters"}}),
    Responses API tools ({"type": "function", "name", ...}) or bare function
    objects ({"name", "description", "parameters"}).
    """
    if isinstance(data, dict) and "tools" in data:
        data = data["tools"]
    elif isinstance(data, dict) and ("function" in data or "name" in data):
        data = [data]
    if not isinstance(data, list):
        raise InputError(f"{where}: expected a JSON list of tools in OpenAI's format")
    out: list[ToolDescription] = []
    seen: set[str] = set()
    for i, item in enumerate(data, 1):
        label = f"{where}: tool {i}"
        if not isinstance(item, dict):
            raise InputError(f"{label} is not a JSON object")
        kind = item.get("type", "function")
        if kind != "function":
            raise InputError(f"{label} has type {kind!r}; only function tools are supported")
        fn = item.get("function", item)
        if not isinstance(fn, dict):
            raise InputError(f"{label}: 'function' must be a JSON object")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise InputError(f"{label} has no function name")
        if not _TOOL_NAME.match(name):
            raise InputError(f"{label}: function name {name!r} may hold only letters, digits, '_' and '-'")
        if name in seen:
            raise InputError(f"{where}: function {name!r} is defined twice")
        seen.add(name)
        desc = fn.get("description", "")
        if desc is None:
            desc = ""
        if not isinstance(desc, str):
            raise InputError(f"{label} ({name}): description must be a string")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise InputError(f"{label} ({name}): parameters must be a JSON schema object")
        out.append(ToolDescription.new(name, desc, params))
    return out


def load_tools_file(path: str | Path) -> list[ToolDescription]:
    """Read a JSON file of function tools (OpenAI's format); InputError when unusable."""
    text = read_text_file(path, "tools file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"tools file {path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    tools = tools_from_openai(data, where=f"tools file {path}")
    if not tools:
        raise InputError(f"tools file {path} defines no tools")
    return tools


# -- prompt text ----------------------------------------------------------------------


def decode_utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} is not valid UTF-8 (byte {e.start})") from None


def read_text_file(path: str | Path, what: str) -> str:
    """A UTF-8 text file's contents; InputError naming `what` when missing or not UTF-8."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise InputError(f"{what} is a directory: {path}") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {path}: {e.strerror or e}") from None
    return decode_utf8(data, f"{what} {path}")


def gather_prompt(argument: str | None, file: str | None = None, stdin: IO[bytes] | None = None) -> str:
    """The prompt: the argument, then the file (`-f`), then standard input, joined by a blank line.

    stdin: a binary stream to read to the end (the caller passes it only when
    standard input is not a terminal), or None. `-f -` reads standard input.
    """
    parts: list[str] = []
    if argument:
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates
            raise InputError("the prompt argument is not valid UTF-8") from None
        parts.append(argument)
    if file is not None and file != "-":
        parts.append(read_text_file(file, "prompt file"))
    if stdin is not None:
        text = decode_utf8(stdin.read(), "standard input")
        if text.strip():
            parts.append(text)
    return "\n\n".join(p for p in parts if p)
