"""The generation loop, prompt building and run output, driven by scripted fake models (no kernels)."""

from __future__ import annotations

import io
import json
import time

import pytest

from scripted_model import RandomLogitsModel, ScriptedModel

from gptoss_cli.errors import InputError
from gptoss_cli.events import Done, MessageEnd, MessageStart, PromptProcessed, TextDelta, Token, message_kind
from gptoss_cli.generation import Generator
from gptoss_cli.kernel_warmup import ensure_compiled, kernel_fingerprint
from gptoss_cli.harmony import Message, Role
from gptoss_cli.prompt import build_conversation, gather_prompt, tools_from_openai
from gptoss_cli.run_output import make_renderer, stats_line
from gptoss_cli.sampling import SamplingParams

ANSWER = (
    "<|channel|>analysis<|message|>The user greets; greet back.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello there! ✓<|return|>"
)
CALL = (
    "<|channel|>analysis<|message|>Need the weather tool.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"location": "Paris", "unit": "celsius"}<|call|>'
)
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["location"],
            },
        },
    }
]


def _prompt(enc, text="Hi", **kw):
    return enc.render_conversation_for_completion(build_conversation(text, date="2025-01-02", **kw), Role.ASSISTANT)


def _run(enc, model, prompt=None, **kw):
    gen = Generator(model, enc)
    g = gen.generate(prompt if prompt is not None else _prompt(enc), SamplingParams(seed=0), **kw)
    events = list(g)
    return gen, events, g.result


# -- the loop ---------------------------------------------------------------------------


def test_final_and_analysis(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(enc, ANSWER)
    _, events, r = _run(enc, model)
    assert isinstance(events[0], PromptProcessed) and events[0].cached_tokens == 0
    assert isinstance(events[-1], Done) and events[-1].result is r
    assert r.stop_reason == "stop"
    assert r.tokens == model.script  # the stop token is part of the completion
    assert r.completion_tokens == len(model.script)
    assert r.final == "Hello there! ✓"
    assert r.analysis == "The user greets; greet back."
    assert [m.channel for m in r.messages] == ["analysis", "final"]
    assert r.tool_calls == []
    starts = [e for e in events if isinstance(e, MessageStart)]
    assert [(s.channel, s.recipient) for s in starts] == [("analysis", None), ("final", None)]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == r.analysis + r.final
    raw = "".join(e.text for e in events if isinstance(e, Token))
    assert raw == ANSWER
    # the stop token is sampled but never fed
    assert model.cache.n_past == len(_prompt(enc)) + len(model.script) - 1
    assert r.usage() == {"prompt_tokens": len(_prompt(enc)), "completion_tokens": len(model.script)}
    t = r.timings(load_s=1.5)
    assert set(t) >= {"load_s", "prompt_tok_s", "gen_tok_s"} and t["load_s"] == 1.5
    d = r.messages[1].to_dict()
    assert d == {"role": "assistant", "name": None, "content": [{"type": "text", "text": "Hello there! ✓"}], "channel": "final"}


def test_tool_call_stops_at_call(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(enc, CALL + "<|start|>assistant<|channel|>final<|message|>never")
    tools = tools_from_openai(WEATHER_TOOLS)
    _, events, r = _run(enc, model, _prompt(enc, "Weather in Paris?", tools=tools))
    assert r.stop_reason == "tool_call"
    assert r.tokens[-1] == enc.call_id
    assert len(r.tool_calls) == 1
    call = r.tool_calls[0]
    assert (call.name, call.namespace, call.recipient) == ("get_weather", "functions", "functions.get_weather")
    assert call.arguments == {"location": "Paris", "unit": "celsius"}
    assert call.content_type == "<|constrain|>json" and call.channel == "commentary"
    assert call.to_dict()["arguments"] == {"location": "Paris", "unit": "celsius"}
    assert r.final == ""
    assert message_kind(r.messages[-1].channel, r.messages[-1].recipient) == "tool_call"


def test_tool_call_with_bad_json_is_reported_not_raised(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(
        enc, "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{oops<|call|>"
    )
    _, _, r = _run(enc, model)
    (call,) = r.tool_calls
    assert call.arguments is None and call.arguments_text == "{oops" and "not valid JSON" in call.error


def test_max_tokens(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(enc, ANSWER)
    _, _, r = _run(enc, model, max_tokens=5)
    assert r.stop_reason == "max_tokens" and r.tokens == model.script[:5]
    # the open message is finished at the end of the stream
    assert r.messages and r.messages[-1].channel == "analysis"


def test_context_full_and_too_long_prompt(harmony_encoding):
    enc = harmony_encoding
    prompt = _prompt(enc)
    model = ScriptedModel.from_text(enc, ANSWER, context=len(prompt) + 3)
    _, _, r = _run(enc, model, prompt)
    assert r.stop_reason == "context_full"
    assert r.completion_tokens == 4 and model.cache.n_past == model.context
    small = ScriptedModel.from_text(enc, ANSWER, context=len(prompt))
    with pytest.raises(InputError, match=f"the prompt is {len(prompt)} tokens, longer than the context of {len(prompt)}"):
        Generator(small, enc).generate(prompt)
    with pytest.raises(InputError, match="empty"):
        Generator(small, enc).generate([])


def test_interrupt_inside_the_model(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(enc, ANSWER)

    def boom(n):
        if n == 12:
            raise KeyboardInterrupt

    model.on_feed = boom
    gen = Generator(model, enc)
    seen = []
    r = gen.generate(_prompt(enc), SamplingParams(seed=0)).run(seen.append)
    assert r.stop_reason == "interrupted"
    assert r.completion_tokens == 12 and r.tokens == model.script[:12]
    assert isinstance(seen[-1], Done)
    assert any(isinstance(e, MessageEnd) for e in seen)  # the open message was closed
    # the cache state is unknown after an interrupted feed: the next prompt starts afresh
    model.on_feed = None
    resets = model.resets
    g2 = gen.generate(_prompt(enc), SamplingParams(seed=0))
    first = next(iter(g2))
    assert first.cached_tokens == 0 and model.resets == resets + 1


def test_interrupt_in_the_consumer(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(enc, ANSWER)
    g = Generator(model, enc).generate(_prompt(enc))
    shown = []
    try:
        for ev in g:
            shown.append(ev)
            if isinstance(ev, TextDelta) and "final" == g.parser.current_channel:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        rest = g.interrupt()
    assert isinstance(rest[-1], Done) and g.result.stop_reason == "interrupted"
    assert g.result.final == "".join(e.text for e in shown if isinstance(e, TextDelta))[len("The user greets; greet back."):]
    assert g.interrupt() == []  # idempotent


def test_cache_reuse(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(enc, CALL)
    gen = Generator(model, enc)
    p1 = _prompt(enc, "Weather?")
    r1 = gen.generate(p1).run()
    assert gen.cached_tokens == p1 + r1.tokens[:-1]
    tool_result = enc.render(
        Message.from_author_and_content(
            __import__("gptoss_cli.harmony", fromlist=["Author"]).Author.new(Role.TOOL, "functions.get_weather"),
            '{"temp": 20}',
        ).with_channel("commentary")
    )
    p2 = p1 + r1.tokens + tool_result + enc.encode("<|start|>assistant", allow_special=True)
    g2 = gen.generate(p2)
    first = next(iter(g2))
    assert first.cached_tokens == len(p1) + len(r1.tokens) - 1
    assert model.feeds[-1] == p2[first.cached_tokens:]
    list(g2)
    assert g2.result.cached_tokens == first.cached_tokens
    # a prompt that does not extend the cache starts over
    resets = model.resets
    g3 = gen.generate(_prompt(enc, "Something else"))
    assert next(iter(g3)).cached_tokens == 0 and model.resets == resets + 1


def test_seed_determinism(harmony_encoding):
    enc = harmony_encoding
    ordinary = list(range(1000, 3000))

    def sample(seed):
        model = RandomLogitsModel(enc.tokenizer.vocab_size, allowed=ordinary)
        return Generator(model, enc).generate(_prompt(enc), SamplingParams(seed=seed), max_tokens=20).run().tokens

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_ensure_compiled_tells_once(tmp_path):
    class Slow:
        def __init__(self):
            self.calls = 0

        def new_cache(self, context):
            return None

        def forward(self, ids, cache):
            self.calls += 1
            time.sleep(0.15)

    said: list[str] = []
    m = Slow()
    secs = ensure_compiled(m, [], said.append, marker_dir=tmp_path, notice_delay=0.05)
    assert secs is not None and secs >= 0.3 and m.calls == 2
    assert said[0] == "compiling kernels, first run only ..." and said[1].startswith("kernels compiled in ")
    said.clear()
    assert ensure_compiled(m, [], said.append, marker_dir=tmp_path) is None
    assert said == [] and m.calls == 2  # marker found: no warm-up, no notice

    class Fast(Slow):
        def forward(self, ids, cache):
            self.calls += 1

    quick = Fast()
    assert ensure_compiled(quick, [], said.append, marker_dir=tmp_path / "other", notice_delay=5) is None
    assert said == [] and quick.calls == 2  # a warm Numba cache: warmed up silently


def test_kernel_fingerprint_follows_the_kernel_path_and_cpu(monkeypatch):
    """Prompt-cache snapshots and compile markers are keyed by it: another kernel path or CPU
    rounds differently, so it must not share their entries."""
    from gptoss_kernels import linear, simd

    here = kernel_fingerprint([2, 8, 39])
    assert kernel_fingerprint([2, 8, 39]) == here
    assert kernel_fingerprint([2, 8]) != here
    old = linear.set_kernel_path("portable")
    try:
        portable = kernel_fingerprint([2, 8, 39])
    finally:
        linear.set_kernel_path(old)
    assert (portable != here) == (old != "portable")
    monkeypatch.setattr(simd, "host_cpu_name", lambda: "some-other-cpu")
    assert kernel_fingerprint([2, 8, 39]) != here


# -- prompt building ------------------------------------------------------------------------


def test_conversation_carries_date_effort_instructions_and_tools(harmony_encoding):
    enc = harmony_encoding
    tools = tools_from_openai(WEATHER_TOOLS)
    conv = build_conversation("Hi", instructions="Be terse.", reasoning_effort="high", tools=tools, date="2025-01-02")
    text = enc.tokenizer.decode(enc.render_conversation_for_completion(conv, Role.ASSISTANT))
    assert "Current date: 2025-01-02" in text and "Reasoning: high" in text
    assert "# Instructions\n\nBe terse." in text
    assert "namespace functions" in text and "type get_weather" in text
    assert "Calls to these tools must go to the commentary channel: 'functions'." in text
    assert text.endswith("<|start|>user<|message|>Hi<|end|><|start|>assistant")
    low = enc.tokenizer.decode(enc.render_conversation_for_completion(build_conversation("Hi"), Role.ASSISTANT))
    assert "Reasoning: medium" in low and "Current date: " in low and "<|start|>developer" not in low


def test_conversation_matches_openai_harmony(harmony_encoding, harmony_oracle):
    import openai_harmony as oh

    tools = tools_from_openai(WEATHER_TOOLS)
    ours = harmony_encoding.render_conversation_for_completion(
        build_conversation("Hi", instructions="Be terse.", reasoning_effort="low", tools=tools, date="2025-01-02"),
        Role.ASSISTANT,
    )
    sys_content = (
        oh.SystemContent.new().with_reasoning_effort(oh.ReasoningEffort.LOW).with_conversation_start_date("2025-01-02")
    )
    dev = oh.DeveloperContent.new().with_instructions("Be terse.").with_function_tools(
        [oh.ToolDescription.new(t.name, t.description, parameters=t.parameters) for t in tools]
    )
    conv = oh.Conversation.from_messages(
        [
            oh.Message.from_role_and_content(oh.Role.SYSTEM, sys_content),
            oh.Message.from_role_and_content(oh.Role.DEVELOPER, dev),
            oh.Message.from_role_and_content(oh.Role.USER, "Hi"),
        ]
    )
    assert ours == harmony_oracle.render_conversation_for_completion(conv, oh.Role.ASSISTANT)


def test_tools_formats_and_errors():
    flat = tools_from_openai([{"type": "function", "name": "a", "parameters": {"type": "object"}}])
    bare = tools_from_openai({"tools": [{"name": "b", "description": "B"}]})
    assert (flat[0].name, flat[0].description, flat[0].parameters) == ("a", "", {"type": "object"})
    assert (bare[0].name, bare[0].description, bare[0].parameters) == ("b", "B", None)
    for bad, msg in [
        ([{"type": "code_interpreter"}], "only function tools"),
        ([{"type": "function", "function": {}}], "no function name"),
        ([{"name": "x y"}], "letters, digits"),
        ([{"name": "a"}, {"name": "a"}], "defined twice"),
        ([{"name": "a", "parameters": []}], "JSON schema object"),
        ("nope", "expected a JSON list"),
    ]:
        with pytest.raises(InputError, match=msg):
            tools_from_openai(bad)


def test_gather_prompt(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("from file")
    assert gather_prompt("arg", str(f), io.BytesIO(b"from stdin\n")) == "arg\n\nfrom file\n\nfrom stdin\n"
    assert gather_prompt(None, None, io.BytesIO(b"only stdin")) == "only stdin"
    assert gather_prompt("arg", None, io.BytesIO(b"  \n")) == "arg"
    with pytest.raises(InputError, match="standard input is not valid UTF-8"):
        gather_prompt("x", None, io.BytesIO(b"\xff\xfe"))
    f.write_bytes(b"ok \xc3\x28")
    with pytest.raises(InputError, match="prompt file .* is not valid UTF-8"):
        gather_prompt(None, str(f))
    with pytest.raises(InputError, match="prompt file not found"):
        gather_prompt(None, str(tmp_path / "missing.txt"))
    with pytest.raises(InputError, match="not valid UTF-8"):
        gather_prompt("bad \udcff", None)


# -- rendering ---------------------------------------------------------------------------------


def _render(enc, completion, mode, **kw):
    model = ScriptedModel.from_text(enc, completion)
    out, err = io.StringIO(), io.StringIO()
    r = make_renderer(mode, out, err, model="tiny", model_path="/m/tiny.gguf", load_s=0.5, **kw)
    prompt = _prompt(enc)
    r.prompt(enc.tokenizer.decode(prompt))
    result = Generator(model, enc).generate(prompt).run(r.event)
    r.finish(result)
    return out.getvalue(), err.getvalue(), result


def test_text_output_shows_only_the_final_channel(harmony_encoding):
    out, err, _ = _render(harmony_encoding, ANSWER, "text")
    assert out == "Hello there! ✓\n" and err == ""
    out, err, _ = _render(harmony_encoding, ANSWER, "text", show_reasoning=True)
    assert out == "Hello there! ✓\n" and err == "The user greets; greet back.\n"  # StringIO: no colour


def test_text_output_reports_a_tool_call(harmony_encoding):
    out, err, _ = _render(harmony_encoding, CALL, "text")
    assert out == 'tool call: functions.get_weather {"location": "Paris", "unit": "celsius"}\n'
    assert err == ""


def test_text_output_notes_a_missing_answer(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(enc, ANSWER)
    out, err = io.StringIO(), io.StringIO()
    r = make_renderer("text", out, err, model="m", model_path="m")
    res = Generator(model, enc).generate(_prompt(enc), max_tokens=4).run(r.event)
    r.finish(res)
    assert out.getvalue() == "" and "token limit (4)" in err.getvalue()


def test_raw_json_jsonl_output(harmony_encoding):
    enc = harmony_encoding
    out, _, _ = _render(enc, ANSWER, "raw")
    assert out.startswith("<|start|>system<|message|>") and out.endswith("<|start|>assistant" + ANSWER + "\n")

    out, _, res = _render(enc, CALL, "json")
    obj = json.loads(out)
    assert set(obj) >= {"model", "final", "analysis", "messages", "tool_calls", "stop_reason", "usage", "timings"}
    assert obj["stop_reason"] == "tool_call" and obj["final"] == "" and obj["analysis"] == "Need the weather tool."
    assert obj["tool_calls"][0]["name"] == "get_weather"
    assert obj["tool_calls"][0]["arguments"] == {"location": "Paris", "unit": "celsius"}
    assert obj["messages"] == [m.to_dict() for m in res.messages]
    assert obj["usage"] == {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens}
    assert set(obj["timings"]) >= {"load_s", "prompt_tok_s", "gen_tok_s"} and obj["timings"]["load_s"] == 0.5

    out, _, res = _render(enc, ANSWER, "jsonl")
    lines = [json.loads(x) for x in out.splitlines()]
    types = [x["type"] for x in lines]
    assert types[0] == "message_start" and types[-1] == "done"
    assert lines[0]["channel"] == "analysis" and lines[0]["recipient"] is None
    finals = [x["text"] for x in lines if x["type"] == "delta" and x["channel"] == "final"]
    assert "".join(finals) == "Hello there! ✓"
    assert [x["message"]["channel"] for x in lines if x["type"] == "message_end"] == ["analysis", "final"]
    assert lines[-1]["usage"] == res.usage() and lines[-1]["stop_reason"] == "stop"

    out, _, _ = _render(enc, CALL, "jsonl")
    lines = [json.loads(x) for x in out.splitlines()]
    call = [x for x in lines if x["type"] == "tool_call"]
    assert call and call[0]["arguments"] == {"location": "Paris", "unit": "celsius"}
    assert lines[1 + [x["type"] for x in lines[1:]].index("message_start")]["recipient"] == "functions.get_weather"


def test_stats_line(harmony_encoding):
    _, _, res = _render(harmony_encoding, ANSWER, "text")
    line = stats_line(res, 0.25)
    assert line.startswith("gptoss: load 0.25 s") and "tok/s" in line and "stop: stop" in line and "\n" not in line


def test_next_turn_rolls_back_to_the_last_prompt(harmony_encoding, tiny_harmony_gguf):
    """The next chat prompt extends the last prompt but not the reply: only the new part is processed,
    and the continuation equals a fresh run's."""
    from gptoss_cli import load_model

    enc = harmony_encoding
    greedy = SamplingParams(temperature=0)
    model = load_model(tiny_harmony_gguf, threads=1, context=512)
    gen = Generator(model, enc)
    p1 = _prompt(enc, "Hi")
    gen.generate(p1, greedy, max_tokens=150).run()  # longer than the 8-slot window: rings overwritten
    p2 = p1 + enc.encode("<|channel|>final<|message|>Hello<|end|><|start|>user<|message|>Again<|end|>"
                         "<|start|>assistant", allow_special=True)
    g2 = gen.generate(p2, greedy, max_tokens=8)
    assert next(iter(g2)).cached_tokens == len(p1)
    list(g2)
    fresh = Generator(load_model(tiny_harmony_gguf, threads=1, context=512), enc).generate(p2, greedy, max_tokens=8)
    assert g2.result.tokens == fresh.run().tokens


def test_generations_stepped_together_match_each_alone(harmony_encoding, tiny_harmony_gguf):
    """start / accept / advance_together: two seeded generations advanced in one forward pass per
    step each produce a stream ending in Done, and each generator's cache holds exactly its own
    prompt and tokens."""
    from gptoss_cli import load_model
    from gptoss_cli.generation import advance_together

    enc = harmony_encoding
    model = load_model(tiny_harmony_gguf, threads=1, context=512)
    prompts = [_prompt(enc, "Hi"), _prompt(enc, "Something else entirely")]
    gens = [Generator(model, enc) for _ in prompts]
    runs = [g.generate(p, SamplingParams(seed=3 + i), max_tokens=12) for i, (g, p) in enumerate(zip(gens, prompts))]
    logits = [r.start()[1] for r in runs]
    live = list(range(len(runs)))
    while live:
        nxt = []
        for i in live:
            events, t = runs[i].accept(logits[i])
            if t is None:
                assert isinstance(events[-1], Done)
            else:
                nxt.append((i, t))
        if nxt:
            outs = advance_together([(gens[i], [t]) for i, t in nxt])
            for (i, _), out in zip(nxt, outs):
                logits[i] = out
        live = [i for i, _ in nxt]
    for g, p, r in zip(gens, prompts, runs):
        assert r.result is not None and r.result.completion_tokens == 12
        assert g.cached_tokens == p + r.result.tokens[:-1] and g.cache.n_past == len(p) + 11
