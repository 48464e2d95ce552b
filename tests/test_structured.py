"""Structured output on the real o200k_harmony vocabulary: every constrained value parses and validates.

A random model rarely reaches `<|channel|>final<|message|>` by itself, so a
small driver forces the Harmony structure (an analysis message, then the final
header) and lets random logits at temperature 1, under the constraint's mask,
choose everything else: 100 seeds per schema, every value valid. The analysis
message of the same runs is drawn with no mask at all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import jsonschema
import numpy as np
import pytest

from scripted_model import ScriptedModel

from gptoss_cli.generation import Generator
from gptoss_cli.harmony.model import ToolDescription
from gptoss_cli.sampling import Sampler, SamplingParams
from gptoss_cli.structured import DONE, FREE, HEADER, VALUE, constraint_for, make_plan
from gptoss_cli.structured.formats import grammar_format, json_object_format, json_schema_format
from gptoss_cli.structured.header import CHANNELS

RUNS = 100
MAX_VALUE_TOKENS = 800

SCHEMAS = {
    "nested objects": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 1, "maximum": 999},
                    "active": {"type": "boolean"},
                    "address": {
                        "type": "object",
                        "properties": {"zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
                        "required": ["zip"],
                        "additionalProperties": False,
                    },
                },
                "required": ["id", "active", "address"],
                "additionalProperties": False,
            },
            "note": {"type": ["string", "null"], "maxLength": 4},
        },
        "required": ["user", "note"],
        "additionalProperties": False,
    },
    "arrays": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"x": {"type": "integer", "minimum": -5, "maximum": 5}, "tags": {
                "type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3}},
            "required": ["x", "tags"],
            "additionalProperties": False,
        },
        "minItems": 1,
        "maxItems": 4,
    },
    "enums": {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "size": {"enum": [1, 2.5, None, True]},
            "kind": {"const": "fixed"},
        },
        "required": ["color", "size", "kind"],
        "additionalProperties": False,
    },
    "numbers with bounds": {
        "type": "object",
        "properties": {
            "t": {"type": "number", "minimum": -10.5, "maximum": 40},
            "n": {"type": "integer", "exclusiveMinimum": 0, "maximum": 10},
            "big": {"type": "integer", "minimum": 1000, "maximum": 100000},
        },
        "required": ["t", "n", "big"],
        "additionalProperties": False,
    },
    "strings with patterns": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
            "word": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 8},
            "phone": {"type": "string", "pattern": "^\\+?[0-9]{3} [0-9]{4}$"},
        },
        "required": ["code", "word", "phone"],
        "additionalProperties": False,
    },
}

WEATHER = {
    "type": "object",
    "properties": {"city": {"enum": ["Oslo", "Paris"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
CONVERT = {
    "type": "object",
    "properties": {"amount": {"type": "integer", "minimum": 0, "maximum": 100},
                   "unit": {"type": "string", "pattern": "^(kg|lb)$"}},
    "required": ["amount", "unit"],
    "additionalProperties": False,
}
TOOLS = [ToolDescription("get_weather", "Weather.", WEATHER), ToolDescription("convert-units", "Convert.", CONVERT)]


@pytest.fixture(scope="module")
def tok(o200k_tokenizer):
    return o200k_tokenizer


def ids(tok, text: str) -> list[int]:
    return tok.encode(text, allow_special=True)


class Logits:
    """Random logits at temperature 1: one of a shared pool of normal vectors per step (cheap for 201k tokens)."""

    _pools: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __init__(self, tok, seed: int, boost: list[int] = ()):
        if id(tok) not in self._pools:
            pool = np.random.default_rng(12345).standard_normal((16, tok.vocab_size)).astype(np.float32) * 2
            plain = pool.copy()
            plain[:, sorted(tok.special_tokens.values())] = -1e9  # free text stays text (no <|end|> by chance)
            self._pools[id(tok)] = (pool, plain)
        self.pool, self.plain = self._pools[id(tok)]
        self.rng = np.random.default_rng(seed)
        self.boost = list(boost)

    def next(self, plain: bool = False) -> np.ndarray:
        z = (self.plain if plain else self.pool)[self.rng.integers(len(self.pool))]
        if self.boost:
            z = z.copy()
            z[self.boost] += 16.0
        return z


@dataclass
class Run:
    analysis: list[int]
    value: list[int]
    first_value_mask: np.ndarray | None
    constraint: object


class Driver:
    """Forces Harmony structure into a constraint and samples the rest under its mask."""

    def __init__(self, tok, constraint, seed: int, boost: list[int] = ()):
        self.tok, self.c = tok, constraint
        self.sampler = Sampler(SamplingParams(temperature=1.0, seed=seed))
        self.logits = Logits(tok, seed, boost)

    def force(self, text: str) -> None:
        for t in ids(self.tok, text):
            mask = self.c.allowed()
            assert mask is None or mask[t], f"{self.tok.decode([t])!r} refused in phase {self.c.phase}"
            self.c.consume(t)

    def free(self, n: int) -> list[int]:
        out = []
        for _ in range(n):
            assert self.c.allowed() is None, "free text must not be masked"
            t = self.sampler.sample(self.logits.next(plain=True))
            self.c.consume(t)
            out.append(t)
        return out

    def sample(self, limit: int = MAX_VALUE_TOKENS, phases: tuple[str, ...] = (HEADER, VALUE)) -> list[int]:
        out = []
        while self.c.phase in phases and len(out) < limit:
            t = self.sampler.sample(self.logits.next(), allowed=self.c.allowed())
            self.c.consume(t)
            out.append(t)
        return out


def run_final(tok, plan, seed: int, boost: list[int] = ()) -> Run:
    d = Driver(tok, plan.constraint(), seed, boost)
    d.force("<|channel|>analysis<|message|>")
    analysis = d.free(6)
    d.force("<|end|><|start|>assistant<|channel|>final<|message|>")
    assert d.c.phase == VALUE
    first = d.c.allowed()
    return Run(analysis, d.sample(), first, d.c)


def value_text(tok, run: Run, end: str) -> str:
    assert run.value and run.value[-1] == tok.token_id(end), tok.decode(run.value)[-80:]
    return tok.decode(run.value[:-1])


# -- the final message ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_every_final_value_parses_and_validates_over_100_seeds(tok, name):
    schema = SCHEMAS[name]
    plan = make_plan(tok, json_schema_format(schema, name))
    forbidden_in_analysis = 0
    for seed in range(RUNS):
        run = run_final(tok, plan, seed)
        text = value_text(tok, run, "<|return|>")
        jsonschema.validate(json.loads(text), schema)
        assert run.constraint.complete and run.constraint.phase == DONE and run.constraint.error is None
        forbidden_in_analysis += any(not run.first_value_mask[t] for t in run.analysis)
    # the same runs' analysis is free text the schema would never allow
    assert forbidden_in_analysis == RUNS


def test_any_json_object_and_a_lark_grammar(tok):
    plan = make_plan(tok, json_object_format())
    closing = [ids(tok, c)[0] for c in ('"', "}", "]")]  # free keys and strings end some time
    for seed in range(30):
        run = run_final(tok, plan, seed, closing)
        assert isinstance(json.loads(value_text(tok, run, "<|return|>")), dict)
    g = grammar_format('start: "yes" | "no" | NUM "!"\nNUM: /[0-9]{1,3}/\n', "grammar", "answer")
    plan = make_plan(tok, g)
    for seed in range(30):
        text = value_text(tok, run_final(tok, plan, seed), "<|return|>")
        assert text in ("yes", "no") or (text.endswith("!") and text[:-1].isdigit() and len(text) <= 4), text


def test_only_return_may_follow_a_complete_value(tok):
    c = make_plan(tok, json_schema_format({"enum": ["a"]}, "s")).constraint()
    Driver(tok, c, 0).force('<|channel|>final<|message|>"a"')
    mask = c.allowed()
    assert np.flatnonzero(mask).tolist() == [tok.token_id("<|return|>")]


def test_final_text_is_free_without_a_format_and_other_channels_always(tok):
    c = make_plan(tok, None, TOOLS).constraint()
    d = Driver(tok, c, 1)
    d.force("<|channel|>final<|message|>")
    assert c.phase == FREE and c.allowed() is None
    c = make_plan(tok, json_object_format()).constraint()
    d = Driver(tok, c, 1)
    d.force("<|channel|>commentary<|message|>")
    assert c.phase == FREE and c.allowed() is None
    d.force("Let me think.<|end|><|start|>assistant<|channel|>analysis<|message|>")
    assert c.phase == FREE


def test_a_value_cut_short_is_not_complete(tok):
    c = make_plan(tok, json_schema_format(SCHEMAS["enums"], "s")).constraint()
    Driver(tok, c, 0).force('<|channel|>final<|message|>{"color":"re')
    assert c.phase == VALUE and not c.complete


# -- headers and tool calls --------------------------------------------------------------------------


def test_headers_name_only_declared_channels_and_tools_and_calls_always_parse(tok):
    plan = make_plan(tok, json_schema_format(SCHEMAS["enums"], "s"), TOOLS)
    schemas = {"functions.get_weather": WEATHER, "functions.convert-units": CONVERT}
    seen = set()
    for seed in range(RUNS):
        d = Driver(tok, plan.constraint(), 1000 + seed)
        if seed % 2:  # a later message: the header starts after <|end|>
            d.force("<|channel|>analysis<|message|>")
            d.free(3)
            d.force("<|end|>")
        header = d.sample(limit=40, phases=(HEADER,))
        c = d.c
        assert c.phase in (FREE, VALUE), tok.decode(header)
        assert c.channel in CHANNELS
        seen.add(c.recipient or c.channel)
        if c.recipient is None:
            continue
        assert c.recipient in schemas and c.channel == "commentary"
        assert tok.decode(header).endswith("<|constrain|>json<|message|>")
        run = Run([], d.sample(), None, c)
        jsonschema.validate(json.loads(value_text(tok, run, "<|call|>")), schemas[c.recipient])
        assert c.complete
    assert {"functions.get_weather", "functions.convert-units"} <= seen


def test_the_recipient_may_come_before_the_channel(tok):
    c = make_plan(tok, None, TOOLS).constraint()
    Driver(tok, c, 0).force(' to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"city":"Oslo"')
    assert c.phase == VALUE and c.recipient == "functions.get_weather"


def test_undeclared_tools_and_channels_are_refused(tok):
    plan = make_plan(tok, None, TOOLS)
    for text in ("<|channel|>commentary to=functions.delete_all", "<|channel|>shout", "<|channel|>analysis to=python"):
        c = plan.constraint()
        mask_ok = True
        for t in ids(tok, text):
            mask = c.allowed()
            if mask is not None and not mask[t]:
                mask_ok = False
                break
            c.consume(t)
        assert not mask_ok, text


def test_without_tools_no_recipient_is_allowed(tok):
    c = make_plan(tok, json_object_format()).constraint()
    Driver(tok, c, 0).force("<|channel|>commentary")
    mask = c.allowed()
    assert not mask[ids(tok, " to")[0]] and mask[tok.token_id("<|message|>")]


def test_a_token_outside_the_mask_stops_the_constraint_with_a_reason(tok):
    c = make_plan(tok, json_object_format()).constraint()
    c.consume(ids(tok, "hello")[0])
    assert c.phase == DONE and "Harmony header" in c.error and c.allowed() is None


def test_tool_without_parameters_takes_any_json_object(tok):
    c = make_plan(tok, None, [ToolDescription("ping", "Ping.", None)]).constraint()
    Driver(tok, c, 0).force('<|channel|>commentary to=functions.ping <|constrain|>json<|message|>{"any": [1, {"x": null}]}')
    assert c.allowed()[tok.token_id("<|call|>")]


def test_nothing_to_constrain_gives_no_plan(tok):
    assert make_plan(tok, None, None) is None and constraint_for(None, None, tok) is None
    assert constraint_for({"type": "text"}, [], tok) is None


def test_constraint_for_takes_openai_objects(tok):
    c = constraint_for(
        {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER, "strict": True}},
        [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER, "strict": True}}], tok,
    )
    Driver(tok, c, 0).force('<|channel|>final<|message|>{"city":"Paris","days":3}')
    assert c.allowed()[tok.token_id("<|return|>")]
    c = constraint_for({"type": "json_schema", "name": "w", "schema": WEATHER}, None, tok)  # Responses API text.format
    assert c.plan.response_format.name == "w"


# -- through the generation loop ------------------------------------------------------------------------


def test_generation_loop_applies_the_mask_and_stops_at_return(harmony_encoding):
    """A scripted model reaches the final header, then puts no mass on any allowed token:
    the sampler draws uniformly among the allowed ones, and the value still validates."""
    enc = harmony_encoding
    schema = SCHEMAS["enums"]
    model = ScriptedModel.from_text(enc, "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant"
                                    "<|channel|>final<|message|>")
    for seed in range(10):
        gen = Generator(model, enc)
        c = make_plan(enc.tokenizer, json_schema_format(schema, "s")).constraint()
        prompt = enc.tokenizer.encode("<|start|>user<|message|>hi<|end|><|start|>assistant", allow_special=True)
        result = gen.generate(prompt, SamplingParams(seed=seed), max_tokens=300, constraint=c).run()
        assert result.stop_reason == "stop"
        final = [m for m in result.messages if m.channel == "final"]
        jsonschema.validate(json.loads(final[-1].text), schema)
        assert c.complete


def test_max_tokens_inside_a_value_reports_max_tokens_and_no_complete_value(harmony_encoding):
    enc = harmony_encoding
    model = ScriptedModel.from_text(enc, '<|channel|>final<|message|>{"color":"red","size":1,"kind":"fixed"}<|return|>')
    prompt = enc.tokenizer.encode("<|start|>user<|message|>hi<|end|><|start|>assistant", allow_special=True)
    c = make_plan(enc.tokenizer, json_schema_format(SCHEMAS["enums"], "s")).constraint()
    result = Generator(model, enc).generate(prompt, SamplingParams(seed=0), max_tokens=8, constraint=c).run()
    assert result.stop_reason == "max_tokens" and not c.complete
    c = make_plan(enc.tokenizer, json_schema_format(SCHEMAS["enums"], "s")).constraint()
    result = Generator(model, enc).generate(prompt, SamplingParams(seed=0), max_tokens=100, constraint=c).run()
    assert result.stop_reason == "stop" and c.complete  # the script fits the schema: nothing was changed
    assert enc.tokenizer.decode(result.tokens).endswith('{"color":"red","size":1,"kind":"fixed"}<|return|>')
