"""`gptoss serve`'s HTTP mapping, in-process: the real app and scheduler under uvicorn on a thread,
over scripted models (tests/scripted_model.py), driven through the official `openai` package and httpx.

The scripted model picks its completion from the prompt (a tool result in it: the answer after
the tool; otherwise the rule whose needle the last user message holds), so tool-call round
trips, odd Harmony output and slow streams are exact and fast. The demo model over a real
`gptoss serve` process is tests/test_serve_process.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import uvicorn

from scripted_model import ScriptedModel

from gptoss_cli.generation import Generator
from gptoss_cli.options import SERVE, Settings, resolve
from gptoss_cli.serve.app import build_app
from gptoss_cli.serve.scheduler import Scheduler
from gptoss_cli.serve.server import _bind
from gptoss_cli.serve.state import ServerState

ANSWER = (
    "<|channel|>analysis<|message|>The user greets; greet back.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello there!<|return|>"
)
CALL = (
    "<|channel|>analysis<|message|>Need the weather tool.<|end|>"
    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
    '<|message|>{"location": "Paris"}<|call|>'
)
AFTER_TOOL = (
    "<|channel|>analysis<|message|>The tool says 21.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>It is 21 C in Paris.<|return|>"
)
LONG = "<|channel|>final<|message|>" + "la " * 400 + "<|return|>"
WEATHER_TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}]
#: user text -> the completion the scripted model writes
SCRIPTS = {
    "weather": CALL,
    "long": LONG,
    "bad header": "<|channel|>final junk words here<|message|>text<|return|>",
    "to in role": '<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"location": "Oslo"}<|call|>',
    "analysis call": '<|channel|>analysis to=functions.get_weather <|constrain|>json<|message|>{"location": "Rome"}<|call|>',
    "odd channel": "<|channel|>scratchpad<|message|>thinking out loud<|end|><|start|>assistant<|channel|>final<|message|>done<|return|>",
    "no harmony": "plain words with no header<|return|>",
    "stop me": "<|channel|>final<|message|>one two STOP three<|return|>",
}


class PromptScriptModel(ScriptedModel):
    """Chooses its script from each prompt; forward_batch runs the sequences one after another."""

    def __init__(self, encoding, delay: float = 0.0, context: int = 4096):
        self.encoding = encoding
        self.scripts = {k: encoding.tokenizer.encode(v, allow_special=True) for k, v in SCRIPTS.items()}
        self.answer = encoding.tokenizer.encode(ANSWER, allow_special=True)
        self.after_tool = encoding.tokenizer.encode(AFTER_TOOL, allow_special=True)
        self.tool_marker = encoding.tokenizer.encode("to=assistant")
        self.delay = delay
        self.fed_tokens = 0
        super().__init__(self.answer, encoding.tokenizer.vocab_size, context=context)

    def _choose(self, fed: list[int]) -> list[int]:
        text = self.encoding.tokenizer.decode(fed)
        last_user = text.rsplit("<|start|>user<|message|>", 1)[-1]
        if "agent loop" in last_user and last_user.count("to=assistant") < 5:
            return self.scripts["weather"]  # call again, five times
        if "to=assistant" in last_user:
            return self.after_tool
        for needle, script in self.scripts.items():
            if needle in last_user.split("<|end|>", 1)[0]:
                return script
        return self.answer

    def forward(self, ids, cache, all_logits=False):
        ids = [int(t) for t in ids]
        self.fed_tokens += len(ids)
        if self.delay:
            time.sleep(self.delay)
        if len(ids) > 1:
            cache.script = self._choose(cache.fed + ids)
        self.script = getattr(cache, "script", self.answer)
        return super().forward(ids, cache, all_logits)

    def forward_batch(self, seqs, all_logits=False):
        return [self.forward(ids, cache, all_logits) for ids, cache in seqs]


class FakeLoaded:
    """What the server needs of a LoadedModel, over a scripted model."""

    def __init__(self, model, encoding):
        self.model = model
        self.encoding = encoding
        self.tokenizer = encoding.tokenizer
        self.context = model.context
        self.fingerprint = "scripted"
        self.path = Path("scripted.gguf")

    def generator(self):
        return Generator(self.model, self.encoding)

    def new_cache(self):
        return self.model.new_cache()

    def forward(self, tokens, cache, all_logits=False):
        import numpy as np

        rows = [self.model.forward([t], cache) for t in tokens]
        return np.stack(rows) if all_logits else rows[-1]


class InProcessServer:
    def __init__(self, encoding, *, api_key=None, parallel=2, max_queue=4, delay=0.0, context=4096, model=None):
        settings = resolve(SERVE, _settings(api_key=api_key, parallel=parallel, max_queue=max_queue), config={})
        self.model = model if model is not None else PromptScriptModel(encoding, delay=delay, context=context)
        self.state = ServerState(settings, Path("scripted.gguf"), log=lambda line: None)
        lm = FakeLoaded(self.model, encoding)
        self.scheduler = Scheduler(lm, parallel, max_queue, self.state.metrics)
        self.scheduler.start()
        self.state.set_model(lm, self.scheduler)
        sock = _bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(build_app(self.state), log_config=None, access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the in-process server did not start"
            time.sleep(0.01)

    def client(self, key="none", **kw):
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kw)

    def close(self):
        self.server.should_exit = True
        self.thread.join(10)
        self.scheduler.stop()


def _settings(**given):
    values = {name: None for name in Settings.__dataclass_fields__}
    values.update(given)
    return Settings(**values)


@pytest.fixture(scope="module")
def srv(harmony_encoding):
    s = InProcessServer(harmony_encoding)
    yield s
    s.close()


def _chat(client, text, **kw):
    return client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": text}], **kw)


# -- chat completions -----------------------------------------------------------------


def test_answer_and_reasoning(srv):
    r = _chat(srv.client(), "hello")
    m = r.choices[0].message
    assert m.content == "Hello there!"
    assert m.reasoning_content == "The user greets; greet back."
    assert r.choices[0].finish_reason == "stop"
    assert r.object == "chat.completion" and r.model == "scripted"
    u = r.usage
    assert u.completion_tokens == len(srv.model.answer)
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    assert 0 < u.completion_tokens_details.reasoning_tokens < u.completion_tokens
    assert u.prompt_tokens_details.cached_tokens >= 0


def test_stream_matches_non_stream(srv):
    chunks = list(_chat(srv.client(), "hello", stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert reasoning == "The user greets; greet back." and content == "Hello there!"
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(srv.model.answer)
    assert all(c.usage is None for c in chunks[:-1])


def test_stream_ends_with_done(srv):
    with httpx.stream("POST", srv.url + "/v1/chat/completions",
                      json={"messages": [{"role": "user", "content": "hello"}], "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_tool_call_round_trip(srv):
    client = srv.client()
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(model="scripted", messages=messages, tools=WEATHER_TOOLS)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    assert call.id.startswith("call_")
    assert choice.message.reasoning_content == "Need the weather tool."
    # the client sends the call back with its reasoning, and the tool's result by id
    messages.append({"role": "assistant", "content": None, "reasoning_content": choice.message.reasoning_content,
                     "tool_calls": [call.model_dump()]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'})
    r2 = client.chat.completions.create(model="scripted", messages=messages, tools=WEATHER_TOOLS)
    assert r2.choices[0].message.content == "It is 21 C in Paris."
    assert r2.choices[0].finish_reason == "stop"
    # the second prompt continued the first one's tokens: only the tool message and the new header computed
    u = r2.usage
    assert u.prompt_tokens - u.prompt_tokens_details.cached_tokens < 30


def test_tool_call_streamed(srv):
    chunks = list(_chat(srv.client(), "weather please", tools=WEATHER_TOOLS, stream=True))
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls[0].id.startswith("call_") and calls[0].function.name == "get_weather"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls)) == {"location": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_tool_choice_none_leaves_tools_out_and_reports_text(srv):
    r = _chat(srv.client(), "weather please", tools=WEATHER_TOOLS, tool_choice="none")
    # with no tools in the request, the model's call is not a known tool: returned as text, never an error
    assert r.choices[0].message.tool_calls is None
    assert '{"location": "Paris"}' in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("text, expect", [
    ("bad header", "content"),
    ("to in role", "call"),
    ("analysis call", "call"),
    ("odd channel", "content"),
    ("no harmony", "content"),
])
def test_odd_harmony_never_fails(srv, text, expect):
    # without tools nothing is constrained: a call to no declared tool is text (answer or reasoning)
    m = _chat(srv.client(), text).choices[0].message
    assert (m.content or getattr(m, "reasoning_content", None)) and not m.tool_calls
    assert bool(m.content) == (expect == "content" or text == "to in role")
    # with tools the constraint holds every header to Harmony (a call: commentary, a declared tool,
    # arguments to its schema), so a model off its script is steered, cut at max_tokens, never failed
    r = _chat(srv.client(), text, tools=WEATHER_TOOLS, max_tokens=40)
    m, finish = r.choices[0].message, r.choices[0].finish_reason
    assert finish in ("stop", "tool_calls", "length")
    if finish == "tool_calls":
        assert m.tool_calls[0].function.name == "get_weather" and json.loads(m.tool_calls[0].function.arguments)


def test_stop_strings_cut_the_answer(srv):
    r = _chat(srv.client(), "stop me", stop=["STOP"])
    assert r.choices[0].message.content == "one two "
    assert r.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in _chat(srv.client(), "stop me", stop="TOP", stream=True)
                       if c.choices)
    assert streamed == "one two S"


def test_max_tokens_gives_length(srv):
    r = _chat(srv.client(), "long", max_completion_tokens=7)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 7
    r = _chat(srv.client(), "long", max_tokens=5)
    assert r.usage.completion_tokens == 5


def test_logprobs(srv):
    r = _chat(srv.client(), "hello", logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert "".join(e.token for e in content) == "Hello there!"
    assert all(e.logprob == pytest.approx(0.0, abs=1e-6) and len(e.top_logprobs) == 2 for e in content)


def test_models_and_unknown_model(srv):
    client = srv.client()
    assert [m.id for m in client.models.list()] == ["scripted"]
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("body, param", [
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": "warm"}, "temperature"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "extreme"}, "reasoning_effort"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "retrieval"}]}, "tools"),
    ({"messages": [{"role": "user", "content": "hi"}], "tools": WEATHER_TOOLS, "tool_choice": {"type": "function",
      "function": {"name": "nope"}}}, "tool_choice"),
    ({"messages": [{"role": "tool", "tool_call_id": "call_x", "content": "1"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [1, 2]}, "stop"),
    ({"messages": [{"role": "user", "content": "hi"}], "seed": 1.5}, "seed"),
])
def test_bad_requests_are_400_error_objects(srv, body, param):
    r = httpx.post(srv.url + "/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_malformed_json_and_big_body(srv):
    r = httpx.post(srv.url + "/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    big = b'{"messages": [{"role": "user", "content": "' + b"a" * (8 * 1024 * 1024) + b'"}]}'
    r = httpx.post(srv.url + "/v1/chat/completions", content=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert _chat(srv.client(), "hello").choices[0].message.content == "Hello there!"  # still serving


def test_prompt_longer_than_context(srv):
    r = httpx.post(srv.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "word " * 5000}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


def test_unknown_route_is_an_error_object(srv):
    r = httpx.get(srv.url + "/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_metrics_text(srv):
    _chat(srv.client(), "hello")
    text = httpx.get(srv.url + "/metrics").text
    assert 'gptoss_requests_total{endpoint="chat.completions",status="200"}' in text
    for name in ("prompt_tokens_total", "completion_tokens_total", "cache_hits_total", "queue_depth",
                 "decode_tokens_per_second"):
        assert f"gptoss_{name} " in text


# -- the key ----------------------------------------------------------------------------------


def test_api_key(harmony_encoding):
    s = InProcessServer(harmony_encoding, api_key="sekret")
    try:
        assert httpx.get(s.url + "/health").status_code == 200  # no key needed
        with pytest.raises(openai.AuthenticationError):
            _chat(s.client("wrong"), "hello")
        assert httpx.get(s.url + "/v1/models").status_code == 401
        assert httpx.get(s.url + "/metrics", headers={"authorization": "Bearer sekret"}).status_code == 200
        assert _chat(s.client("sekret"), "hello").choices[0].message.content == "Hello there!"
    finally:
        s.close()


# -- the scheduler ----------------------------------------------------------------------------


def test_disconnect_cancels_within_a_token(harmony_encoding):
    s = InProcessServer(harmony_encoding, delay=0.01)
    try:
        with httpx.stream("POST", s.url + "/v1/chat/completions",
                          json={"messages": [{"role": "user", "content": "long"}], "stream": True}) as r:
            for i, _ in enumerate(r.iter_lines()):
                if i > 10:
                    break
        deadline = time.monotonic() + 5
        while s.state.metrics.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert s.state.metrics.active == 0
        fed = s.model.fed_tokens
        time.sleep(0.2)
        assert s.model.fed_tokens == fed  # nothing runs after the cancel
        assert fed < 200  # of the 400-word script
    finally:
        s.close()


def test_queue_full_is_429_with_retry_after(harmony_encoding):
    s = InProcessServer(harmony_encoding, parallel=1, max_queue=1, delay=0.01)
    try:
        body = {"messages": [{"role": "user", "content": "long"}], "max_tokens": 100}
        results = []

        def post():
            results.append(httpx.post(s.url + "/v1/chat/completions", json=body, timeout=60))

        threads = [threading.Thread(target=post) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join()
        codes = sorted(r.status_code for r in results)
        assert codes.count(200) >= 2 and 429 in codes, codes
        refused = next(r for r in results if r.status_code == 429)
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["type"] == "rate_limit_error"
    finally:
        s.close()


def test_concurrent_requests_batch_and_all_answer(harmony_encoding):
    s = InProcessServer(harmony_encoding, parallel=2, max_queue=16)
    try:
        client = s.client()
        out: list = []

        def ask(i):
            out.append(_chat(client, "hello" if i % 2 else "weather", tools=WEATHER_TOOLS))

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(out) == 8
        assert sum(r.choices[0].message.content == "Hello there!" for r in out) == 4
        assert sum(r.choices[0].finish_reason == "tool_calls" for r in out) == 4
    finally:
        s.close()


def test_a_long_prompt_is_processed_between_the_others_decode_steps(harmony_encoding):
    """A new request's prompt runs one chunk per scheduler step: a request already decoding gets a
    token after each chunk instead of waiting for the whole prompt."""
    s = InProcessServer(harmony_encoding, parallel=2, max_queue=4, delay=0.002)
    model = s.model
    model.prefill_chunk = 16  # the Generator feeds prompts in pieces of this many tokens
    calls: list[tuple[int, int]] = []  # (tokens fed, which cache) of every forward call, in order
    forward = model.forward

    def logged(ids, cache, all_logits=False):
        calls.append((len(ids), id(cache)))
        return forward(ids, cache, all_logits)

    model.forward = logged
    try:
        client = s.client()
        got: dict = {}
        first = threading.Thread(target=lambda: got.__setitem__("long", _chat(client, "long", max_tokens=300)))
        first.start()
        while sum(n == 1 for n, _ in calls) < 5:  # the first request is decoding
            time.sleep(0.01)
        question = "hello " + "and more words " * 60  # about 200 prompt tokens: 13 chunks
        got["hello"] = _chat(client, question)
        first.join()
        assert got["hello"].choices[0].message.content == "Hello there!"
        assert got["long"].choices[0].finish_reason == "length"
        decoding = next(i for i, (n, _) in enumerate(calls) if n == 1)  # the first request's first token
        long_cache = calls[decoding][1]
        chunks = [i for i, (n, c) in enumerate(calls) if i > decoding and n == 16 and c != long_cache]
        between = [c for n, c in calls[chunks[0] : chunks[-1]] if n == 1 and c == long_cache]
        assert len(chunks) >= 10 and len(between) >= len(chunks) - 1, calls
    finally:
        s.close()


def _agent_loop(client) -> list[int]:
    """5 tool round trips and the answer; the prompt tokens each request computed."""
    messages = [{"role": "system", "content": "You are an agent."},
                {"role": "user", "content": "agent loop: check the weather five times"}]
    computed = []
    for turn in range(6):
        r = client.chat.completions.create(model="scripted", messages=messages, tools=WEATHER_TOOLS)
        u = r.usage
        computed.append(u.prompt_tokens - u.prompt_tokens_details.cached_tokens)
        m = r.choices[0].message
        if turn == 5:
            assert m.content == "It is 21 C in Paris."
            break
        (call,) = m.tool_calls
        messages.append({"role": "assistant", "content": None, "reasoning_content": m.reasoning_content,
                         "tool_calls": [call.model_dump()]})
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f'{{"temp": {20 + turn}}}'})
    return computed


def test_agent_loop_computes_only_each_new_turn(harmony_encoding):
    """Each turn's prompt continues the tokens the previous one left in its slot: it computes the call's
    <|call|> (a stop token is sampled, never fed), the tool message and <|start|>assistant, nothing more.
    Without the continuations (a fresh render puts to= before the channel) the call is computed again."""
    from gptoss_cli.serve.messages import tool_message

    per_turn = len(harmony_encoding.render(tool_message("get_weather", '{"temp": 20}'))) + 3
    s = InProcessServer(harmony_encoding)
    try:
        with_continuations = _agent_loop(s.client())
        s.state.continuations = None
        without = _agent_loop(s.client())
    finally:
        s.close()
    print(f"\nagent loop, prompt tokens computed per request: {with_continuations} (continuations), {without} (none)")
    assert with_continuations[1:] == [per_turn] * 5, with_continuations
    assert all(w > c for w, c in zip(without[1:], with_continuations[1:])), without


# -- the Responses API -------------------------------------------------------------------------

RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "description": "Current weather for a city.",
                   "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}]


def test_responses_text_input(srv):
    r = srv.client().responses.create(model="scripted", input="hello", instructions="Be nice.",
                                      reasoning={"effort": "low"})
    assert r.status == "completed" and r.output_text == "Hello there!"
    kinds = [item.type for item in r.output]
    assert kinds == ["reasoning", "message"]
    assert r.output[0].content[0].text == "The user greets; greet back."
    assert r.usage.output_tokens == len(srv.model.answer) and r.usage.output_tokens_details.reasoning_tokens > 0
    assert r.reasoning.effort == "low"


def test_responses_stream_events(srv):
    events = list(srv.client().responses.create(model="scripted", input="hello", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    for t in ("response.output_item.added", "response.reasoning_text.delta", "response.output_text.delta",
              "response.output_text.done", "response.output_item.done"):
        assert t in types
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello there!" and events[-1].response.output_text == "Hello there!"


def test_responses_function_call_and_previous_response_id(srv):
    client = srv.client()
    r = client.responses.create(model="scripted", input="weather please", tools=RESPONSE_TOOLS)
    call = next(item for item in r.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments) == {"location": "Paris"}
    r2 = client.responses.create(model="scripted", previous_response_id=r.id, tools=RESPONSE_TOOLS,
                                 input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"t": 21}'}])
    assert r2.output_text == "It is 21 C in Paris." and r2.previous_response_id == r.id
    assert r2.usage.input_tokens - r2.usage.input_tokens_details.cached_tokens < 30  # continued in the cache


def test_responses_stream_function_call_arguments(srv):
    events = list(srv.client().responses.create(model="scripted", input="weather please", tools=RESPONSE_TOOLS,
                                                stream=True))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"location": "Paris"}
    assert any(e.type == "response.function_call_arguments.done" for e in events)


def test_responses_items_input_and_errors(srv):
    client = srv.client()
    r = client.responses.create(model="scripted", input=[
        {"role": "developer", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
    ], max_output_tokens=3)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="scripted", input="hi", previous_response_id="resp_nope")
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="scripted", input=[{"type": "function_call_output", "call_id": "x", "output": "1"}])


# -- raw completions ------------------------------------------------------------------------


def test_completions_text_echo_and_logprobs(srv):
    client = srv.client()
    prompt = "<|start|>user<|message|>hello<|end|><|start|>assistant"
    r = client.completions.create(model="scripted", prompt=prompt, max_tokens=6, logprobs=1)
    text = r.choices[0].text
    assert text == srv.model.encoding.tokenizer.decode(srv.model.answer[:6])
    assert r.choices[0].finish_reason == "length" and len(r.choices[0].logprobs.token_logprobs) == 6
    r = client.completions.create(model="scripted", prompt=prompt, max_tokens=0, echo=True, logprobs=0)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == prompt and lp.token_logprobs[0] is None
    assert len(lp.tokens) == len(srv.model.encoding.tokenizer.encode(prompt, allow_special=True))
    ids = srv.model.encoding.tokenizer.encode("hello")
    r = client.completions.create(model="scripted", prompt=ids, max_tokens=2, stream=True)
    assert len([c for c in r if c.choices and c.choices[0].text]) == 2


def test_completions_bad_prompts(srv):
    for body in ({"prompt": 5}, {"prompt": [1, "a"]}, {"prompt": [-1]}, {"prompt": ["a", "b"]},
                 {"prompt": "x", "max_tokens": 0}):
        r = httpx.post(srv.url + "/v1/completions", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] in ("prompt", "max_tokens"), (body, r.text)
