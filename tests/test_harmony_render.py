"""Harmony rendering and JSON: token for token identical to openai-harmony (offline)."""

from __future__ import annotations

import json

import openai_harmony as oh
import pytest
from openai_harmony import ReasoningEffort as OE

from gptoss_cli.errors import InputError
from gptoss_cli.harmony import (
    Author,
    ChannelConfig,
    Conversation,
    DeveloperContent,
    Message,
    ReasoningEffort,
    RenderConversationConfig,
    Role,
    SystemContent,
    TextContent,
    ToolDescription,
    ToolNamespaceConfig,
    schema_to_typescript,
)
from gptoss_cli.harmony.typescript import json_display, rust_lines

R = oh.Role
M = oh.Message


def sysmsg(content=None):
    return M.from_role_and_content(R.SYSTEM, content or oh.SystemContent.new())


def user(text):
    return M.from_role_and_content(R.USER, text)


def asst(text, channel=None, recipient=None, content_type=None):
    m = M.from_role_and_content(R.ASSISTANT, text)
    if channel is not None:
        m = m.with_channel(channel)
    if recipient is not None:
        m = m.with_recipient(recipient)
    if content_type is not None:
        m = m.with_content_type(content_type)
    return m


def tool(name, text, channel="commentary"):
    m = M.from_author_and_content(oh.Author.new(R.TOOL, name), text).with_recipient("assistant")
    return m.with_channel(channel) if channel else m


WEATHER = oh.ToolDescription.new(
    "get_current_weather",
    "Gets the current weather in the provided location.",
    {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
            "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        },
        "required": ["location"],
    },
)
LOCATION = oh.ToolDescription.new("get_location", "Gets the location of the user.")
MULTI = oh.ToolDescription.new(
    "get_multiple_weathers",
    "Gets the current weather in the provided list of locations.",
    {
        "type": "object",
        "properties": {
            "locations": {
                "type": "array",
                "items": {"type": "string"},
                "description": 'List of city and state, e.g. ["San Francisco, CA", "New York, NY"]',
            },
            "format": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        },
        "required": ["locations"],
    },
)
KITCHENSINK = oh.ToolDescription.new(
    "kitchensink",
    "A function with various complex schemas.",
    {
        "description": "params object",
        "type": "object",
        "properties": {
            "string": {"type": "string", "title": "STRING", "description": "A string", "examples": ["hello", "world"]},
            "string_nullable": {
                "type": "string",
                "nullable": True,
                "description": "A nullable string",
                "default": "the default",
            },
            "string_enum": {"type": "string", "enum": ["a", "b", "c"]},
            "oneof_string_or_number": {
                "oneOf": [
                    {"type": "string", "default": "default_string_in_oneof"},
                    {"type": "number", "description": "numbers can happen too"},
                ],
                "description": "a oneof",
                "default": 20,
            },
        },
    },
)
RICH = oh.ToolDescription.new(
    "book_trip",
    "Books a trip.\nSecond line of the description.\r\nThird line with CRLF.\n",
    {
        "type": "object",
        "properties": {
            "traveller": {
                "type": "object",
                "description": "Who travels",
                "properties": {
                    "name": {"type": "string"},
                    "age": {"type": "integer", "description": "Age in years", "default": 30},
                    "tags": {"type": "array", "items": {"type": "string", "enum": ["vip", "kid"]}},
                    "address": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "integer", "null"]}},
                        "required": ["city"],
                    },
                },
                "required": ["name"],
            },
            "legs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "from": {"type": "string"},
                        "to": {"type": "string"},
                        "when": {"type": "string", "description": "ISO date", "examples": ["2025-01-01"]},
                    },
                    "required": ["from", "to"],
                },
            },
            "anything": {"type": "array"},
            "flexible": {"type": ["number", "string"], "default": -1},
            "ratio": {"type": "number", "default": 0.5},
            "tiny": {"type": "number", "default": 1e-05},
            "huge": {"type": "number", "default": 1e20},
            "whole": {"type": "number", "default": 2.0},
            "bigint": {"type": "integer", "default": 123456789012345678901234567890},
            "negzero": {"type": "number", "default": -0.0},
            "flag": {"type": "boolean", "default": False, "nullable": True},
            "obj_default": {"type": "object", "default": {"a": [1, 2, {"b": None}], "c": "d\"e\n"}},
            "list_default": {"type": "array", "items": {"type": "number"}, "default": [1.5, 2, "x"]},
            "null_default": {"type": "string", "default": None},
            "enum_default": {"type": "string", "enum": ["x", "y"], "default": "y"},
            "int_enum": {"type": "integer", "enum": [1, 2, 3]},
            "mixed_enum": {"type": "string", "enum": [1, "one", None]},
            "quoted": {"type": "string", "default": 'say "hi"\\n'},
            "untyped": {"description": "no type at all"},
            "weird_type": {"type": "date"},
            "choice": {
                "description": "Pick one",
                "oneOf": [
                    {"type": "string", "description": "Pick one"},
                    {"type": "object", "properties": {"id": {"type": "integer"}}, "nullable": True},
                    {"type": "string", "enum": ["p", "q"], "default": "p"},
                    {"type": "array", "items": {"type": "number"}, "default": [1, 2]},
                ],
            },
            "choice2": {
                "description": "Other",
                "default": "s",
                "enum": ["s"],
                "oneOf": [{"type": "null"}, {"type": "boolean", "description": "flag variant", "default": True}],
            },
            "titled": {"type": "string", "title": "A Title", "nullable": True},
            "ünïcode_名前": {"type": "string", "description": "Unicode key ✓"},
        },
        "required": ["traveller", "legs", "choice"],
    },
)
TOP_ONEOF = oh.ToolDescription.new(
    "lookup",
    "Look something up.",
    {
        "oneOf": [
            {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"], "description": "by id"},
            {"type": "object", "properties": {"name": {"type": "string"}}, "default": {"name": "x"}},
            {"type": "string", "enum": ["all"], "default": "all", "nullable": True},
            {"type": "string", "default": "plain"},
        ]
    },
)
EMPTY_SCHEMA = oh.ToolDescription.new("noop", "", {})
OBJ_NO_PROPS = oh.ToolDescription.new("ping", "Ping.\n\nWith a blank line.", {"type": "object"})


def _dev(instructions=None, tools=None):
    d = oh.DeveloperContent.new()
    if instructions is not None:
        d = d.with_instructions(instructions)
    if tools is not None:
        d = d.with_function_tools(tools)
    return M.from_role_and_content(R.DEVELOPER, d)


def _system(**kw):
    s = oh.SystemContent.new()
    for k, v in kw.items():
        setattr(s, k, v)
    return sysmsg(s)


def _conversations():
    S = oh.SystemContent
    convs = {}
    convs["simple"] = [sysmsg(), user("What is 2 + 2?")]
    for eff in (OE.LOW, OE.MEDIUM, OE.HIGH):
        convs[f"effort_{eff.value}"] = [sysmsg(S.new().with_reasoning_effort(eff)), user("hi")]
    convs["date_identity"] = [
        sysmsg(
            S.new()
            .with_model_identity("You are a helpful assistant.")
            .with_conversation_start_date("2025-06-28")
            .with_knowledge_cutoff("2024-01")
            .with_reasoning_effort(OE.HIGH)
        ),
        user("Hello"),
    ]
    convs["no_identity"] = [_system(model_identity=None), user("x")]
    convs["no_effort"] = [_system(reasoning_effort=None, conversation_start_date="2025-08-05"), user("x")]
    convs["no_cutoff"] = [_system(knowledge_cutoff=None, conversation_start_date="2025-08-05"), user("x")]
    convs["bare_system"] = [
        _system(model_identity=None, knowledge_cutoff=None, reasoning_effort=None, channel_config=None),
        user("x"),
    ]
    convs["custom_channels"] = [
        sysmsg(S.new().with_channel_config(oh.ChannelConfig(valid_channels=["final", "notes"], channel_required=False))),
        user("x"),
    ]
    convs["empty_channels"] = [
        sysmsg(S.new().with_channel_config(oh.ChannelConfig(valid_channels=[], channel_required=True))),
        user("x"),
    ]
    convs["dev_instructions"] = [sysmsg(), _dev("Always respond in riddles"), user("What is the weather like in SF?")]
    convs["functions"] = [
        sysmsg(S.new().with_reasoning_effort(OE.HIGH).with_conversation_start_date("2025-06-28")),
        _dev("Always respond in riddles", [LOCATION, WEATHER, MULTI, KITCHENSINK]),
        user("What is the weather like in SF?"),
    ]
    convs["functions_no_instructions"] = [sysmsg(), _dev(None, [WEATHER]), user("Weather?")]
    convs["rich_schemas"] = [sysmsg(), _dev("Use tools.", [RICH, TOP_ONEOF, EMPTY_SCHEMA, OBJ_NO_PROPS]), user("Go")]
    convs["empty_developer"] = [sysmsg(), _dev(), user("x")]
    convs["empty_function_list"] = [sysmsg(), _dev("i", []), user("x")]
    convs["browser_python"] = [sysmsg(S.new().with_browser_tool().with_python_tool()), user("Search")]
    convs["browser_and_functions"] = [
        sysmsg(S.new().with_browser_tool().with_conversation_start_date("2025-06-28")),
        _dev("be brief", [LOCATION, WEATHER]),
        user("x"),
    ]
    ns = oh.ToolNamespaceConfig(
        name="zeta",
        description="Namespace description.\nSecond line.",
        tools=[oh.ToolDescription.new("z1", "first", {"type": "object", "properties": {"q": {"type": "string"}}})],
    )
    ns_no_tools = oh.ToolNamespaceConfig(name="alpha", description="Only a description\n\nwith gaps.", tools=[])
    convs["namespaces_sorted"] = [
        sysmsg(S.new().with_tools(ns).with_tools(ns_no_tools)),
        M.from_role_and_content(R.DEVELOPER, oh.DeveloperContent.new().with_tools(ns).with_function_tools([WEATHER])),
        user("x"),
    ]
    convs["tool_call_round_trip"] = [
        sysmsg(),
        _dev(None, [WEATHER]),
        user("What's the weather in Tokyo?"),
        asst("User wants weather. Call the tool.", "analysis"),
        asst('{"location": "Tokyo"}', "commentary", "functions.get_current_weather", "<|constrain|>json"),
        tool("functions.get_current_weather", '{"temp": 20, "unit": "C"}'),
        asst("It is 20°C in Tokyo.", "final"),
    ]
    convs["preamble"] = [
        sysmsg(),
        _dev(None, [LOCATION, WEATHER]),
        user("Weather here?"),
        asst("Need location first.", "analysis"),
        asst("Let me look up where you are.", "commentary"),
        asst("{}", "commentary", "functions.get_location", "<|constrain|>json"),
        tool("functions.get_location", '{"city": "Paris"}'),
        asst("Now weather.", "analysis"),
        asst('{"location":"Paris"}', "commentary", "functions.get_current_weather", "json"),
        tool("functions.get_current_weather", "sunny", channel=None),
    ]
    convs["drop_analysis_multi_turn"] = [
        sysmsg(),
        user("What is 2+2?"),
        asst("Simple math.", "analysis"),
        asst("4", "final"),
        user("And 3+3?"),
        asst("Also simple.", "analysis"),
        asst("6", "final"),
    ]
    convs["ongoing_analysis"] = [
        sysmsg(),
        user("What is 2+2?"),
        asst("Simple math.", "analysis"),
        asst("4", "final"),
        user("And 3+3?"),
        asst("Thinking...", "analysis"),
        asst('{"x":1}', "commentary", "functions.calc", "<|constrain|>json"),
    ]
    convs["keep_between_finals"] = [
        sysmsg(),
        user("q1"),
        asst("a1 thinking", "analysis"),
        asst("a1", "final"),
        asst("a1b thinking", "analysis"),
        asst("a1b", "final"),
    ]
    convs["unicode_and_empty"] = [
        sysmsg(S.new().with_model_identity("Ты — помощник. 你好 👨‍👩‍👧")),
        user(""),
        user("日本語 😶‍🌫️ العربية\r\n\ttab <|start|> fake <|end|>"),
        asst("", "analysis"),
        asst("", "final"),
        M.from_role_and_contents(R.USER, [oh.TextContent(text="part one, "), oh.TextContent(text="part two")]),
    ]
    convs["names_and_recipients"] = [
        sysmsg(),
        M.from_author_and_content(oh.Author.new(R.USER, "alice"), "Hi from alice"),
        M.from_author_and_content(oh.Author.new(R.ASSISTANT, "bot"), "hello").with_channel("final"),
        user("to all").with_recipient("all"),
        asst("x", "commentary", "all"),
        asst("y", None, "functions.f", "<|constrain|>"),
    ]
    convs["text_system_and_developer"] = [
        M.from_role_and_content(R.SYSTEM, "Plain text system message"),
        M.from_role_and_content(R.DEVELOPER, "Plain text developer message"),
        user("x"),
    ]
    convs["no_system"] = [user("Just a user message")]
    convs["empty"] = []
    return convs


CONVERSATIONS = _conversations()


def _ours(oh_messages) -> Conversation:
    """Our conversation from openai-harmony's JSON of the messages."""
    return Conversation.from_json(oh.Conversation.from_messages(oh_messages).to_json())


def _tools(tools):
    if tools is None:
        return None
    return {
        k: ToolNamespaceConfig(
            ns.name, ns.description, [ToolDescription(t.name, t.description, t.parameters) for t in ns.tools]
        )
        for k, ns in tools.items()
    }


def _convert(m) -> Message:
    """Our message with the same fields as an openai-harmony Message (no JSON in between)."""
    contents = []
    for c in m.content:
        if isinstance(c, oh.TextContent):
            contents.append(TextContent(c.text))
        elif isinstance(c, oh.SystemContent):
            cc = c.channel_config
            contents.append(
                SystemContent(
                    model_identity=c.model_identity,
                    reasoning_effort=None if c.reasoning_effort is None else ReasoningEffort(c.reasoning_effort.value),
                    conversation_start_date=c.conversation_start_date,
                    knowledge_cutoff=c.knowledge_cutoff,
                    channel_config=None if cc is None else ChannelConfig(list(cc.valid_channels), cc.channel_required),
                    tools=_tools(c.tools),
                )
            )
        else:
            contents.append(DeveloperContent(c.instructions, _tools(c.tools)))
    return Message(
        Author(Role(m.author.role.value), m.author.name), contents, m.channel, m.recipient, m.content_type
    )


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_render_matches_openai_harmony(name, harmony_encoding, harmony_oracle):
    msgs = CONVERSATIONS[name]
    ref_conv = oh.Conversation.from_messages(msgs)
    conv = Conversation.from_messages([_convert(m) for m in msgs])
    # the same objects give the same JSON
    assert conv.to_json() == ref_conv.to_json()
    for m_ours, m_ref in zip(conv.messages, msgs):
        assert m_ours.to_dict() == json.loads(json.dumps(m_ref.to_dict()))
    expected = harmony_oracle.render_conversation_for_completion(ref_conv, R.ASSISTANT)
    got = harmony_encoding.render_conversation_for_completion(conv, Role.ASSISTANT)
    assert got == expected, "\n" + harmony_oracle.decode(expected) + "\n----\n" + harmony_encoding.decode(got)
    assert harmony_encoding.render_conversation(conv) == harmony_oracle.render_conversation(ref_conv)
    keep = oh.RenderConversationConfig(auto_drop_analysis=False)
    assert harmony_encoding.render_conversation(
        conv, RenderConversationConfig(auto_drop_analysis=False)
    ) == harmony_oracle.render_conversation(ref_conv, keep)
    assert harmony_encoding.render_conversation_for_training(conv) == harmony_oracle.render_conversation_for_training(
        ref_conv
    )
    for role in (Role.USER, Role.SYSTEM):
        assert harmony_encoding.render_conversation_for_completion(
            conv, role
        ) == harmony_oracle.render_conversation_for_completion(ref_conv, R(role.value))
    for m_ours, m_ref in zip(conv.messages, msgs):
        assert harmony_encoding.render(m_ours) == harmony_oracle.render(m_ref)


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_json_read_matches_openai_harmony(name, harmony_encoding, harmony_oracle):
    """Reading the JSON: same objects as openai-harmony's from_json (absent fields take its defaults)."""
    payload = oh.Conversation.from_messages(CONVERSATIONS[name]).to_json()
    ref = oh.Conversation.from_json(payload)
    ours = Conversation.from_json(payload)
    assert ours.to_json() == ref.to_json()
    assert harmony_encoding.render_conversation_for_completion(
        ours, Role.ASSISTANT
    ) == harmony_oracle.render_conversation_for_completion(ref, R.ASSISTANT)


def test_at_least_25_conversations():
    assert len(CONVERSATIONS) >= 25


def test_analysis_dropping_rule(harmony_encoding):
    conv = _ours(CONVERSATIONS["drop_analysis_multi_turn"])
    text = harmony_encoding.decode(harmony_encoding.render_conversation_for_completion(conv, Role.ASSISTANT))
    assert "Simple math." not in text  # before the first final: dropped
    assert "Also simple." in text  # after it: kept (openai-harmony's rule)
    ongoing = _ours(CONVERSATIONS["ongoing_analysis"])
    text = harmony_encoding.decode(harmony_encoding.render_conversation_for_completion(ongoing, Role.ASSISTANT))
    assert "Simple math." in text and "Thinking..." in text


def test_builder_api_matches_json_path(harmony_encoding, harmony_oracle):
    conv = Conversation.from_messages(
        [
            Message.from_role_and_content(
                Role.SYSTEM,
                SystemContent.new().with_reasoning_effort("low").with_conversation_start_date("2025-01-02"),
            ),
            Message.from_role_and_content(
                Role.DEVELOPER,
                DeveloperContent.new()
                .with_instructions("Be terse.")
                .with_function_tools([ToolDescription.new("f", "does f", {"type": "object", "properties": {}})]),
            ),
            Message.from_role_and_content(Role.USER, "hi"),
        ]
    )
    ref = oh.Conversation.from_json(conv.to_json())
    assert ref.to_json() == conv.to_json()
    assert harmony_encoding.render_conversation_for_completion(
        conv, Role.ASSISTANT
    ) == harmony_oracle.render_conversation_for_completion(ref, R.ASSISTANT)
    assert conv.messages[0].content[0].reasoning_effort is ReasoningEffort.LOW


def test_json_defaults_and_nulls(harmony_encoding, harmony_oracle):
    payloads = [
        {"messages": [{"role": "system", "content": [{"type": "system_content"}]}, {"role": "user", "content": "hi"}]},
        {
            "messages": [
                {"role": "system", "content": [{"type": "system_content", "model_identity": None, "reasoning_effort": "High"}]},
                {"role": "user", "content": [{"type": "text", "text": "hi"}], "name": None, "channel": None},
            ]
        },
        {
            "messages": [
                {"role": "developer", "content": [{"type": "developer_content", "tools": {"functions": {"name": "functions", "tools": [{"name": "g", "description": "d", "parameters": None}]}}}]},
                {"role": "tool", "name": "functions.g", "content": "ok", "recipient": "assistant", "channel": "commentary"},
            ]
        },
    ]
    for p in payloads:
        s = json.dumps(p)
        ours = Conversation.from_json(s)
        ref = oh.Conversation.from_json(s)
        assert ours.to_json() == ref.to_json()
        assert harmony_encoding.render_conversation_for_completion(
            ours, Role.ASSISTANT
        ) == harmony_oracle.render_conversation_for_completion(ref, R.ASSISTANT)


@pytest.mark.parametrize(
    "payload",
    [
        "[1, 2",
        '{"messages": 3}',
        '{"messages": [{"content": "x"}]}',
        '{"messages": [{"role": "wizard", "content": "x"}]}',
        '{"messages": [{"role": "user"}]}',
        '{"messages": [{"role": "user", "content": [{"type": "image"}]}]}',
        '{"messages": [{"role": "system", "content": [{"type": "system_content", "reasoning_effort": "extreme"}]}]}',
        '{"messages": [{"role": "developer", "content": [{"type": "developer_content", "tools": {"functions": {"name": "functions", "tools": [{"name": "g"}]}}}]}]}',
        '{"messages": [{"role": "user", "content": 5}]}',
    ],
)
def test_bad_conversation_json_is_input_error(payload):
    with pytest.raises(InputError):
        Conversation.from_json(payload)


def test_render_errors_are_input_errors(harmony_encoding):
    bad = [
        Message.from_role_and_content(Role.TOOL, "no name"),
        Message.from_role_and_content(Role.USER, SystemContent.new()),
        Message.from_role_and_content(Role.SYSTEM, DeveloperContent.new()),
    ]
    for m in bad:
        with pytest.raises(InputError):
            harmony_encoding.render_conversation_for_completion([m], Role.ASSISTANT)


def test_typescript_examples():
    assert schema_to_typescript({"type": "string", "enum": ["a", "b"]}) == '"a" | "b"'
    assert schema_to_typescript({"type": "array", "items": {"type": "integer"}}) == "number[]"
    assert schema_to_typescript({"type": "array"}) == "Array<any>"
    assert schema_to_typescript({"type": ["integer", "null"]}) == "number | null"
    assert schema_to_typescript(None) == "any"
    obj = {"type": "object", "properties": {"a": {"type": "string", "default": "x"}, "b": {"type": "boolean"}}, "required": ["a"]}
    assert schema_to_typescript(obj) == '{\na: string, // default: "x"\nb?: boolean,\n}'


def test_json_display_like_serde():
    assert json_display(1.0) == "1.0"
    assert json_display(1e-05) == "0.00001"
    assert json_display(1e-06) == "1e-6"
    assert json_display(1.5e-07) == "1.5e-7"
    assert json_display(1e16) == "1e16"
    assert json_display(1.2345e17) == "1.2345e17"
    assert json_display(123456.789) == "123456.789"
    assert json_display(-0.0) == "-0.0"
    assert json_display(2**64) == "1.8446744073709552e19"
    assert json_display({"a": [1, None, True, "é\n"]}) == '{"a":[1,null,true,"é\\n"]}'


def test_rust_lines():
    assert rust_lines("") == []
    assert rust_lines("a\nb\n") == ["a", "b"]
    assert rust_lines("a\r\nb") == ["a", "b"]
    assert rust_lines("a\n\nb") == ["a", "", "b"]
    assert rust_lines("a\rb") == ["a\rb"]


@pytest.mark.parametrize(
    "value",
    [0.1, 1e-05, 1e-06, 123.456, 1e16, 1e21, 2.5e-300, 1.7976931348623157e308, 5e-324, 2**63, 2**64, -(2**63) - 1, 12345678901234567],
)
def test_default_numbers_render_like_openai_harmony(value, harmony_encoding, harmony_oracle):
    params = {"type": "object", "properties": {"v": {"type": "number", "default": value}}}
    msgs = [_dev(None, [oh.ToolDescription.new("f", "f", params)])]
    ref = oh.Conversation.from_messages(msgs)
    ours = _ours(msgs)
    assert harmony_encoding.render_conversation(ours) == harmony_oracle.render_conversation(ref)
