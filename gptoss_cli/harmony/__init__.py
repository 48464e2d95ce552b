"""Harmony, the message format of gpt-oss: data model, rendering, parsing, streaming.

Behaves like openai-harmony (the reference, checked token for token in the
tests), over gptoss's own tokenizer read from the model file.

    from gptoss_cli.tokenizer import Tokenizer
    from gptoss_cli.harmony import HarmonyEncoding, Conversation, Message, Role, SystemContent

    enc = HarmonyEncoding(Tokenizer.from_gguf("model.gguf"))   # or load_model(...).encoding
    conv = Conversation.from_messages([
        Message.from_role_and_content(Role.SYSTEM, SystemContent.new()),
        Message.from_role_and_content(Role.USER, "Hello"),
    ])
    prompt = enc.render_conversation_for_completion(conv, Role.ASSISTANT)
    parser = enc.stream_parser(Role.ASSISTANT)
    for token in generated:
        for event in parser.process(token): ...
"""

from .model import (
    Author,
    ChannelConfig,
    Content,
    Conversation,
    DeveloperContent,
    Message,
    ReasoningEffort,
    Role,
    SystemContent,
    TextContent,
    ToolDescription,
    ToolNamespaceConfig,
    parse_reasoning_effort,
)
from .parse import (
    Event,
    MessageEnd,
    MessageStart,
    StreamParser,
    TextDelta,
    parse_messages_from_completion_tokens,
)
from .render import HarmonyEncoding, RenderConversationConfig, RenderOptions
from .typescript import schema_to_typescript, tools_section

__all__ = [
    "Author",
    "ChannelConfig",
    "Content",
    "Conversation",
    "DeveloperContent",
    "Message",
    "ReasoningEffort",
    "Role",
    "SystemContent",
    "TextContent",
    "ToolDescription",
    "ToolNamespaceConfig",
    "parse_reasoning_effort",
    "HarmonyEncoding",
    "RenderConversationConfig",
    "RenderOptions",
    "StreamParser",
    "Event",
    "MessageStart",
    "TextDelta",
    "MessageEnd",
    "parse_messages_from_completion_tokens",
    "schema_to_typescript",
    "tools_section",
]
