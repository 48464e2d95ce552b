"""Response formats: loading, and one clear line (which keyword, where) for every refusal."""

from __future__ import annotations

import json

import pytest

from gptoss_cli.errors import OptionError
from gptoss_cli.harmony.model import ToolDescription
from gptoss_cli.structured import format_from_openai, load_format_file, make_plan
from gptoss_cli.structured.formats import compile_schema


def _schema_file(tmp_path, data, name="person.json"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(p)


def _refusal(tmp_path, data, kind="json_schema", name="s.json") -> str:
    with pytest.raises(OptionError) as e:
        load_format_file(kind, _schema_file(tmp_path, data, name))
    text = str(e.value)
    assert "\n" not in text and e.value.exit_code == 2
    return text


@pytest.mark.parametrize("schema, needles", [
    ({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}},
     ["uniqueItems", "at /properties/tags/uniqueItems"]),
    ({"type": "object", "properties": {"a": {"type": "strin"}}}, ["Invalid type: strin", "at /properties/a/type"]),
    ({"type": "object", "properties": {"a": {"type": "string", "format": "colour"}}},
     ["Unknown format: colour", "at /properties/a/format"]),
    ({"type": "object", "properties": {"code": {"type": "string", "pattern": "[A-"}}},
     ["regex parse error", "unclosed character class", "at /properties/code/pattern"]),
    ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 2}}, "required": ["n"]},
     ["minimum (5) is greater than maximum (2)", "at /properties/n/minimum"]),
    ({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}, ["does not exist", "at /properties/a/$ref"]),
    ({"type": "object", "properties": {"a": {"if": {"type": "string"}, "then": {"minLength": 1}}}},
     ["Unimplemented keys", "at /properties/a/if"]),
    ({"properties": []}, ["properties must be an object", "at /properties"]),
    ({"enum": []}, ["anyOf is empty"]),
])
def test_refused_schemas_name_the_keyword_and_its_place(tmp_path, schema, needles):
    text = _refusal(tmp_path, schema)
    assert text.startswith("schema ") and "s.json" in text
    for n in needles:
        assert n in text, text


def test_files_that_are_not_json_or_not_objects(tmp_path):
    assert "is not valid JSON: Expecting" in _refusal(tmp_path, '{"type": "object",,}')
    assert "must be a JSON object, got list" in _refusal(tmp_path, [1, 2])
    with pytest.raises(OptionError, match="schema file not found"):
        load_format_file("json_schema", str(tmp_path / "missing.json"))


def test_a_bare_schema_or_openai_json_schema_object(tmp_path):
    schema = {"type": "object", "description": "A person.", "properties": {"name": {"type": "string"}}}
    fmt = load_format_file("json_schema", _schema_file(tmp_path, schema, "my person.json"))
    assert (fmt.kind, fmt.name, fmt.description, fmt.schema) == ("json_schema", "my_person", "A person.", schema)
    wrapped = {"name": "contact", "description": "Who to call.", "strict": True, "schema": schema}
    fmt = load_format_file("json_schema", _schema_file(tmp_path, wrapped))
    assert (fmt.name, fmt.description, fmt.schema) == ("contact", "Who to call.", schema)


def test_grammars_lark_and_gbnf_and_their_refusals(tmp_path):
    fmt = load_format_file("grammar", _schema_file(tmp_path, 'start: "yes" | "no"\n', "answer.lark"))
    assert (fmt.kind, fmt.name, fmt.schema) == ("grammar", "answer", None)
    assert load_format_file("grammar", _schema_file(tmp_path, 'root ::= "yes" | "no"\n', "yn.gbnf")).kind == "grammar"
    text = _refusal(tmp_path, "start: answer\n", "grammar", "g.lark")
    assert text.startswith("grammar ") and "line 1, column 8" in text and "unknown name" in text
    text = _refusal(tmp_path, "start: /[a-/\n", "grammar", "g.lark")
    assert "invalid regex" in text and "unclosed character class" in text


def test_openai_response_formats():
    assert format_from_openai(None) is None and format_from_openai({"type": "text"}) is None
    assert format_from_openai({"type": "json_object"}).kind == "json_object"
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat = format_from_openai({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    responses = format_from_openai({"type": "json_schema", "name": "x", "schema": schema, "strict": True})
    assert chat == responses and chat.name == "x"
    for bad, needle in [({"type": "xml"}, "must be text, json_object or json_schema"),
                        ({"type": "json_schema"}, "needs a json_schema.schema"), ("json", "must be an object")]:
        with pytest.raises(OptionError, match=needle):
            format_from_openai(bad)


def test_tool_parameters_are_lenient_unless_strict(o200k_tokenizer):
    params = {"type": "object", "properties": {"ids": {"type": "array", "uniqueItems": True}}}
    tools = [ToolDescription("f", "", params)]
    assert make_plan(o200k_tokenizer, None, tools).tool_grammars["f"]
    with pytest.raises(OptionError, match=r"tool f parameters: Unimplemented keys.*at /properties/ids/uniqueItems"):
        make_plan(o200k_tokenizer, None, tools, strict=["f"])
    with pytest.raises(OptionError, match="tool g parameters: Invalid type"):
        make_plan(o200k_tokenizer, None, [ToolDescription("g", "", {"type": "obj"})])


def test_compile_schema_refuses_non_objects():
    with pytest.raises(OptionError, match="a JSON schema must be a JSON object, got bool"):
        compile_schema(True, "schema x")
