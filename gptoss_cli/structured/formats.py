"""What the final message must be: a JSON schema, any JSON object, or a grammar, checked once.

A `ResponseFormat` holds the llguidance grammar of the value and what the
developer message says about it (name, description, schema). It comes from a
file (`--json-schema`, `--json-object`, `--grammar`) or from an OpenAI
`response_format` / `text.format` object (the server). Every refusal is one
line naming the source, the keyword and where it is (a JSON pointer, or a line
and column of a grammar), raised as OptionError (exit 2) before any model is
loaded: llguidance's own checks run against a 257-token byte vocabulary, which
finds the same errors as the model's (including unsatisfiable schemas).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import InputError, OptionError
from .locate import locate

__all__ = [
    "ResponseFormat",
    "JSON_OPTIONS",
    "json_schema_format",
    "json_object_format",
    "grammar_format",
    "load_format_file",
    "format_from_openai",
    "compile_schema",
    "format_from_settings",
]

#: JSON layout the value may take between tokens: nothing, one space, or a newline and up to 24
#: spaces or tabs of indentation (compact and pretty-printed JSON fit; a model cannot pad forever).
JSON_OPTIONS: dict[str, Any] = {"whitespace_flexible": True, "whitespace_pattern": r"(?:\x20|\n[\x20\x09]{0,24})?"}

_NAME = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ResponseFormat:
    """A checked format: `grammar` is llguidance's grammar text; name/description/schema go to the prompt."""

    kind: str  # "json_schema", "json_object" or "grammar"
    grammar: str
    name: str
    description: str | None = None
    schema: dict[str, Any] | None = None  # None for a grammar

    @property
    def label(self) -> str:
        """How /show and messages name it."""
        return {"json_schema": f"JSON schema {self.name}", "json_object": "any JSON object"}.get(
            self.kind, f"grammar {self.name}"
        )


def _llguidance():
    import llguidance

    return llguidance


@lru_cache(maxsize=1)
def _byte_vocabulary():
    """A 257-token vocabulary (the bytes and one end token) to check grammars without a model."""
    llg = _llguidance()

    class Bytes:
        eos_token_id = 256
        bos_token_id = None
        tokens = [bytes([i]) for i in range(256)] + [b"<|return|>"]
        special_token_ids = [256]

        def __call__(self, text: bytes | str) -> list[int]:
            return list(text if isinstance(text, bytes) else text.encode("utf-8"))

    return llg.LLTokenizer(llg.TokenizerWrapper(Bytes()))


def _refusal(grammar: str) -> str | None:
    """llguidance's complaint about a grammar (its first one), or None when it accepts it."""
    llg = _llguidance()
    is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar, _byte_vocabulary())
    return messages[0] if is_error and messages else None


def _one_line(message: str) -> str:
    """llguidance's message on one line: the first line, plus a regex error's own `error:` line."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    if not lines:
        return "refused by llguidance"
    first = lines[0].rstrip(":")
    extra = next((line for line in lines[1:] if line.startswith("error:")), None)
    return f"{first}: {extra[len('error:'):].strip()}" if extra else first


def compile_schema(schema: Any, where: str, *, lenient: bool = False) -> str:
    """The llguidance grammar of a JSON schema; OptionError naming the keyword and its place when refused.

    lenient: ignore keywords llguidance does not implement (tool parameters written for
    prompts only), still refusing invalid ones.
    """
    if not isinstance(schema, dict):
        raise OptionError(f"{where}: a JSON schema must be a JSON object, got {type(schema).__name__}")
    llg = _llguidance()
    options = dict(JSON_OPTIONS, lenient=True) if lenient else JSON_OPTIONS
    try:
        grammar = llg.LLMatcher.grammar_from_json_schema(schema, defaults=options)
    except ValueError as e:  # llguidance found no object to apply the options to
        raise OptionError(f"{where}: {e}") from None
    why = _refusal(grammar)
    if why is not None:
        text, place = _explain(schema, why, options)
        raise OptionError(f"{where}: {text}" + (f" (at {place})" if place else ""))
    return grammar


_UNSATISFIABLE_REQUIRED = re.compile(r"required property '([^']*)' is unsatisfiable")


def _explain(schema: dict[str, Any], why: str, options: dict[str, Any]) -> tuple[str, str | None]:
    """llguidance's complaint on one line and its place; for a required property that can have
    no value, the reason inside that property (llguidance reports only the property)."""
    place = locate(schema, why)
    m = _UNSATISFIABLE_REQUIRED.search(why)
    if m and place and place.endswith("/required"):
        base = place[: -len("/required")]
        sub = _at(schema, base).get("properties", {}).get(m.group(1))
        if isinstance(sub, dict):
            sub = {**{k: schema[k] for k in ("$defs", "definitions") if k in schema}, **sub}  # keep local $refs
            llg = _llguidance()
            inner = _refusal(llg.LLMatcher.grammar_from_json_schema(sub, defaults=options))
            if inner is not None:
                text, deeper = _explain(sub, inner, options)
                key = m.group(1).replace("~", "~0").replace("/", "~1")
                return text, f"{base}/properties/{key}{deeper or ''}"
    return _one_line(why), place


def _at(schema: Any, pointer: str) -> dict[str, Any]:
    """The object at a JSON pointer of the schema ({} when it is not one)."""
    node = schema
    for part in pointer.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node.get(part, {})
    return node if isinstance(node, dict) else {}


def json_schema_format(
    schema: dict[str, Any], where: str, name: str | None = None, description: str | None = None
) -> ResponseFormat:
    """A format from a schema (`where` names it in errors, e.g. the file)."""
    grammar = compile_schema(schema, where)
    desc = description if description is not None else schema.get("description")
    return ResponseFormat(
        "json_schema", grammar, _NAME.sub("_", name or "response") or "response",
        desc if isinstance(desc, str) and desc else None, schema,
    )


def json_object_format() -> ResponseFormat:
    """Any JSON object (OpenAI's json_object mode)."""
    schema = {"type": "object"}
    return ResponseFormat("json_object", compile_schema(schema, "--json-object"), "json_object", "any JSON object", schema)


def grammar_format(text: str, where: str, name: str = "grammar") -> ResponseFormat:
    """A format from a grammar in llguidance's Lark syntax (a llama.cpp GBNF grammar is converted)."""
    llg = _llguidance()
    try:
        grammar = llg.grammar_from("grammar", text)
    except ValueError as e:  # GBNF that does not convert
        raise OptionError(f"{where}: {_one_line(str(e))}") from None
    why = _refusal(grammar)
    if why is not None:
        raise OptionError(f"{where}: {_grammar_place(_one_line(why))}")
    return ResponseFormat("grammar", grammar, _NAME.sub("_", name) or "grammar")


def _grammar_place(message: str) -> str:
    """llguidance's `at 3(8): ...` read as `line 3, column 8: ...`."""
    m = re.match(r"at (\d+)\((\d+)\):\s*(.*)", message)
    return f"line {m.group(1)}, column {m.group(2)}: {m.group(3)}" if m else message


def _read_json(path: str, what: str) -> Any:
    from ..prompt import read_text_file

    text = read_text_file(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise OptionError(f"{what} {path} is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def _is_wrapper(data: dict[str, Any]) -> bool:
    """An OpenAI json_schema object ({"name", "schema", "strict"}) rather than a bare schema."""
    return isinstance(data.get("schema"), dict) and not {"type", "properties", "$schema", "$ref"} & data.keys()


def load_format_file(kind: str, path: str | None = None) -> ResponseFormat:
    """The format of `--json-schema FILE`, `--json-object` or `--grammar FILE`; OptionError when unusable.

    A schema file is a bare JSON schema or OpenAI's {"name", "description", "schema"} object.
    """
    if kind == "json_object":
        return json_object_format()
    if path is None:
        raise ValueError(f"a {kind} format needs a file")
    stem = Path(path).stem
    if kind == "grammar":
        from ..prompt import read_text_file

        try:
            text = read_text_file(path, "grammar file")
        except InputError as e:
            raise OptionError(str(e)) from None
        return grammar_format(text, f"grammar {path}", stem)
    try:
        data = _read_json(path, "schema file")
    except InputError as e:
        raise OptionError(str(e)) from None
    if isinstance(data, dict) and _is_wrapper(data):
        return json_schema_format(data["schema"], f"schema {path}", data.get("name") or stem, data.get("description"))
    return json_schema_format(data, f"schema {path}", stem)


def format_from_openai(response_format: Any, where: str = "response_format") -> ResponseFormat | None:
    """The format of an OpenAI request: Chat Completions' response_format or the Responses API's
    text.format ({"type": "text" | "json_object" | "json_schema", ...}); None for plain text."""
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise OptionError(f"{where} must be an object")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return json_object_format()
    if kind != "json_schema":
        raise OptionError(f"{where}.type must be text, json_object or json_schema, got {kind!r}")
    spec = response_format.get("json_schema", response_format)  # Chat Completions nests it; Responses does not
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise OptionError(f"{where} needs a json_schema.schema object")
    name = spec.get("name")
    return json_schema_format(spec["schema"], f"{where} schema", name if isinstance(name, str) else None,
                              spec.get("description") if isinstance(spec.get("description"), str) else None)


def format_from_settings(s: Any) -> ResponseFormat | None:
    """The format asked for by resolved run / chat settings (--json-schema, --json-object, --grammar), or None."""
    given = [
        (flag, kind, value)
        for flag, kind, value in (
            ("--json-schema", "json_schema", s.json_schema),
            ("--json-object", "json_object", "" if s.json_object else None),
            ("--grammar", "grammar", s.grammar),
        )
        if value is not None
    ]
    if len(given) > 1:
        raise OptionError(f"{' and '.join(flag for flag, _, _ in given)} cannot be used together")
    if not given:
        return None
    _, kind, value = given[0]
    return load_format_file(kind, value or None)
