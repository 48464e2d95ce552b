"""Harmony data model: conversations, messages, authors, contents.

JSON in and out follows openai-harmony's Python package: `Message.to_dict()`
and `Conversation.to_json()` give exactly what openai-harmony's methods of the
same name give, and `from_dict` / `from_json` accept what they accept (plus the
Rust side's shorthand of a plain string for a single text content). Missing
SystemContent fields take openai-harmony's defaults; an explicit `null` clears
a field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

from ..errors import InputError

DEFAULT_MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
DEFAULT_KNOWLEDGE_CUTOFF = "2024-06"
DEFAULT_CHANNELS = ("analysis", "commentary", "final")


class Role(str, Enum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    DEVELOPER = "developer"
    TOOL = "tool"

    def __str__(self) -> str:
        return self.value


_ROLES = {r.value: r for r in Role}


def role_from_str(value: Any) -> Role:
    if isinstance(value, Role):
        return value
    r = _ROLES.get(value) if isinstance(value, str) else None
    if r is None:
        raise InputError(f"invalid conversation: unknown role {value!r}")
    return r


class ReasoningEffort(str, Enum):
    LOW = "Low"
    MEDIUM = "Medium"
    HIGH = "High"

    def __str__(self) -> str:
        return self.value


_EFFORTS = {e.value: e for e in ReasoningEffort}


def _bad(what: str) -> InputError:
    return InputError(f"invalid conversation: {what}")


def _opt_str(raw: dict, key: str, default: Any = None) -> Any:
    if key not in raw:
        return default
    v = raw[key]
    if v is not None and not isinstance(v, str):
        raise _bad(f"{key} must be a string or null, got {json.dumps(v)[:60]}")
    return v


def _req_str(raw: dict, key: str, where: str) -> str:
    if key not in raw:
        raise _bad(f"{where} needs a {key!r} field")
    v = raw[key]
    if not isinstance(v, str):
        raise _bad(f"{where}.{key} must be a string")
    return v


def _need_dict(raw: Any, where: str) -> dict:
    if not isinstance(raw, dict):
        raise _bad(f"{where} must be a JSON object")
    return raw


@dataclass
class Author:
    role: Role
    name: str | None = None

    @classmethod
    def new(cls, role: Role, name: str) -> "Author":
        return cls(role=role, name=name)


@dataclass
class TextContent:
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass
class ToolDescription:
    name: str
    description: str
    parameters: dict | None = None

    @classmethod
    def new(cls, name: str, description: str, parameters: dict | None = None) -> "ToolDescription":
        return cls(name=name, description=description, parameters=parameters)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.parameters is not None:
            out["parameters"] = self.parameters
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> "ToolDescription":
        raw = _need_dict(raw, "a tool")
        params = raw.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise _bad("tool parameters must be a JSON object (a JSON schema) or null")
        return cls(_req_str(raw, "name", "a tool"), _req_str(raw, "description", "a tool"), params)


@dataclass
class ToolNamespaceConfig:
    name: str
    description: str | None = None
    tools: list[ToolDescription] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        out["tools"] = [t.to_dict() for t in self.tools]
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> "ToolNamespaceConfig":
        raw = _need_dict(raw, "a tool namespace")
        tools = raw.get("tools")
        if "tools" not in raw or not isinstance(tools, list):
            raise _bad("a tool namespace needs a 'tools' list")
        return cls(
            _req_str(raw, "name", "a tool namespace"),
            _opt_str(raw, "description"),
            [ToolDescription.from_dict(t) for t in tools],
        )


def _tools_from_dict(raw: Any) -> dict[str, ToolNamespaceConfig] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _bad("tools must be an object of tool namespaces")
    return {k: ToolNamespaceConfig.from_dict(v) for k, v in raw.items()}


@dataclass
class ChannelConfig:
    valid_channels: list[str]
    channel_required: bool

    @classmethod
    def require_channels(cls, channels: list[str]) -> "ChannelConfig":
        return cls(valid_channels=list(channels), channel_required=True)

    def to_dict(self) -> dict[str, Any]:
        return {"valid_channels": list(self.valid_channels), "channel_required": self.channel_required}

    @classmethod
    def from_dict(cls, raw: Any) -> "ChannelConfig":
        raw = _need_dict(raw, "channel_config")
        ch = raw.get("valid_channels")
        if not isinstance(ch, list) or not all(isinstance(c, str) for c in ch):
            raise _bad("channel_config.valid_channels must be a list of strings")
        req = raw.get("channel_required")
        if not isinstance(req, bool):
            raise _bad("channel_config.channel_required must be true or false")
        return cls(list(ch), req)


def _default_channel_config() -> ChannelConfig:
    return ChannelConfig.require_channels(list(DEFAULT_CHANNELS))


@dataclass
class SystemContent:
    model_identity: str | None = DEFAULT_MODEL_IDENTITY
    reasoning_effort: ReasoningEffort | None = ReasoningEffort.MEDIUM
    conversation_start_date: str | None = None
    knowledge_cutoff: str | None = DEFAULT_KNOWLEDGE_CUTOFF
    channel_config: ChannelConfig | None = field(default_factory=_default_channel_config)
    tools: dict[str, ToolNamespaceConfig] | None = None

    @classmethod
    def new(cls) -> "SystemContent":
        return cls()

    def with_model_identity(self, model_identity: str) -> "SystemContent":
        self.model_identity = model_identity
        return self

    def with_reasoning_effort(self, effort: ReasoningEffort | str) -> "SystemContent":
        self.reasoning_effort = parse_reasoning_effort(effort)
        return self

    def with_conversation_start_date(self, date: str) -> "SystemContent":
        self.conversation_start_date = date
        return self

    def with_knowledge_cutoff(self, cutoff: str) -> "SystemContent":
        self.knowledge_cutoff = cutoff
        return self

    def with_channel_config(self, cfg: ChannelConfig) -> "SystemContent":
        self.channel_config = cfg
        return self

    def with_required_channels(self, channels: list[str]) -> "SystemContent":
        self.channel_config = ChannelConfig.require_channels(channels)
        return self

    def with_tools(self, ns: ToolNamespaceConfig) -> "SystemContent":
        if self.tools is None:
            self.tools = {}
        self.tools[ns.name] = ns
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.model_identity is not None:
            out["model_identity"] = self.model_identity
        if self.reasoning_effort is not None:
            out["reasoning_effort"] = self.reasoning_effort.value
        if self.conversation_start_date is not None:
            out["conversation_start_date"] = self.conversation_start_date
        if self.knowledge_cutoff is not None:
            out["knowledge_cutoff"] = self.knowledge_cutoff
        if self.channel_config is not None:
            out["channel_config"] = self.channel_config.to_dict()
        if self.tools is not None:
            out["tools"] = {k: v.to_dict() for k, v in self.tools.items()}
        out["type"] = "system_content"
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> "SystemContent":
        raw = _need_dict(raw, "system content")
        sc = cls()
        sc.model_identity = _opt_str(raw, "model_identity", sc.model_identity)
        if "reasoning_effort" in raw:
            v = raw["reasoning_effort"]
            sc.reasoning_effort = None if v is None else _effort_strict(v)
        sc.conversation_start_date = _opt_str(raw, "conversation_start_date")
        sc.knowledge_cutoff = _opt_str(raw, "knowledge_cutoff", sc.knowledge_cutoff)
        if "channel_config" in raw:
            v = raw["channel_config"]
            sc.channel_config = None if v is None else ChannelConfig.from_dict(v)
        sc.tools = _tools_from_dict(raw.get("tools"))
        return sc


def _effort_strict(v: Any) -> ReasoningEffort:
    e = _EFFORTS.get(v) if isinstance(v, str) else None
    if e is None:
        raise _bad(f"reasoning_effort must be 'Low', 'Medium' or 'High', got {json.dumps(v)}")
    return e


def parse_reasoning_effort(v: ReasoningEffort | str) -> ReasoningEffort:
    """'low' / 'Low' / ReasoningEffort.LOW -> ReasoningEffort.LOW (for options; JSON is strict)."""
    if isinstance(v, ReasoningEffort):
        return v
    if isinstance(v, str):
        e = _EFFORTS.get(v.strip().capitalize())
        if e is not None:
            return e
    raise InputError(f"reasoning effort must be low, medium or high, got {v!r}")


@dataclass
class DeveloperContent:
    instructions: str | None = None
    tools: dict[str, ToolNamespaceConfig] | None = None

    @classmethod
    def new(cls) -> "DeveloperContent":
        return cls()

    def with_instructions(self, instructions: str) -> "DeveloperContent":
        self.instructions = instructions
        return self

    def with_tools(self, ns: ToolNamespaceConfig) -> "DeveloperContent":
        if self.tools is None:
            self.tools = {}
        self.tools[ns.name] = ns
        return self

    def with_function_tools(self, tools: list[ToolDescription]) -> "DeveloperContent":
        return self.with_tools(ToolNamespaceConfig(name="functions", description=None, tools=list(tools)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.instructions is not None:
            out["instructions"] = self.instructions
        if self.tools is not None:
            out["tools"] = {k: v.to_dict() for k, v in self.tools.items()}
        out["type"] = "developer_content"
        return out

    @classmethod
    def from_dict(cls, raw: Any) -> "DeveloperContent":
        raw = _need_dict(raw, "developer content")
        return cls(_opt_str(raw, "instructions"), _tools_from_dict(raw.get("tools")))


Content = Union[TextContent, SystemContent, DeveloperContent]


def content_from_dict(raw: Any) -> Content:
    raw = _need_dict(raw, "a content item")
    kind = raw.get("type")
    if kind == "text":
        return TextContent(_req_str(raw, "text", "a text content"))
    if kind == "system_content":
        return SystemContent.from_dict(raw)
    if kind == "developer_content":
        return DeveloperContent.from_dict(raw)
    raise _bad(f"unknown content type {kind!r} (expected text, system_content or developer_content)")


@dataclass
class Message:
    author: Author
    content: list[Content] = field(default_factory=list)
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None

    # -- constructors mirroring openai-harmony --------------------------

    @classmethod
    def from_author_and_content(cls, author: Author, content: str | Content) -> "Message":
        if isinstance(content, str):
            content = TextContent(content)
        return cls(author=author, content=[content])

    @classmethod
    def from_role_and_content(cls, role: Role, content: str | Content) -> "Message":
        return cls.from_author_and_content(Author(role=role), content)

    @classmethod
    def from_role_and_contents(cls, role: Role, contents: list[Content]) -> "Message":
        return cls(author=Author(role=role), content=list(contents))

    def adding_content(self, content: str | Content) -> "Message":
        self.content.append(TextContent(content) if isinstance(content, str) else content)
        return self

    def with_channel(self, channel: str) -> "Message":
        self.channel = channel
        return self

    def with_recipient(self, recipient: str) -> "Message":
        self.recipient = recipient
        return self

    def with_content_type(self, content_type: str) -> "Message":
        self.content_type = content_type
        return self

    # -- convenience ----------------------------------------------------

    @property
    def text(self) -> str:
        """Concatenated text of the TextContent items."""
        return "".join(c.text for c in self.content if isinstance(c, TextContent))

    # -- JSON -------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "role": self.author.role.value,
            "name": self.author.name,
            "content": [c.to_dict() for c in self.content],
        }
        if self.channel is not None:
            out["channel"] = self.channel
        if self.recipient is not None:
            out["recipient"] = self.recipient
        if self.content_type is not None:
            out["content_type"] = self.content_type
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> "Message":
        data = _need_dict(data, "a message")
        if "role" not in data:
            raise _bad("a message needs a 'role'")
        role = role_from_str(data["role"])
        name = _opt_str(data, "name")
        if "content" not in data:
            raise _bad("a message needs a 'content'")
        raw_content = data["content"]
        if isinstance(raw_content, str):
            contents: list[Content] = [TextContent(raw_content)]
        elif isinstance(raw_content, list):
            contents = [content_from_dict(c) for c in raw_content]
        else:
            raise _bad("message content must be a string or a list of content items")
        return cls(
            author=Author(role=role, name=name),
            content=contents,
            channel=_opt_str(data, "channel"),
            recipient=_opt_str(data, "recipient"),
            content_type=_opt_str(data, "content_type"),
        )


@dataclass
class Conversation:
    messages: list[Message] = field(default_factory=list)

    @classmethod
    def from_messages(cls, messages: list[Message]) -> "Conversation":
        return cls(messages=list(messages))

    def __iter__(self):
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    def to_dict(self) -> dict[str, Any]:
        return {"messages": [m.to_dict() for m in self.messages]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> "Conversation":
        if isinstance(data, list):  # a bare list of messages is accepted too
            msgs = data
        else:
            data = _need_dict(data, "a conversation")
            msgs = data.get("messages")
            if not isinstance(msgs, list):
                raise _bad("a conversation needs a 'messages' list")
        return cls(messages=[Message.from_dict(m) for m in msgs])

    @classmethod
    def from_json(cls, payload: str | bytes) -> "Conversation":
        try:
            data = json.loads(payload)
        except UnicodeDecodeError:
            raise InputError("conversation file is not valid UTF-8") from None
        except json.JSONDecodeError as e:
            raise InputError(f"conversation is not valid JSON: {e}") from None
        return cls.from_dict(data)


__all__ = [
    "Role",
    "ReasoningEffort",
    "Author",
    "TextContent",
    "ToolDescription",
    "ToolNamespaceConfig",
    "ChannelConfig",
    "SystemContent",
    "DeveloperContent",
    "Content",
    "Message",
    "Conversation",
    "content_from_dict",
    "role_from_str",
    "parse_reasoning_effort",
]
