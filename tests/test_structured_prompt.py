"""The developer message's `# Response Formats` section, and that its tokens are openai-harmony's."""

from __future__ import annotations

import openai_harmony as oh

from gptoss_cli.harmony.model import Role
from gptoss_cli.prompt import build_conversation, response_formats_section
from gptoss_cli.structured.formats import grammar_format, json_object_format, json_schema_format

SCHEMA = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "string"}}}}


def _developer_text(conv) -> str | None:
    from gptoss_cli.harmony.render import developer_text

    for m in conv.messages:
        if m.author.role == Role.DEVELOPER:
            return "".join(c.text if hasattr(c, "text") else developer_text(c) for c in m.content)
    return None


def test_section_follows_the_harmony_guide():
    assert response_formats_section("shopping_list", SCHEMA, "entries on the list") == (
        "# Response Formats\n\n## shopping_list\n\n// entries on the list\n"
        '{"type":"object","properties":{"items":{"type":"array","items":{"type":"string"}}}}'
    )
    assert response_formats_section("x", {"type": "object"}) == '# Response Formats\n\n## x\n\n{"type":"object"}'


def test_the_section_ends_the_developer_message():
    fmt = json_schema_format(SCHEMA, "s", "shopping_list", "entries on the list")
    conv = build_conversation("I need coffee", instructions="Be helpful.", response_format=fmt, date="")
    text = _developer_text(conv)
    assert text.startswith("# Instructions\n\nBe helpful.\n\n# Response Formats\n\n## shopping_list\n\n// entries")
    alone = _developer_text(build_conversation("hi", response_format=json_object_format(), date=""))
    assert alone == '# Response Formats\n\n## json_object\n\n// any JSON object\n{"type":"object"}'
    # a grammar is not described; no format leaves the developer message as it was
    assert _developer_text(build_conversation("hi", response_format=grammar_format('start: "a"', "g"), date="")) is None
    assert _developer_text(build_conversation("hi", instructions="x", date="")) == "# Instructions\n\nx"


def test_tokens_match_openai_harmony_rendering_the_same_contents(harmony_encoding, harmony_oracle):
    from gptoss_cli.prompt import tools_from_openai

    tools = tools_from_openai([{"name": "f", "description": "F.", "parameters": {"type": "object"}}])
    fmt = json_schema_format(SCHEMA, "s", "shopping_list", "entries on the list")
    conv = build_conversation("I need coffee", instructions="Be helpful.", tools=tools, response_format=fmt,
                              date="2025-06-28")
    dev = conv.messages[1]
    section = dev.content[1].text
    ref_dev = oh.Message.from_role_and_contents(oh.Role.DEVELOPER, [
        oh.DeveloperContent.new().with_instructions("Be helpful.").with_function_tools(
            [oh.ToolDescription.new("f", "F.", parameters={"type": "object"})]),
        oh.TextContent(text=section),
    ])
    system = oh.SystemContent.new().with_reasoning_effort(oh.ReasoningEffort.MEDIUM).with_conversation_start_date(
        "2025-06-28")
    ref = oh.Conversation.from_messages([
        oh.Message.from_role_and_content(oh.Role.SYSTEM, system), ref_dev,
        oh.Message.from_role_and_content(oh.Role.USER, "I need coffee"),
    ])
    expected = harmony_oracle.render_conversation_for_completion(ref, oh.Role.ASSISTANT)
    assert harmony_encoding.render_conversation_for_completion(conv) == expected
    assert "} // namespace functions\n\n# Response Formats\n\n## shopping_list" in harmony_oracle.decode(expected)
