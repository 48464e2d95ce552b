"""`gptoss serve`'s parts without HTTP: Harmony output mapping, stop strings, slot choice,
agent-loop continuations, tool_choice on the logits, request checks and the metrics text."""

from __future__ import annotations

import numpy as np
import pytest

from scripted_model import ScriptedModel

from gptoss_cli.events import Done, GenerationResult, Token
from gptoss_cli.generation import Generator
from gptoss_cli.harmony.model import Conversation, Role
from gptoss_cli.sampling import SamplingParams
from gptoss_cli.serve.auth import check_key
from gptoss_cli.serve.continuations import Continuations
from gptoss_cli.serve.errors import APIError
from gptoss_cli.serve.fields import Fields
from gptoss_cli.serve.messages import chat_to_harmony, parse_tools
from gptoss_cli.serve.metrics import Metrics
from gptoss_cli.serve.output import CONTENT, REASONING, OutputMapper
from gptoss_cli.serve.slots import Slot, choose_slot
from gptoss_cli.serve.stops import StopStrings
from gptoss_cli.serve.tool_choice import ToolChoiceGuide

TOOLS = ["get_weather"]


def _map(enc, completion: str, tools=TOOLS, stop=()):
    """Feed a completion's tokens through the stream parser, token by token, into an OutputMapper."""
    ids = enc.tokenizer.encode(completion, allow_special=True)
    parser = enc.stream_parser(Role.ASSISTANT)
    mapper = OutputMapper(tools, stop)
    deltas = []
    for t in ids:
        deltas += mapper.feed([Token(t, enc.tokenizer.decode([t]))] + parser.process(t))
    deltas += mapper.feed(parser.process_eos() + [Done(GenerationResult(prompt_tokens=1))])
    return mapper, deltas


# -- Harmony output: every odd sequence is repaired or returned as text ----------------------


def test_well_formed_answer(harmony_encoding):
    m, deltas = _map(harmony_encoding, "<|channel|>analysis<|message|>think<|end|>"
                     "<|start|>assistant<|channel|>final<|message|>Answer.<|return|>")
    assert (m.reasoning_text, m.content_text, m.calls) == ("think", "Answer.", [])
    assert {d.kind for d in deltas} == {REASONING, CONTENT}
    assert m.reasoning_tokens == 5  # <|channel|> analysis <|message|> think <|end|>
    assert m.finish_reason("stop") == "stop"


@pytest.mark.parametrize("completion, reasoning, content, call_args", [
    # stray words in the header read as a recipient and content type that name no tool: the text is the answer
    ("<|channel|>final junk here<|message|>text<|return|>", "", "text", None),
    # a header that does not parse (a channel marker with no name): a raw message, its text the answer
    ("<|channel|> <|message|>text<|return|>", "", "<|channel|> <|message|>text", None),
    # to= in the role header
    ('<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"a": 1}<|call|>',
     "", "", '{"a": 1}'),
    # a recipient on the analysis channel: still the call it names
    ('<|channel|>analysis to=functions.get_weather <|constrain|>json<|message|>{"b": 2}<|call|>', "", "", '{"b": 2}'),
    # an unknown channel: text
    ("<|channel|>scratchpad<|message|>hmm<|end|>", "", "hmm", None),
    # a recipient that is no known tool: text on its channel
    ("<|channel|>commentary to=browser.search<|message|>q<|call|>", "", "q", None),
    # no Harmony at all
    ("just words<|return|>", "", "just words", None),
    # the stream ends inside a header
    ("<|channel|>fin", "", "", None),
    # a stray stop token, then a good message
    ("<|end|><|start|>assistant<|channel|>final<|message|>ok<|return|>", "", "ok", None),
    # a header that never ends (past the parser's limit)
    ("<|channel|>" + "x " * 300 + "<|return|>", "", None, None),
    # the model starts a user turn: text, not a failure
    ("<|start|>user<|message|>and me?<|end|>", "", "and me?", None),
])
def test_odd_output_is_repaired_or_text(harmony_encoding, completion, reasoning, content, call_args):
    m, _ = _map(harmony_encoding, completion)
    assert m.reasoning_text == reasoning
    if content is not None:
        assert m.content_text == content
    if call_args is None:
        assert m.calls == []
    else:
        (call,) = m.calls
        assert call.name == "get_weather" and call.arguments == call_args
        assert m.finish_reason("tool_call") == "tool_calls"


def test_every_prefix_of_odd_output_maps(harmony_encoding):
    """Cut anywhere (max_tokens), the mapping still holds together."""
    text = ('<|channel|>analysis<|message|>a<|end|><|start|>assistant to=functions.get_weather'
            '<|channel|>commentary <|constrain|>json<|message|>{"x": 1}<|call|>')
    ids = harmony_encoding.tokenizer.encode(text, allow_special=True)
    for n in range(len(ids) + 1):
        m, _ = _map(harmony_encoding, harmony_encoding.tokenizer.decode(ids[:n]))
        assert isinstance(m.content_text, str)


def test_stop_cuts_content_only(harmony_encoding):
    m, _ = _map(harmony_encoding, "<|channel|>analysis<|message|>say END now<|end|>"
                "<|start|>assistant<|channel|>final<|message|>one END two<|return|>", stop=["END"])
    assert m.reasoning_text == "say END now" and m.content_text == "one " and m.stopped
    assert m.finish_reason("interrupted") == "stop"


def test_stop_strings_across_pieces():
    s = StopStrings(["</end>", "xyz"])
    assert s.feed("hello </e") == "hello "
    assert s.feed("n") == ""
    assert s.feed("d> more") == "" and s.hit
    s = StopStrings(["abc"])
    assert s.feed("xab") == "x" and s.flush() == "ab"
    assert StopStrings([]).feed("anything") == "anything"


# -- slots --------------------------------------------------------------------------------------


def test_slot_with_the_longest_prefix_wins(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(enc, "<|channel|>final<|message|>x<|return|>")
    slots = [Slot(i, Generator(model, enc)) for i in range(3)]
    a = [1, 2, 3, 4, 5]
    slots[1].generator.generate(a, SamplingParams(temperature=0), max_tokens=1).run()
    slots[0].last_used, slots[1].last_used, slots[2].last_used = 3, 2, 1
    slot, reuse = choose_slot(slots, a + [6, 7])
    assert slot is slots[1] and reuse >= len(a)
    slot, reuse = choose_slot(slots, [9, 9, 9])  # no prefix anywhere: the least recently used
    assert slot is slots[2] and reuse == 0


# -- continuations -----------------------------------------------------------------------------


def test_continuations_replace_the_longest_recorded_prefix():
    c = Continuations(max_entries=2)
    c.add([1, 2, 3], [1, 9, 2, 3])
    c.add([1, 2, 3, 4, 5], [1, 9, 2, 3, 8, 4, 5])
    assert c.continue_prompt([1, 2, 3, 4, 5, 6]) == [1, 9, 2, 3, 8, 4, 5, 6]
    assert c.continue_prompt([1, 2, 3, 7]) == [1, 9, 2, 3, 7]
    assert c.continue_prompt([1, 2]) == [1, 2]
    c.add([5], [6])
    assert len(c) == 2  # bounded: the least recently used went


# -- tool_choice on the logits ------------------------------------------------------------------


def test_required_bans_final_and_return(harmony_encoding):
    enc = harmony_encoding
    guide = ToolChoiceGuide(enc)
    logits = np.zeros(enc.tokenizer.vocab_size, np.float32)
    final = enc.encode("final")[0]
    out = guide(logits, [enc.channel_id])
    assert out[final] < -1e29 and out[enc.return_id] < -1e29
    assert out[enc.encode("analysis")[0]] == 0.0
    assert guide(logits, [])[final] == 0.0  # only right after <|channel|>


def test_named_function_forces_the_call_header(harmony_encoding):
    enc = harmony_encoding
    guide = ToolChoiceGuide(enc, "get_weather")
    want = enc.encode(" to=functions.get_weather ") + [enc.constrain_id] + enc.encode("json") + [enc.message_id]
    tokens = [enc.channel_id] + enc.encode("commentary")
    logits = np.zeros(enc.tokenizer.vocab_size, np.float32)
    for w in want:
        assert int(np.argmax(guide(logits, tokens))) == w
        tokens.append(w)
    assert float(guide(logits, tokens).max()) == 0.0  # the arguments are the model's own
    parsed = enc.parse_messages_from_completion_tokens(tokens + enc.encode("{}") + [enc.call_id], Role.ASSISTANT)
    assert parsed[0].recipient == "functions.get_weather"


# -- requests ---------------------------------------------------------------------------------------


def test_messages_render_as_harmony(harmony_encoding, harmony_oracle):
    """The converted conversation renders token for token as openai-harmony renders it."""
    import openai_harmony as oh

    tools = parse_tools([{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                                                           "parameters": {"type": "object", "properties": {}}}}])
    msgs = chat_to_harmony([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "reasoning_content": "Call it.", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ], tools, "high", date="2025-01-02")
    ours = harmony_encoding.render_conversation_for_completion(Conversation.from_messages(msgs), Role.ASSISTANT)
    theirs = harmony_oracle.render_conversation_for_completion(
        oh.Conversation.from_json(Conversation.from_messages(msgs).to_json()), oh.Role.ASSISTANT)
    assert ours == theirs
    assert [m.channel for m in msgs[2:]] == [None, "analysis", "commentary", "commentary"]


def test_answered_analysis_is_dropped():
    msgs = chat_to_harmony([
        {"role": "user", "content": "a"},
        {"role": "assistant", "reasoning_content": "old thought", "content": "A"},
        {"role": "user", "content": "b"},
    ], [], "low", date="")
    assert [m.channel for m in msgs if m.author.role == Role.ASSISTANT] == ["final"]


def test_fields_refuse_wrong_types():
    f = Fields({"a": "x", "b": True, "c": 1.5, "d": 3})
    with pytest.raises(APIError) as e:
        f.int("a")
    assert e.value.param == "a" and e.value.status == 400
    with pytest.raises(APIError):
        f.int("b")  # a boolean is not an integer
    with pytest.raises(APIError):
        f.int("c")
    assert f.int("d") == 3 and f.float("d") == 3.0 and f.str("missing", "dflt") == "dflt"
    with pytest.raises(APIError):
        Fields([1, 2])


def test_key_check():
    check_key("Bearer k3y", "k3y")
    for header in (None, "", "Bearer wrong", "Basic k3y", "k3y"):
        with pytest.raises(APIError) as e:
            check_key(header, "k3y")
        assert e.value.status == 401


def test_metrics_text_format():
    m = Metrics()
    m.request("chat.completions", 200)
    m.prompt(10, 4)
    m.decoded(3)
    text = m.text()
    assert 'gptoss_requests_total{endpoint="chat.completions",status="200"} 1' in text
    assert "gptoss_prompt_cached_tokens_total 4" in text and "gptoss_cache_hits_total 1" in text
    assert all(line.startswith("#") or len(line.split(" ")) == 2 for line in text.strip().splitlines())
