"""Structured output in `gptoss serve`: response_format, the Responses API's text.format, and tool arguments.

In-process (tests/test_serve_http.py's server) over a guided random model: it follows a script while
the reply matches it (a +40 logit on the next scripted token), then writes random logits, so at
temperature 1 only the constraint keeps a value valid. The demo model behind a real `gptoss serve`
process answers sums; under a schema its final answer is forced to JSON.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import numpy as np
import openai
import pytest

from scripted_model import FakeCache
from test_serve_http import InProcessServer
from test_serve_process import KEY, ServeProcess

from gptoss_cli.prompt import build_conversation
from gptoss_cli.serve.chat import parse_chat
from gptoss_cli.structured import format_from_openai

ANSWER = {"type": "object", "properties": {"answer": {"type": "integer", "minimum": 0, "maximum": 999}},
          "required": ["answer"], "additionalProperties": False}
WEATHER = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Oslo", "Paris", "Lima"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "pattern": "^[a-z]{1,3}$"},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": WEATHER,
                                           "strict": True}},
         {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}]
RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": True}]
CALL_HEADER = "<|channel|>analysis<|message|>Use the tool.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
SCRIPTS = {
    "weather": CALL_HEADER,
    "sum": '<|channel|>analysis<|message|>Add them.<|end|><|start|>assistant<|channel|>final<|message|>{"answer": 712}<|return|>',
    "call": CALL_HEADER + '{"city": "Oslo", "days": 3, "unit": "c"}<|call|>',
}


class GuidedRandomModel:
    """Random logits per reply position, plus a strong push toward the script the user's text names
    while the reply still matches it."""

    def __init__(self, encoding, context: int = 4096):
        tok = encoding.tokenizer
        self.tok, self.vocab, self.context = tok, tok.vocab_size, context
        self.reply_start = tok.encode("<|start|>assistant", allow_special=True)
        self.scripts = {k: tok.encode(v, allow_special=True) for k, v in SCRIPTS.items()}
        self.pool = np.random.default_rng(7).standard_normal((32, self.vocab)).astype(np.float32) * 2

    def new_cache(self, context: int | None = None) -> FakeCache:
        return FakeCache(self.context if context is None else context)

    def _script(self, fed: list[int]) -> list[int]:
        user = self.tok.decode(fed).rsplit("<|start|>user<|message|>", 1)[-1].split("<|end|>", 1)[0]
        return next((s for k, s in self.scripts.items() if k in user), [])

    def forward(self, ids, cache, all_logits=False):
        cache.fed.extend(int(t) for t in ids)
        fed, n = cache.fed, len(self.reply_start)
        if len(ids) > 1:  # a prompt: it ends where the reply begins
            cache.reply_from = max(i + n for i in range(len(fed) - n + 1) if fed[i:i + n] == self.reply_start)
            cache.script = self._script(fed[:cache.reply_from])
        reply, script = fed[cache.reply_from:], cache.script
        z = self.pool[len(reply) % len(self.pool)].copy()
        if len(reply) < len(script) and script[:len(reply)] == reply:
            z[script[len(reply)]] += 40.0
        return z

    def forward_batch(self, seqs, all_logits=False):
        return [self.forward(ids, cache) for ids, cache in seqs]


@pytest.fixture(scope="module")
def srv(harmony_encoding):
    s = InProcessServer(harmony_encoding, model=GuidedRandomModel(harmony_encoding))
    yield s
    s.close()


def _chat(client, text, **kw):
    return client.chat.completions.create(model="scripted", messages=[{"role": "user", "content": text}], **kw)


def _schema_format(schema, name="answer"):
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


# -- tool arguments -------------------------------------------------------------------------------


def test_tool_arguments_always_parse_under_random_logits(srv):
    client = srv.client()
    for seed in range(40):
        r = _chat(client, f"weather {seed}", tools=TOOLS, temperature=1, seed=seed, max_tokens=300)
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_named_tool_choice_and_responses_tools_parse(srv):
    client = srv.client()
    for seed in range(5):
        r = _chat(client, f"weather {seed}", tools=TOOLS, temperature=1, seed=seed, max_tokens=300,
                  tool_choice={"type": "function", "function": {"name": "get_weather"}})
        jsonschema.validate(json.loads(r.choices[0].message.tool_calls[0].function.arguments), WEATHER)
        resp = client.responses.create(model="scripted", input=f"weather {seed}", tools=RESPONSE_TOOLS,
                                       temperature=1, max_output_tokens=300, extra_body={"seed": seed})
        (fc,) = [item for item in resp.output if item.type == "function_call"]
        assert resp.status == "completed" and fc.status == "completed" and fc.name == "get_weather"
        jsonschema.validate(json.loads(fc.arguments), WEATHER)


# -- a value cut by the token limit -----------------------------------------------------------------


def _cut(srv, script: str, drop: int = 2) -> int:
    """A token limit that stops the scripted reply `drop` tokens before its end: inside the value."""
    return len(srv.model.scripts[script]) - drop


def test_answer_cut_inside_the_value_is_length(srv):
    client, limit = srv.client(), _cut(srv, "sum")
    r = _chat(client, "sum", response_format=_schema_format(ANSWER), max_tokens=limit)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == limit
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.choices[0].message.content)
    chunks = list(_chat(client, "sum", response_format=_schema_format(ANSWER), max_tokens=limit, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["length"]
    whole = _chat(client, "sum", response_format=_schema_format(ANSWER), max_tokens=limit + 2)
    assert whole.choices[0].finish_reason == "stop" and json.loads(whole.choices[0].message.content) == {"answer": 712}
    assert whole.choices[0].message.reasoning_content == "Add them."  # the analysis is not held to the schema


def test_responses_cut_inside_the_value_is_incomplete(srv):
    client = srv.client()
    fmt = {"type": "json_schema", "name": "answer", "schema": ANSWER, "strict": True}
    r = client.responses.create(model="scripted", input="sum", text={"format": fmt},
                                max_output_tokens=_cut(srv, "sum"))
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    (msg,) = [item for item in r.output if item.type == "message"]
    assert msg.status == "incomplete"
    assert r.text.format.type == "json_schema"
    r = client.responses.create(model="scripted", input="call", tools=RESPONSE_TOOLS,
                                max_output_tokens=_cut(srv, "call"))
    (fc,) = [item for item in r.output if item.type == "function_call"]
    assert r.status == "incomplete" and fc.status == "incomplete"
    with client.responses.stream(model="scripted", input="sum", text={"format": fmt},
                                 max_output_tokens=_cut(srv, "sum")) as stream:
        names = [e.type for e in stream]
    assert names[-1] == "response.incomplete"


# -- the prompt and the refusals --------------------------------------------------------------------


def test_prompt_renders_the_format_as_run_does(srv, harmony_encoding):
    body = {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "response_format": _schema_format(ANSWER)}
    req = parse_chat(body, srv.state)
    conv = build_conversation("What is 2 + 2?", reasoning_effort=srv.state.settings.reasoning_effort,
                              response_format=format_from_openai(body["response_format"]))
    assert req.prompt == harmony_encoding.render_conversation_for_completion(conv)
    text = harmony_encoding.tokenizer.decode(req.prompt)
    assert '# Response Formats\n\n## answer\n\n{"type":"object"' in text
    assert req.constraint is not None
    assert parse_chat(dict(body, response_format={"type": "text"}), srv.state).constraint is None


BAD = [
    ("/v1/chat/completions", {"response_format": {"type": "xml"}}, "response_format", "text, json_object or json_schema"),
    ("/v1/chat/completions", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
     "response_format", "json_schema.schema"),
    ("/v1/chat/completions", {"response_format": _schema_format({"type": "object", "properties": {
        "a": {"type": "string", "pattern": "[a-"}}})}, "response_format", "/properties/a/pattern"),
    ("/v1/chat/completions", {"response_format": _schema_format({"type": "obj"})}, "response_format", "obj"),
    ("/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f", "strict": True,
                                                                          "parameters": {"type": "obj"}}}]},
     "tools", "tool f parameters"),
    ("/v1/responses", {"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "obj"}}}},
     "text.format", "obj"),
    ("/v1/responses", {"text": {"format": "json"}}, "text.format", "must be an object"),
]


@pytest.mark.parametrize("path, extra, param, needle", BAD)
def test_bad_formats_are_400_error_objects(srv, path, extra, param, needle):
    body = dict({"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"input": "hi"}, **extra)
    r = httpx.post(srv.url + path, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"
    assert needle in err["message"] and "\n" not in err["message"], err


# -- the demo model behind a real `gptoss serve` ----------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    s = ServeProcess("-v")
    yield s
    s.stop()


def _ask(client, a: int, b: int, **kw):
    kw.setdefault("max_tokens", 300)
    return client.chat.completions.create(model="demo", messages=[{"role": "user", "content": f"What is {a} + {b}?"}],
                                          **kw)


def test_demo_indexes_the_vocabulary_before_it_is_ready(demo):
    lines = []
    while not any(line.startswith("gptoss: loaded") for line in lines):
        lines.append(demo.proc.stderr.readline())
    assert "structured-output vocabulary indexed in" in lines[-1]


def test_demo_json_schema(demo):
    client = demo.client()
    for seed in (1, 2, 3):
        r = _ask(client, 23, 48, seed=seed, response_format=_schema_format(ANSWER))
        m = r.choices[0].message
        assert r.choices[0].finish_reason == "stop", m
        jsonschema.validate(json.loads(m.content), ANSWER)
    chunks = list(_ask(client, 12, 30, seed=3, response_format=_schema_format(ANSWER), stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(content), ANSWER)
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]


def test_demo_json_object_and_responses_text_format(demo):
    client = demo.client()
    # any object: the demo model rarely closes a string it opens, so the seed is one whose object is closed
    r = _ask(client, 5, 6, seed=3, response_format={"type": "json_object"}, max_tokens=100)
    assert r.choices[0].finish_reason == "stop" and isinstance(json.loads(r.choices[0].message.content), dict)
    resp = client.responses.create(model="demo", input="What is 7 + 8?", max_output_tokens=300,
                                   text={"format": {"type": "json_schema", "name": "answer", "schema": ANSWER,
                                                    "strict": True}})
    assert resp.status == "completed"
    jsonschema.validate(json.loads(resp.output_text), ANSWER)


def test_demo_bad_schema_is_400(demo):
    with pytest.raises(openai.BadRequestError) as e:
        _ask(demo.client(), 1, 2, response_format=_schema_format({"type": "object", "properties": {
            "a": {"type": "string", "pattern": "[a-"}}}))
    err = e.value.body
    assert e.value.status_code == 400 and err["param"] == "response_format" and "pattern" in err["message"]
    h = {"authorization": f"Bearer {KEY}"}
    assert httpx.get(demo.url + "/health", headers=h).status_code == 200  # still serving
