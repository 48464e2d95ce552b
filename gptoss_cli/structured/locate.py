"""Where in a JSON schema an llguidance complaint points: a JSON pointer such as /properties/tags.

llguidance names the keyword (and often its value) but not its place, so the
schema is searched for the first object that holds that keyword with that value.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

__all__ = ["locate"]

# (pattern over llguidance's message, keyword group or fixed keyword, value group or None)
_CLUES: list[tuple[re.Pattern[str], str | int, int | None]] = [
    (re.compile(r'Unimplemented keys: \["([^"]+)"'), 1, None),
    (re.compile(r"Unknown format: (\S+)"), "format", 1),
    (re.compile(r"Invalid type: (\S+)"), "type", 1),
    (re.compile(r"Pointer '([^']*)' does not exist"), "$ref", 1),
    (re.compile(r"Resource '([^']*)' is not present"), "$ref", 1),
    (re.compile(r"required property '([^']*)'"), "required", 1),
    (re.compile(r"(\w+) \(([^)]*)\) is (?:greater|less)"), 1, 2),
    (re.compile(r"^(\w+) must be"), 1, None),
    (re.compile(r"regex parse error"), "pattern", None),
]


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object in the schema with its JSON pointer, parents first."""
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from _walk(v, f"{path}/{str(k).replace('~', '~0').replace('/', '~1')}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}/{i}")


def _matches(held: Any, value: str | None) -> bool:
    if value is None:
        return True
    if isinstance(held, list):
        return any(_matches(h, value) for h in held)
    if isinstance(held, bool) or held is None:
        return False
    if isinstance(held, (int, float)):
        try:
            return float(held) == float(value)
        except ValueError:
            return False
    text = str(held)
    return text == value or text == "#" + value  # a $ref "#/x" is reported as the pointer "/x"


def locate(schema: Any, message: str) -> str | None:
    """The pointer of the keyword the message is about (e.g. "/properties/a/uniqueItems"), or None."""
    for pattern, key_from, value_from in _CLUES:
        m = pattern.search(message)
        if m is None:
            continue
        key = m.group(key_from) if isinstance(key_from, int) else key_from
        value = m.group(value_from) if value_from is not None else None
        for path, node in _walk(schema):
            if key in node and _matches(node[key], value):
                if key == "pattern" and not _in_message(node[key], message):
                    continue
                return f"{path}/{key}"
        if key == "pattern":  # the message quotes the regex; fall back to the first pattern
            for path, node in _walk(schema):
                if "pattern" in node:
                    return f"{path}/pattern"
    return None


def _in_message(pattern: Any, message: str) -> bool:
    return isinstance(pattern, str) and pattern in message
