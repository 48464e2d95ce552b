"""A chat conversation's state, independent of the terminal (unit-tested with scripted models).

    session = ChatSession(lm.generator(), ChatSettings(reasoning_effort="high"), instructions="Be brief.")
    session.add_user("Hello")
    g = session.start_reply()            # a gptoss_cli.generate.Generation: iterate it for events
    for ev in g: ...
    session.commit(g.result)             # what of the reply joins the conversation
    if g.result.stop_reason == "tool_call":
        session.add_tool_result(g.result.tool_calls[-1], '{"temp": 21}')
        g = session.start_reply()        # the same turn goes on

Harmony rules the session applies:

- The system message carries the reasoning effort (and today's date); `/set
  system` text and function tools go in the developer message.
- A finished reply is stored as its messages; the final message ends in
  `<|end|>` when rendered again (Harmony stores `<|return|>` that way), a tool
  call keeps `<|call|>`.
- Analysis from turns that already reached a final answer is left out of the
  prompt (OpenAI's guidance for gpt-oss: drop earlier chain of thought).
  openai-harmony's own renderer drops only the analysis before the *first*
  final message, so the session filters the rest itself; analysis after the
  last final answer (a turn in the middle of tool calls) stays.
  The full messages stay in `history` and are what /save writes.
- A response format (`--json-schema`, `--json-object`, `--grammar`, `/format`)
  ends the developer message with its `# Response Formats` section and
  constrains each reply's final message; with tools, every call's arguments
  follow the tool's parameters (gptoss_cli.structured). Analysis stays free.
- A tool's result is a message from the tool (author = the tool's name, e.g.
  `functions.get_weather`) to the assistant on the commentary channel.
- After a tool call the turn goes on from the tokens the model actually wrote
  (its call may put ` to=...` after the channel, where a fresh render puts it
  before), so the KV cache is reused and only the tool's message is processed.

A reply cut short (Ctrl-C, the token limit, a full context) keeps what the user
saw of the answer: its final-channel text, stored as a final message. A reply
cut short before any answer text leaves nothing behind (the user's message
stays; /regen asks again). Text that is not valid Harmony is never stored.
"""

from __future__ import annotations

import json
import os
from dataclasses import field, make_dataclass
from pathlib import Path
from typing import Any

from ..atomic_write import write_atomically
from ..errors import GptossError
from ..events import STOP, TOOL_CALL, GenerationResult, ToolCall
from ..generation import Generation, Generator
from ..harmony.model import (
    Author,
    Conversation,
    DeveloperContent,
    Message,
    Role,
    SystemContent,
    TextContent,
    ToolDescription,
    parse_reasoning_effort,
)
from ..prompt import (
    developer_content,
    developer_message,
    drop_answered_analysis,
    load_tools_file,
    read_text_file,
    system_content,
)
from ..options import CHAT, OPTIONS, SET_KEYS, problem, sampling_params

__all__ = ["ChatSettings", "ChatSession", "SettingError", "SETTING_KEYS", "setting_key", "parse_setting"]


class SettingError(GptossError):
    """A /set (or similar) value that cannot be used; str() is the one line to show."""


# What /set changes (the developer instructions live in the session), whether the reasoning
# is shown, and the response format asked for at start: those options of gptoss_cli.options,
# with chat's defaults.
_FORMAT_OPTIONS = ("json_schema", "json_object", "grammar")
_SETTINGS = [
    o for o in OPTIONS
    if (o.set_key is not None and o.name != "system") or o.name == "show_reasoning" or o.name in _FORMAT_OPTIONS
]
ChatSettings = make_dataclass(
    "ChatSettings",
    [(o.name, Any, field(default=o.default_of(CHAT))) for o in _SETTINGS],
    namespace={
        "__doc__": "What /set changes. None: no limit (max_tokens) or a random seed (seed).",
        "sampling_params": lambda self: sampling_params(self),
    },
)

#: /set keys: canonical name -> (aliases, what the value is)
SETTING_KEYS = SET_KEYS
_BY_KEY = {o.set_key: o for o in OPTIONS if o.set_key is not None}
_SAMPLING_KEYS = {"temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed"}  # a new Sampler when changed
_NONE_WORDS = {"none", "off", "random", "unlimited", "null", "-"}


def setting_key(name: str) -> str:
    """The canonical /set key for a name or alias (dashes and case ignored); SettingError if unknown."""
    k = name.strip().lower().replace("-", "_")
    for key, (aliases, _) in SETTING_KEYS.items():
        if k == key or k in aliases:
            return key
    raise SettingError(f"unknown setting {name!r} (known: {', '.join(SETTING_KEYS)})")


def parse_setting(key: str, text: str) -> Any:
    """The value of /set KEY TEXT, checked by the option's own rule; SettingError (one line) when bad."""
    o = _BY_KEY[key]
    text = text.strip()
    if o.type is str and not o.choices:  # free text: nothing clears it
        return text or None
    if not text:
        raise SettingError(f"/set {key} needs a value: {o.set_help}")
    value: Any
    if o.choices:
        value = text.lower()
        why = problem(o.name, text)  # the message quotes what was typed
    elif o.default is None and text.lower() in _NONE_WORDS:
        return None
    else:
        try:
            value = o.type(text)
        except ValueError:
            kind = "an integer" if o.type is int else "a number"
            raise SettingError(f"invalid value for {key}: {text!r} is not {kind} ({o.set_help})") from None
        why = problem(o.name, value)
    if why is not None:
        raise SettingError(f"invalid value for {key}: {why}")
    return value


def _is_final(m: Message) -> bool:
    return m.author.role == Role.ASSISTANT and m.channel == "final"


class ChatSession:
    """The conversation (system, developer, history), the settings, and the model's generator."""

    def __init__(
        self,
        generator: Generator,
        settings: ChatSettings | None = None,
        *,
        instructions: str | None = None,
        tools: list[ToolDescription] | None = None,
        date: str | None = None,
    ):
        self.generator = generator
        self.settings = settings if settings is not None else ChatSettings()
        self._date = date
        self.system: SystemContent | None = system_content(self.settings.reasoning_effort, date)
        self.developer: DeveloperContent | None = developer_content(instructions, tools)
        self.history: list[Message] = []  # user, assistant and tool messages, in order
        from ..structured import format_from_settings

        self.response_format = format_from_settings(self.settings)  # what the final answer must be, or None
        self._plan: Any = None  # the constraint's compiled grammars (None: build at the next reply)
        self._sampler = None
        self.last_result: GenerationResult | None = None
        # (prompt + completion tokens, history length) after a tool call, to continue from
        self._generated: tuple[list[int], int] | None = None
        self._last_prompt: list[int] = []

    # -- the conversation ----------------------------------------------------------

    @property
    def instructions(self) -> str | None:
        return self.developer.instructions if self.developer is not None else None

    @property
    def tools(self) -> list[ToolDescription]:
        if self.developer is None or not self.developer.tools:
            return []
        ns = self.developer.tools.get("functions")
        return list(ns.tools) if ns is not None else []

    def _head(self) -> list[Message]:
        out = []
        if self.system is not None:
            out.append(Message.from_role_and_content(Role.SYSTEM, self.system))
        dev = developer_message(self.developer, self.response_format)
        if dev is not None:
            out.append(dev)
        return out

    def conversation(self) -> Conversation:
        """The whole conversation, every message kept (what /save writes)."""
        return Conversation.from_messages(self._head() + self.history)

    def prompt_messages(self) -> list[Message]:
        """What the model sees: analysis of turns that reached a final answer left out."""
        return self._head() + drop_answered_analysis(self.history)

    def prompt_ids(self) -> list[int]:
        return self.generator.render(Conversation.from_messages(self.prompt_messages()))

    @property
    def turns(self) -> int:
        return sum(1 for m in self.history if m.author.role == Role.USER)

    def pending_call(self) -> ToolCall | None:
        """The tool call the conversation ends with (no result yet), if any."""
        if self.history:
            m = self.history[-1]
            if m.author.role == Role.ASSISTANT and m.recipient not in (None, "all"):
                return ToolCall.from_message(m)
        return None

    # -- turns ------------------------------------------------------------------------------

    def add_user(self, text: str) -> None:
        self._generated = None
        self.history.append(Message.from_role_and_content(Role.USER, text))

    def add_tool_result(self, call: ToolCall, text: str) -> Message:
        """The tool's answer to `call`: author = the tool's name, to the assistant, commentary channel."""
        msg = Message(
            author=Author(Role.TOOL, call.recipient),
            content=[TextContent(text)],
            channel="commentary",
            recipient="assistant",
        )
        self.history.append(msg)
        return msg

    def sampler(self):
        """The sampler shared by the replies (its random state goes on; /set of a sampling key renews it)."""
        if self._sampler is None:
            from ..sampling import Sampler

            self._sampler = Sampler(self.settings.sampling_params())
        return self._sampler

    def _continuation_ids(self) -> list[int] | None:
        """The prompt as the model's own tokens plus the tool results since its call, or None."""
        if self._generated is None:
            return None
        ids, n = self._generated
        new = self.history[n:]
        if len(self.history) < n or not new or any(m.author.role != Role.TOOL for m in new):
            return None
        enc = self.generator.encoding
        out = list(ids)
        for m in new:
            out.extend(enc.render(m))
        out.append(enc.start_id)
        out.extend(enc.encode(Role.ASSISTANT.value))
        return out

    def start_reply(self) -> Generation:
        """Start the assistant's reply to the conversation; GptossError when it does not fit the context."""
        ids = self._continuation_ids()
        if ids is None:
            ids = self.prompt_ids()
        constraint = self._constraint()
        self._generated = None
        self._last_prompt = ids
        return self.generator.generate(ids, self.sampler(), max_tokens=self.settings.max_tokens, constraint=constraint)

    def _constraint(self):
        """A fresh constraint for the next reply (its grammars compiled once per format and tools), or None."""
        if self.response_format is None and not self.tools:
            return None
        if self._plan is None:
            from ..structured import make_plan

            self._plan = make_plan(self.generator.tokenizer, self.response_format, self.tools)
        return self._plan.constraint()

    def set_format(self, spec: str | None) -> str:
        """/format FILE|json|off: a JSON schema file (.json), a grammar file (any other name), any
        JSON object, or none; returns the one-line confirmation. OptionError when the file is unusable."""
        from ..structured import load_format_file

        if spec is None:
            fmt = None
        elif spec.lower() == "json":
            fmt = load_format_file("json_object")
        else:
            fmt = load_format_file("json_schema" if spec.lower().endswith(".json") else "grammar", spec)
        self.response_format = fmt
        self._plan = None
        self._generated = None  # the developer message changes
        return "format: " + (fmt.label if fmt is not None else "free text")

    def commit(self, result: GenerationResult) -> list[Message]:
        """Add what the reply keeps to the history (see the module notes); returns those messages."""
        self.last_result = result
        msgs = [m for m, raw in zip(result.messages, result.raw) if not raw]
        if result.stop_reason not in (STOP, TOOL_CALL):
            finals = [i for i, m in enumerate(msgs) if _is_final(m) and m.text]
            msgs = msgs[: finals[-1] + 1] if finals else []
        elif result.stop_reason == TOOL_CALL and not result.tool_calls:
            msgs = []  # a <|call|> that did not close a call message: nothing usable
        self.history.extend(msgs)
        self._generated = None
        if result.stop_reason == TOOL_CALL and msgs and len(msgs) == len(result.messages) and self._last_prompt:
            self._generated = (list(self._last_prompt) + list(result.tokens), len(self.history))
        return msgs

    def drop_pending_call(self) -> bool:
        """Remove an unanswered tool call at the end (/skip); False when there is none."""
        if self.pending_call() is None:
            return False
        self._generated = None
        self.history.pop()
        return True

    def rewind_last_reply(self) -> bool:
        """Remove everything after the last user message (for /regen); False when there is no user message."""
        for i in range(len(self.history) - 1, -1, -1):
            if self.history[i].author.role == Role.USER:
                self._generated = None
                del self.history[i + 1 :]
                return True
        return False

    def drop_last_user(self) -> None:
        """Undo add_user when the reply could not start."""
        self._generated = None
        if self.history and self.history[-1].author.role == Role.USER:
            self.history.pop()

    def clear(self) -> None:
        """A new conversation with the same settings, instructions and tools (and today's date)."""
        self._generated = None
        self.history = []
        self.system = system_content(self.settings.reasoning_effort, self._date)
        self._sampler = None
        self.last_result = None

    # -- settings ------------------------------------------------------------------------------

    def set(self, name: str, text: str) -> str:
        """/set NAME TEXT: change one setting; returns a one-line confirmation, SettingError when bad."""
        key = setting_key(name)
        value = parse_setting(key, text)
        if key in ("reasoning", "system"):
            self._generated = None  # the head of the prompt changes
        if key == "reasoning":
            self.settings.reasoning_effort = value
            if self.system is None:
                self.system = system_content(value, self._date)
            else:
                self.system.reasoning_effort = parse_reasoning_effort(value)
            return f"reasoning effort: {value}"
        if key == "system":
            self.set_instructions(value)
            return "developer instructions cleared" if value is None else "developer instructions set"
        setattr(self.settings, key, value)
        if key in _SAMPLING_KEYS:
            self._sampler = None
        shown = {"seed": "random", "max_tokens": "no limit"}.get(key) if value is None else value
        return f"{key}: {shown}"

    def set_instructions(self, text: str | None) -> None:
        if self.developer is None:
            self.developer = DeveloperContent.new()
        self.developer.instructions = text or None

    def set_tools(self, tools: list[ToolDescription] | None) -> None:
        self._generated = None
        self._plan = None
        if self.developer is None:
            self.developer = DeveloperContent.new()
        if tools:
            self.developer.with_function_tools(tools)
        elif self.developer.tools:
            self.developer.tools.pop("functions", None)
            if not self.developer.tools:
                self.developer.tools = None

    def load_tools(self, path: str) -> list[ToolDescription]:
        from ..structured import compile_tools

        tools = load_tools_file(path)
        compile_tools(tools)  # parameters llguidance refuses: one line now, not at the next reply
        self.set_tools(tools)
        return tools

    def settings_rows(self) -> list[tuple[str, str]]:
        s = self.settings
        rows = [
            ("reasoning effort", s.reasoning_effort),
            ("reasoning shown", "yes" if s.show_reasoning else "no"),
            ("temperature", f"{s.temperature:g}"),
            ("top_p", f"{s.top_p:g}"),
            ("top_k", f"{s.top_k}" + (" (off)" if s.top_k == 0 else "")),
            ("min_p", f"{s.min_p:g}"),
            ("repeat_penalty", f"{s.repeat_penalty:g}"),
            ("seed", "random" if s.seed is None else str(s.seed)),
            ("max_tokens", "no limit" if s.max_tokens is None else str(s.max_tokens)),
            ("system", _short(self.instructions) if self.instructions else "(none)"),
            ("tools", ", ".join(t.name for t in self.tools) or "(none)"),
            ("format", self.response_format.label if self.response_format is not None else "free text"),
            ("messages", f"{len(self.history)} in {self.turns} turn{'s' if self.turns != 1 else ''}"),
        ]
        return rows

    # -- files ---------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> int:
        """Write the conversation as openai-harmony JSON, atomically (temp file + rename); returns messages written."""
        conv = self.conversation()
        text = json.dumps(conv.to_dict(), indent=2, ensure_ascii=False) + "\n"
        save_text(Path(path), text)
        return len(conv.messages)

    def load(self, path: str | os.PathLike[str]) -> int:
        """Replace the conversation (system, developer and history) with an openai-harmony JSON file."""
        text = read_text_file(path, "conversation file")
        conv = Conversation.from_json(text)
        msgs = list(conv.messages)
        system = developer = None
        if msgs and msgs[0].author.role == Role.SYSTEM and _only(msgs[0], SystemContent):
            system = msgs.pop(0).content[0]
        if msgs and msgs[0].author.role == Role.DEVELOPER and _only(msgs[0], DeveloperContent):
            developer = msgs.pop(0).content[0]
        # render it now: a conversation the model cannot take fails here, not at the next message
        old = (self.system, self.developer, self.history)
        self.system, self.developer, self.history = system, developer, msgs
        try:
            self.prompt_ids()
        except GptossError:
            self.system, self.developer, self.history = old
            raise
        if system is not None and system.reasoning_effort is not None:
            self.settings.reasoning_effort = system.reasoning_effort.value.lower()
        self._sampler = None
        self._generated = None
        self.last_result = None
        return len(conv.messages)


def _only(msg: Message, kind: type) -> bool:
    return len(msg.content) == 1 and isinstance(msg.content[0], kind)


def _short(text: str, n: int = 60) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def save_text(path: Path, text: str) -> None:
    """Replace `path` with text in one step (atomic_write); GptossError when impossible."""
    path = path.expanduser()
    directory = path.parent
    if not directory.is_dir():
        raise GptossError(f"cannot save to {path}: folder {directory} does not exist")
    if path.is_dir():
        raise GptossError(f"cannot save to {path}: it is a folder")
    data = text.encode("utf-8")
    try:
        write_atomically(path, lambda f: f.write(data), durable=True)
    except OSError as e:
        raise GptossError(f"cannot save to {path}: {e.strerror or e}") from None
