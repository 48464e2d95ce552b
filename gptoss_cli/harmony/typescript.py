"""JSON-schema -> TypeScript-like type text, and the `# Tools` section of Harmony.

Behaves exactly like openai-harmony's renderer (checked token for token in
tests/test_harmony_render.py): property order as written, `?` for optional
properties, `// description` lines, `// default: ...` comments, string enums
as unions, `type: [...]` unions, arrays as `T[]`, nested objects indented,
`oneOf` as `\\n | variant` lists, `nullable` as `| null`, titles and examples
as comments.

JSON values in `default: ...` comments are written the way serde_json writes
them (compact, floats in shortest round-trip form with Rust's exponent style).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .model import ToolNamespaceConfig

_I64_MIN = -(2**63)
_U64_MAX = 2**64 - 1


def _float_text(f: float) -> str:
    """A float as serde_json (ryu) prints it: 1.0, 0.00001, 1e16, 1.5e-7."""
    if not math.isfinite(f):
        return "null"  # serde_json has no NaN/inf; they cannot come from JSON input anyway
    if f == 0.0:
        return "-0.0" if math.copysign(1.0, f) < 0 else "0.0"
    sign = "-" if f < 0 else ""
    r = repr(abs(f))
    mant, _, exp_s = r.partition("e")
    exp = int(exp_s) if exp_s else 0
    ip, _, fp = mant.partition(".")
    digits = (ip + fp).lstrip("0")
    k = exp - len(fp)  # value = int(digits) * 10**k
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k  # position of the decimal point within the digits
    if 0 <= k and kk <= 16:
        body = digits + "0" * k + ".0"
    elif 0 < kk <= 16:
        body = digits[:kk] + "." + digits[kk:]
    elif -5 < kk <= 0:
        body = "0." + "0" * (-kk) + digits
    elif length == 1:
        body = f"{digits}e{kk - 1}"
    else:
        body = f"{digits[0]}.{digits[1:]}e{kk - 1}"
    return sign + body


def json_display(v: Any) -> str:
    """Compact JSON as serde_json's `Value` Display writes it."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        if _I64_MIN <= v <= _U64_MAX:
            return str(v)
        return _float_text(float(v))
    if isinstance(v, float):
        return _float_text(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(json_display(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + json_display(x) for k, x in v.items()) + "}"
    return json.dumps(v, ensure_ascii=False)


def rust_lines(s: str) -> list[str]:
    """Rust's `str::lines()`: split at '\\n' (dropping a '\\r' just before it); no empty last line."""
    if not s:
        return []
    pieces = s.split("\n")
    ends_with_nl = s.endswith("\n")
    if ends_with_nl:
        pieces.pop()
    out = []
    last = len(pieces) - 1
    for i, p in enumerate(pieces):
        if (i < last or ends_with_nl) and p.endswith("\r"):
            p = p[:-1]
        out.append(p)
    return out


def _get(schema: Any, key: str) -> Any:
    return schema.get(key) if isinstance(schema, dict) else None


def _has(schema: Any, key: str) -> bool:
    return isinstance(schema, dict) and key in schema


def _is_enum(schema: Any) -> bool:
    e = _get(schema, "enum")
    return isinstance(e, list) and len(e) > 0


def _nullable(schema: Any) -> bool:
    return _get(schema, "nullable") is True


def _default_comment(schema: Any, *, enum_string_plain: bool) -> str:
    """Text after 'default: ' for schema['default'] (caller checks presence)."""
    d = schema["default"]
    if isinstance(d, str):
        if not _is_enum(schema):
            return f'"{d}"'
        return d if enum_string_plain else json_display(d)
    return json_display(d)


def _variant_list(variants: list, indent: str) -> str:
    out = []
    for variant in variants:
        out.append(f"\n{indent} | ")
        type_str = schema_to_typescript(variant, indent + "   ")
        if _nullable(variant) and "null" not in type_str:
            type_str += " | null"
        out.append(type_str)
        trailing = []
        desc = _get(variant, "description")
        if isinstance(desc, str):
            trailing.append(desc)
        if _has(variant, "default"):
            trailing.append("default: " + _default_comment(variant, enum_string_plain=False))
        if trailing:
            out.append(" // " + " ".join(trailing))
    return "".join(out)


def _object(schema: dict, indent: str) -> str:
    out = []
    desc = schema.get("description")
    if isinstance(desc, str):
        out.append(f"{indent}// {desc}\n")
    out.append("{\n")
    props = schema.get("properties")
    if isinstance(props, dict):
        req = schema.get("required")
        required = {r for r in req if isinstance(r, str)} if isinstance(req, list) else set()
        for key, val in props.items():
            opt = "" if key in required else "?"
            title = _get(val, "title")
            if isinstance(title, str):
                out.append(f"{indent}// {title}\n{indent}//\n")
            if not _has(val, "oneOf"):
                d = _get(val, "description")
                if isinstance(d, str):
                    out.append(f"{indent}// {d}\n")
            examples = _get(val, "examples")
            if isinstance(examples, list) and examples:
                out.append(f"{indent}// Examples:\n")
                for ex in examples:
                    if isinstance(ex, str):
                        out.append(f'{indent}// - "{ex}"\n')
            one_of = _get(val, "oneOf")
            if isinstance(one_of, list):
                prop_desc = _get(val, "description")
                if not isinstance(prop_desc, str):
                    prop_desc = None
                skip_desc = False
                if prop_desc is not None and one_of:
                    first_desc = _get(one_of[0], "description")
                    if isinstance(first_desc, str) and first_desc == prop_desc:
                        skip_desc = True
                desc_above = False
                if not skip_desc and prop_desc is not None:
                    out.append(f"{indent}// {prop_desc}\n")
                    desc_above = True
                if "default" in val:
                    out.append(f"{indent}// default: {_default_comment(val, enum_string_plain=True)}\n")
                out.append(f"{indent}{key}{opt}:\n")
                for i, variant in enumerate(one_of):
                    out.append(f"{indent} | ")
                    type_str = schema_to_typescript(variant, indent + "   ")
                    if _nullable(variant) and "null" not in type_str:
                        type_str += " | null"
                    out.append(type_str)
                    trailing = []
                    if not (i == 0 and desc_above):
                        vd = _get(variant, "description")
                        if isinstance(vd, str) and vd != prop_desc:
                            trailing.append(vd)
                    if _has(variant, "default"):
                        trailing.append("default: " + _default_comment(variant, enum_string_plain=True))
                    if trailing:
                        out.append(" // " + " ".join(trailing))
                    out.append("\n")
                out.append(f"{indent},\n")
                continue
            out.append(f"{indent}{key}{opt}: ")
            type_str = schema_to_typescript(val, indent + "    ")
            if _nullable(val) and "null" not in type_str:
                type_str += " | null"
            out.append(type_str)
            out.append(",")
            if not _has(val, "oneOf") and _has(val, "default"):
                out.append(" // default: " + _default_comment(val, enum_string_plain=True))
            out.append("\n")
    out.append(f"{indent}}}")
    return "".join(out)


def schema_to_typescript(schema: Any, indent: str = "") -> str:
    """TypeScript-like type text for a JSON schema, as openai-harmony renders tool parameters."""
    one_of = _get(schema, "oneOf")
    if isinstance(one_of, list):
        return _variant_list(one_of, indent)
    ty = _get(schema, "type")
    if isinstance(ty, list):
        names = ["number" if t == "integer" else t for t in ty if isinstance(t, str)]
        if names:
            return " | ".join(names)
    if isinstance(ty, str):
        if ty == "object":
            return _object(schema, indent)
        if ty == "string":
            e = schema.get("enum")
            if isinstance(e, list):
                vals = [f'"{v}"' for v in e if isinstance(v, str)]
                if vals:
                    return " | ".join(vals)
            return "string"
        if ty in ("number", "integer"):
            return "number"
        if ty == "boolean":
            return "boolean"
        if ty == "array":
            if "items" in schema:
                return schema_to_typescript(schema["items"], indent) + "[]"
            return "Array<any>"
        return "any"
    return "any"


def tools_section(tools: dict[str, ToolNamespaceConfig]) -> str:
    """The `# Tools` section for a system or developer message (namespaces in key order)."""
    sections = ["# Tools"]
    for key in sorted(tools):
        ns = tools[key]
        lines = [f"## {ns.name}\n"]
        if ns.description is not None:
            for line in rust_lines(ns.description):
                lines.append(f"// {line}" if ns.tools else line)
        if ns.tools:
            lines.append(f"namespace {ns.name} {{\n")
            for tool in ns.tools:
                for line in rust_lines(tool.description):
                    lines.append(f"// {line}")
                if tool.parameters is not None:
                    lines.append(f"type {tool.name} = (_: {schema_to_typescript(tool.parameters, '')}) => any;\n")
                else:
                    lines.append(f"type {tool.name} = () => any;\n")
            lines.append(f"}} // namespace {ns.name}")
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


__all__ = ["schema_to_typescript", "tools_section", "json_display", "rust_lines"]
