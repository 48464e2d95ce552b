"""Harmony parsing: same messages as openai-harmony; streaming == batch; never raises."""

from __future__ import annotations

import json
import random

import openai_harmony as oh
import pytest

from gptoss_cli.harmony import (
    MessageEnd,
    MessageStart,
    Role,
    StreamParser,
    TextDelta,
    parse_messages_from_completion_tokens,
)
from gptoss_cli.harmony.parse import MAX_HEADER_TOKENS

# (completion text with special tokens spelled out, role the completion continues)
COMPLETIONS = {
    "analysis_then_final": (
        "<|channel|>analysis<|message|>User asks 2+2. Answer 4.<|end|>"
        "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>",
        "assistant",
    ),
    "final_only_return": ("<|channel|>final<|message|>Hello!<|return|>", "assistant"),
    "final_cut_off": ("<|channel|>final<|message|>Hello, this stops in the midd", "assistant"),
    "tool_call_recipient_after_channel": (
        "<|channel|>analysis<|message|>Need weather.<|end|>"
        '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"location":"Tokyo"}<|call|>',
        "assistant",
    ),
    "tool_call_recipient_before_channel": (
        ' to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"location": "SF"}<|call|>',
        "assistant",
    ),
    "tool_call_recipient_before_channel_with_start": (
        '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"a": 1}<|call|>',
        None,
    ),
    "constrain_adjacent": (
        "<|start|>assistant<|channel|>commentary to=functions.get_weather"
        '<|constrain|>json<|message|>{"latitude":48.8566,"longitude":2.3522}<|call|>',
        None,
    ),
    "channel_before_recipient_constrain_adjacent": (
        '<|start|>assistant<|channel|>commentary to=functions.lookup<|constrain|>json<|message|>{"q":"x"}<|call|>',
        None,
    ),
    "browser_code": (
        "<|channel|>analysis<|message|>Let's browse.<|end|>"
        '<|start|>assistant<|channel|>commentary to=browser.search code<|message|>{"query": "news", "topn": 10}<|call|>',
        "assistant",
    ),
    "tool_results": (
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temp": 20}<|end|>'
        '<|start|>browser.search to=assistant<|channel|>commentary<|message|>{"result": "https://openai.com/"}<|end|>'
        "<|start|>tool to=assistant<|message|>plain<|end|>",
        None,
    ),
    "commentary_preamble": (
        "<|channel|>analysis<|message|>Plan.<|end|>"
        "<|start|>assistant<|channel|>commentary<|message|>I'll look that up for you.<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.search <|constrain|>json<|message|>{}<|call|>",
        "assistant",
    ),
    "no_channel": ("<|message|>plain text without channel<|end|>", "assistant"),
    "empty_content": ("<|channel|>final<|message|><|return|>", "assistant"),
    "unicode_content": (
        "<|channel|>final<|message|>日本語 😶‍🌫️ 👨‍👩‍👧‍👦 Привет العربية é\u0301\r\n\ttabs<|return|>",
        "assistant",
    ),
    "special_tokens_inside_content": (
        "<|channel|>final<|message|>text <|channel|> more <|constrain|> and <|message|> end<|return|>",
        "assistant",
    ),
    "start_inside_content": ("<|channel|>final<|message|>a<|start|>b<|return|>", "assistant"),
    "user_and_system_roles": (
        "<|start|>user<|message|>hello<|end|><|start|>system<|message|>sys<|end|>"
        "<|start|>developer<|message|># Instructions\n\nx<|end|>",
        None,
    ),
    "user_continuation": ("<|message|>What's up?<|end|>", "user"),
    "recipient_only": ("<|start|>assistant to=functions.f<|message|>{}<|call|>", None),
    "three_messages_streamable": (
        "<|channel|>analysis<|message|>User asks \"Who is the president?\" Let's browse.<|end|>"
        '<|start|>assistant<|channel|>commentary to=browser.search code<|message|>{"query": "president"}<|call|>'
        '<|start|>browser.search to=assistant<|channel|>commentary<|message|>{"result": "x"}<|end|>',
        "assistant",
    ),
    "empty": ("", None),
    "whitespace_header": ("<|start|>assistant  <|channel|>final  <|message|>x<|end|>", None),
}


def _ids(tok, text):
    return tok.encode(text, allow_special=True)


def _as_plain(messages):
    return json.loads(json.dumps([m.to_dict() for m in messages]))


def _ref_role(role):
    return None if role is None else oh.Role(role)


def test_completion_tokens_match_harmony_encode(o200k_tokenizer, harmony_oracle):
    for text, _ in COMPLETIONS.values():
        assert _ids(o200k_tokenizer, text) == harmony_oracle.encode(text, allowed_special="all")


@pytest.mark.parametrize("name", sorted(COMPLETIONS))
def test_parse_matches_openai_harmony(name, o200k_tokenizer, harmony_encoding, harmony_oracle):
    text, role = COMPLETIONS[name]
    tokens = _ids(o200k_tokenizer, text)
    expected = _as_plain(harmony_oracle.parse_messages_from_completion_tokens(tokens, _ref_role(role)))
    got = _as_plain(parse_messages_from_completion_tokens(harmony_encoding, tokens, role))
    assert got == expected
    assert _as_plain(harmony_encoding.parse_messages_from_completion_tokens(tokens, role)) == expected


def test_parse_split_utf8_and_invalid_bytes(o200k_tokenizer, harmony_encoding, harmony_oracle):
    tok = o200k_tokenizer
    byte_token = {tok.decode_bytes([t]): t for t in range(256)}
    head = _ids(tok, "<|channel|>final<|message|>")
    cases = [
        [byte_token[b"\xe4"], byte_token[b"\xb8"], byte_token[b"\xad"]],  # 中 split over three tokens
        [byte_token[b"\xe4"], byte_token[b"x"]],  # incomplete then ASCII
        [byte_token[b"\xff"], byte_token[b"a"], byte_token[b"\xfe"]],  # never valid
        [byte_token[b"\xf0"], byte_token[b"\x9f"]],  # cut off at the end
        tok.encode("ok ") + [byte_token[b"\xc3"]] + tok.encode("é"),
    ]
    for body in cases:
        for tail in ([tok.token_id("<|return|>")], []):
            tokens = head + body + tail
            expected = _as_plain(harmony_oracle.parse_messages_from_completion_tokens(tokens, oh.Role.ASSISTANT))
            got = _as_plain(parse_messages_from_completion_tokens(harmony_encoding, tokens, "assistant"))
            assert got == expected


def test_round_trip_render_then_parse(harmony_encoding):
    from gptoss_cli.harmony import Author, Message

    msgs = [
        Message.from_role_and_content(Role.ASSISTANT, "thinking").with_channel("analysis"),
        Message.from_role_and_content(Role.ASSISTANT, '{"a": 1}')
        .with_channel("commentary")
        .with_recipient("functions.f")
        .with_content_type("<|constrain|>json"),
        Message.from_author_and_content(Author.new(Role.TOOL, "functions.f"), '{"ok": true}')
        .with_channel("commentary")
        .with_recipient("assistant"),
        Message.from_role_and_content(Role.ASSISTANT, "done ✓").with_channel("final"),
    ]
    tokens = []
    for m in msgs:
        tokens += harmony_encoding.render(m)
    parsed = parse_messages_from_completion_tokens(harmony_encoding, tokens, None)
    assert [m.to_dict() for m in parsed] == [m.to_dict() for m in msgs]


# ---------------------------------------------------------------------------
# streaming
# ---------------------------------------------------------------------------


def _stream(enc, tokens, role, cuts):
    p = StreamParser(enc, role)
    events = []
    prev = 0
    for c in list(cuts) + [len(tokens)]:
        events += p.process_many(tokens[prev:c])
        prev = c
    events += p.process_eos()
    return p.messages, events


def _check_events(messages, events):
    """Events describe exactly the messages: start, deltas adding up to the text, end."""
    out = []
    cur = None
    for e in events:
        if isinstance(e, MessageStart):
            assert cur is None
            cur = (e, [])
        elif isinstance(e, TextDelta):
            assert cur is not None and e.text
            cur[1].append(e.text)
        else:
            assert isinstance(e, MessageEnd) and cur is not None
            start, parts = cur
            m = e.message
            assert (start.role, start.name, start.channel, start.recipient, start.content_type) == (
                m.author.role,
                m.author.name,
                m.channel,
                m.recipient,
                m.content_type,
            )
            assert "".join(parts) == m.text
            out.append(m)
            cur = None
    assert cur is None
    assert out == messages


@pytest.mark.parametrize("name", sorted(COMPLETIONS))
def test_streaming_equals_batch_for_every_split(name, o200k_tokenizer, harmony_encoding):
    text, role = COMPLETIONS[name]
    tokens = _ids(o200k_tokenizer, text)
    batch = parse_messages_from_completion_tokens(harmony_encoding, tokens, role)
    for i in range(len(tokens) + 1):
        messages, events = _stream(harmony_encoding, tokens, role, [i])
        assert messages == batch
        _check_events(messages, events)
    rng = random.Random(name)
    for _ in range(20):
        cuts = sorted(rng.sample(range(len(tokens) + 1), min(len(tokens) + 1, rng.randint(1, 6))))
        messages, events = _stream(harmony_encoding, tokens, role, cuts)
        assert messages == batch
        _check_events(messages, events)
    # one token at a time, with the parser's live state
    p = StreamParser(harmony_encoding, role)
    for t in tokens:
        for e in p.process(t):
            if isinstance(e, TextDelta):
                assert p.current_content.endswith(e.text)
                assert p.last_content_delta == e.text
    p.process_eos()
    assert p.messages == batch and p.tokens == tokens


def test_stream_events_for_a_tool_call(o200k_tokenizer, harmony_encoding):
    text, role = COMPLETIONS["tool_call_recipient_after_channel"]
    _, events = _stream(harmony_encoding, _ids(o200k_tokenizer, text), role, [])
    starts = [e for e in events if isinstance(e, MessageStart)]
    ends = [e for e in events if isinstance(e, MessageEnd)]
    assert [(s.channel, s.recipient, s.content_type) for s in starts] == [
        ("analysis", None, None),
        ("commentary", "functions.get_weather", "<|constrain|>json"),
    ]
    assert [e.end_token for e in ends] == [o200k_tokenizer.token_id("<|end|>"), o200k_tokenizer.token_id("<|call|>")]
    assert not any(s.raw for s in starts)


# ---------------------------------------------------------------------------
# malformed output: never raises, raw text
# ---------------------------------------------------------------------------

MISSING_MESSAGE_TOKEN = [
    (
        "I must refuse<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>We must refuse<|end|>"
        "<|start|>assistant<|channel|>final<|message|>I'm sorry, but I can't help with that.<|return|>"
    ),
    (
        "<|channel|>final I cannot help<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Sorry.<|return|>"
    ),
]


@pytest.mark.parametrize("text", MISSING_MESSAGE_TOKEN)
def test_missing_message_token_like_non_strict_harmony(text, o200k_tokenizer, harmony_encoding, harmony_oracle):
    tokens = _ids(o200k_tokenizer, text)
    expected = _as_plain(harmony_oracle.parse_messages_from_completion_tokens(tokens, oh.Role.ASSISTANT, strict=False))
    got = _as_plain(parse_messages_from_completion_tokens(harmony_encoding, tokens, "assistant"))
    assert got == expected


def test_malformed_output_becomes_raw_text(o200k_tokenizer, harmony_encoding):
    tok = o200k_tokenizer
    # text where a message should start
    msgs = parse_messages_from_completion_tokens(
        harmony_encoding, _ids(tok, "oops plain text<|start|>assistant<|channel|>final<|message|>ok<|return|>"), None
    )
    assert [(m.author.role, m.channel, m.text) for m in msgs] == [
        (Role.ASSISTANT, None, "oops plain text"),
        (Role.ASSISTANT, "final", "ok"),
    ]
    # a header that does not parse: header and content come out verbatim
    p = StreamParser(harmony_encoding, None)
    events = p.process_many(_ids(tok, "<|start|>wizard<|message|>abracadabra<|end|>"))
    events += p.process_eos()
    assert [m.text for m in p.messages] == ["wizard<|message|>abracadabra"]
    assert any(isinstance(e, MessageStart) and e.raw for e in events)
    # empty channel value
    msgs = parse_messages_from_completion_tokens(harmony_encoding, _ids(tok, "<|channel|><|message|>x<|end|>"), "assistant")
    assert msgs[0].text == "<|channel|><|message|>x"
    # stray stop tokens between messages are ignored
    msgs = parse_messages_from_completion_tokens(
        harmony_encoding, _ids(tok, "<|channel|>final<|message|>a<|return|><|end|><|call|>"), "assistant"
    )
    assert [(m.channel, m.text) for m in msgs] == [("final", "a")]
    # the stream ends inside a header
    msgs = parse_messages_from_completion_tokens(harmony_encoding, _ids(tok, "<|channel|>analysis"), "assistant")
    assert [(m.channel, m.text) for m in msgs] == [("analysis", "")]
    # a header that never ends is handed over as raw text after MAX_HEADER_TOKENS
    p = StreamParser(harmony_encoding, "assistant")
    long = tok.encode("word " * (MAX_HEADER_TOKENS + 10))
    events = p.process_many(long)
    assert any(isinstance(e, MessageStart) and e.raw for e in events)
    assert any(isinstance(e, TextDelta) for e in events)


def test_random_token_sequences_never_raise(o200k_tokenizer, harmony_encoding):
    tok = o200k_tokenizer
    specials = [tok.token_id(n) for n in ("<|start|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|channel|>", "<|constrain|>")]
    words = tok.encode(" assistant user tool to=functions.f commentary final analysis json {} é 中 😀") + list(range(256))
    rng = random.Random(7)
    for i in range(400):
        n = rng.randint(0, 40)
        tokens = []
        for _ in range(n):
            r = rng.random()
            if r < 0.35:
                tokens.append(rng.choice(specials))
            elif r < 0.75:
                tokens.append(rng.choice(words))
            elif r < 0.97:
                tokens.append(rng.randrange(tok.vocab_size))
            else:
                tokens.append(rng.choice([-1, tok.vocab_size, 10**9]))
        role = rng.choice([None, "assistant", "user", "tool"])
        batch = parse_messages_from_completion_tokens(harmony_encoding, tokens, role)
        cut = rng.randint(0, len(tokens))
        messages, events = _stream(harmony_encoding, tokens, role, [cut])
        assert messages == batch
        _check_events(messages, events)
        for m in batch:
            m.text.encode("utf-8")
            json.dumps(m.to_dict())
