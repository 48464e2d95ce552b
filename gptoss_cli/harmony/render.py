"""Rendering Harmony conversations to tokens, exactly as openai-harmony does.

Each message is `<|start|>{header}<|message|>{content}{end}`; every piece of
text is encoded on its own (role, `:name`, ` to=recipient`, channel, content
type, each content item), so token boundaries match openai-harmony's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InputError
from .model import (
    Conversation,
    DeveloperContent,
    Message,
    Role,
    SystemContent,
    TextContent,
)
from .typescript import tools_section

START = "<|start|>"
MESSAGE = "<|message|>"
END = "<|end|>"
RETURN = "<|return|>"
CALL = "<|call|>"
CHANNEL = "<|channel|>"
CONSTRAIN = "<|constrain|>"


@dataclass
class RenderConversationConfig:
    auto_drop_analysis: bool = True


@dataclass
class RenderOptions:
    conversation_has_function_tools: bool = False


def _messages(conversation: Conversation | Iterable[Message]) -> list[Message]:
    if isinstance(conversation, Conversation):
        return list(conversation.messages)
    return list(conversation)


def _has_function_tools(messages: Sequence[Message]) -> bool:
    for msg in messages:
        for c in msg.content:
            if isinstance(c, DeveloperContent) and c.tools:
                ns = c.tools.get("functions")
                if ns is not None and ns.tools:
                    return True
    return False


def system_text(sys: SystemContent, options: RenderOptions | None = None) -> str:
    """The text of a system message's content."""
    sections = []
    top = []
    if sys.model_identity is not None:
        top.append(sys.model_identity)
    if sys.knowledge_cutoff is not None:
        top.append(f"Knowledge cutoff: {sys.knowledge_cutoff}")
    if sys.conversation_start_date is not None:
        top.append(f"Current date: {sys.conversation_start_date}")
    if top:
        sections.append("\n".join(top))
    if sys.reasoning_effort is not None:
        sections.append(f"Reasoning: {sys.reasoning_effort.value.lower()}")
    if sys.tools:
        sections.append(tools_section(sys.tools))
    cc = sys.channel_config
    if cc is not None and cc.valid_channels:
        header = f"# Valid channels: {', '.join(cc.valid_channels)}."
        if cc.channel_required:
            header += " Channel must be included for every message."
        if options is not None and options.conversation_has_function_tools:
            header += "\nCalls to these tools must go to the commentary channel: 'functions'."
        sections.append(header)
    return "\n\n".join(sections)


def developer_text(dev: DeveloperContent) -> str:
    """The text of a developer message's content."""
    sections = []
    if dev.instructions is not None:
        sections.append("# Instructions")
        sections.append(dev.instructions)
    if dev.tools:
        sections.append(tools_section(dev.tools))
    return "\n\n".join(sections)


class HarmonyEncoding:
    """Harmony rendering and parsing over a Tokenizer (the o200k_harmony vocabulary)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        try:
            self.start_id = tokenizer.token_id(START)
            self.message_id = tokenizer.token_id(MESSAGE)
            self.end_id = tokenizer.token_id(END)
            self.return_id = tokenizer.token_id(RETURN)
            self.call_id = tokenizer.token_id(CALL)
            self.channel_id = tokenizer.token_id(CHANNEL)
            self.constrain_id = tokenizer.token_id(CONSTRAIN)
        except KeyError as e:
            from ..errors import ModelFileError

            raise ModelFileError(f"the model's vocabulary lacks a Harmony token: {e.args[0]}") from None

    # -- basics -----------------------------------------------------------

    def _text(self, text: str, into: list[int]) -> None:
        into.extend(self.tokenizer.encode(text, allow_special=False))

    def stop_tokens(self) -> list[int]:
        """Tokens that end a message: <|return|>, <|call|>, <|end|>."""
        return sorted({self.return_id, self.call_id, self.end_id})

    def stop_tokens_for_assistant_actions(self) -> list[int]:
        """Tokens that end an assistant turn: <|return|>, <|call|>."""
        return sorted({self.return_id, self.call_id})

    def decode_utf8(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(tokens, errors="strict")

    def decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(tokens)

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        return self.tokenizer.encode(text, allow_special=allow_special)

    # -- one message ------------------------------------------------------

    def render(self, message: Message, render_options: RenderOptions | None = None) -> list[int]:
        out: list[int] = []
        self._render_into(message, out, render_options)
        return out

    def _render_into(self, message: Message, out: list[int], options: RenderOptions | None) -> None:
        out.append(self.start_id)
        role = message.author.role
        if role == Role.TOOL:
            if message.author.name is None:
                raise InputError("invalid conversation: a tool message needs the tool's name (author name)")
            self._text(message.author.name, out)
        else:
            self._text(role.value, out)
            if message.author.name is not None:
                self._text(f":{message.author.name}", out)
        if message.recipient is not None and message.recipient != "all":
            self._text(f" to={message.recipient}", out)
        if message.channel is not None:
            out.append(self.channel_id)
            self._text(message.channel, out)
        if message.content_type is not None:
            ct = message.content_type
            if ct.startswith(CONSTRAIN):
                self._text(" ", out)
                out.append(self.constrain_id)
                rest = ct[len(CONSTRAIN) :]
                if rest:
                    self._text(rest, out)
            else:
                self._text(f" {ct}", out)
        out.append(self.message_id)
        for c in message.content:
            if isinstance(c, TextContent):
                self._text(c.text, out)
            elif isinstance(c, SystemContent):
                if role != Role.SYSTEM:
                    raise InputError(f"invalid conversation: system content may only appear in system messages, found in a {role.value} message")
                self._text(system_text(c, options), out)
            elif isinstance(c, DeveloperContent):
                if role != Role.DEVELOPER:
                    raise InputError(f"invalid conversation: developer content may only appear in developer messages, found in a {role.value} message")
                self._text(developer_text(c), out)
            else:  # pragma: no cover - the model only has these three
                raise InputError(f"invalid conversation: unknown content {c!r}")
        if role == Role.ASSISTANT and message.recipient is not None:
            out.append(self.call_id)
        else:
            out.append(self.end_id)

    # -- conversations ------------------------------------------------------

    def _render_conversation_into(
        self, messages: list[Message], out: list[int], config: RenderConversationConfig | None
    ) -> None:
        if config is None:
            config = RenderConversationConfig()
        options = RenderOptions(conversation_has_function_tools=_has_function_tools(messages))
        last_assistant_is_final = False
        for msg in reversed(messages):
            if msg.author.role == Role.ASSISTANT:
                last_assistant_is_final = msg.channel == "final"
                break
        drop = config.auto_drop_analysis and last_assistant_is_final
        first_final = next((i for i, m in enumerate(messages) if m.channel == "final"), None)
        for i, msg in enumerate(messages):
            if drop and first_final is not None and i < first_final and msg.channel == "analysis":
                continue
            self._render_into(msg, out, options)

    def render_conversation(
        self, conversation: Conversation | Iterable[Message], config: RenderConversationConfig | None = None
    ) -> list[int]:
        out: list[int] = []
        self._render_conversation_into(_messages(conversation), out, config)
        return out

    def render_conversation_for_completion(
        self,
        conversation: Conversation | Iterable[Message],
        next_turn_role: Role | str = Role.ASSISTANT,
        config: RenderConversationConfig | None = None,
    ) -> list[int]:
        from .model import role_from_str

        role = role_from_str(next_turn_role)
        out: list[int] = []
        self._render_conversation_into(_messages(conversation), out, config)
        out.append(self.start_id)
        self._text(role.value, out)
        return out

    def render_conversation_for_training(
        self, conversation: Conversation | Iterable[Message], config: RenderConversationConfig | None = None
    ) -> list[int]:
        messages = _messages(conversation)
        out: list[int] = []
        self._render_conversation_into(messages, out, config)
        if messages:
            last = messages[-1]
            if last.author.role == Role.ASSISTANT and last.channel == "final" and out:
                out[-1] = self.return_id
        return out

    # -- parsing (see parse.py) -------------------------------------------

    def parse_messages_from_completion_tokens(self, tokens: Iterable[int], role: Role | str | None = None) -> list[Message]:
        from .parse import parse_messages_from_completion_tokens

        return parse_messages_from_completion_tokens(self, tokens, role)

    def stream_parser(self, role: Role | str | None = Role.ASSISTANT):
        from .parse import StreamParser

        return StreamParser(self, role)


__all__ = [
    "HarmonyEncoding",
    "RenderConversationConfig",
    "RenderOptions",
    "system_text",
    "developer_text",
]
