"""Reading a JSON request body field by field, with OpenAI's refusals (400, the field named in `param`).

Unknown fields are ignored, as OpenAI's own API ignores many optional ones;
a known field of the wrong type is refused, never coerced.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from .errors import APIError

__all__ = ["Fields", "bad_param"]


def bad_param(param: str, message: str, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


class Fields:
    """Typed getters over one JSON object; `prefix` names nested objects in `param` (e.g. "messages[2].")."""

    def __init__(self, data: Any, prefix: str = "") -> None:
        if not isinstance(data, dict):
            where = prefix.rstrip(".") or "body"
            raise bad_param(where, f"{where} must be a JSON object, got {_kind(data)}", "invalid_type")
        self.data = data
        self.prefix = prefix

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def _type_error(self, name: str, want: str) -> APIError:
        v = self.data[name]
        return bad_param(self.prefix + name, f"'{self.prefix}{name}' must be {want}, got {_kind(v)}", "invalid_type")

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def str(self, name: str, default: str | None = None, choices: Sequence[str] = ()) -> str | None:
        v = self.data.get(name)
        if v is None:
            return default
        if not isinstance(v, str):
            raise self._type_error(name, "a string")
        if choices and v not in choices:
            raise bad_param(self.prefix + name, f"'{self.prefix}{name}' must be one of {', '.join(choices)}; got {v!r}")
        return v

    def _of(self, name: str, kind: type, want: str, default: Any = None) -> Any:
        """The field when it has JSON type `kind` (default when absent or null), else 400 naming it."""
        v = self.data.get(name)
        if v is None:
            return default
        if not isinstance(v, kind):
            raise self._type_error(name, want)
        return v

    def bool(self, name: str, default: bool = False) -> bool:
        return self._of(name, bool, "a boolean", default)

    def int(self, name: str, default: int | None = None, lo: int | None = None, hi: int | None = None) -> int | None:
        v = self.data.get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise self._type_error(name, "an integer")
        v = int(v)
        self._range(name, v, lo, hi)
        return v

    def float(self, name: str, default: float | None = None, lo: float | None = None, hi: float | None = None) -> float | None:
        v = self.data.get(name)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self._type_error(name, "a number")
        v = float(v)
        self._range(name, v, lo, hi)
        return v

    def _range(self, name: str, v: Any, lo: Any, hi: Any) -> None:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            lo_s = "" if lo is None else f" >= {lo}"
            hi_s = "" if hi is None else f" <= {hi}"
            both = " and".join(s for s in (lo_s, hi_s) if s)
            raise bad_param(self.prefix + name, f"'{self.prefix}{name}' must be{both}; got {v}")

    def list(self, name: str, required: bool = False) -> list | None:
        if required and self.data.get(name) is None:
            raise bad_param(self.prefix + name, f"'{self.prefix}{name}' is required", "missing_required_parameter")
        return self._of(name, list, "an array")

    def obj(self, name: str) -> dict | None:
        return self._of(name, dict, "an object")

    def sub(self, name: str) -> "Fields | None":
        v = self.obj(name)
        return None if v is None else Fields(v, f"{self.prefix}{name}.")
