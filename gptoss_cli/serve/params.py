"""Request settings every generating endpoint shares: the model name, sampling, token limits, stop strings.

A setting the request leaves out takes the server's (`gptoss serve`'s
options, config.toml's [serve] and [run]); OpenAI's ranges are enforced.
"""

from __future__ import annotations

from typing import Any, Collection

from ..sampling import SamplingParams
from .errors import APIError
from .fields import Fields, bad_param

__all__ = ["check_model", "sampling", "stop_strings", "check_n", "REASONING_EFFORTS"]

REASONING_EFFORTS = ("low", "medium", "high")


def check_model(f: Fields, names: Collection[str]) -> None:
    """404 model_not_found unless `model` is absent or one of the served model's names."""
    name = f.str("model")
    if name is not None and name not in names:
        raise APIError(404, f"The model '{name}' does not exist; this server serves: {', '.join(sorted(names))}",
                       param="model", code="model_not_found")


def check_n(f: Fields) -> None:
    n = f.int("n", 1)
    if n != 1:
        raise bad_param("n", f"'n' must be 1 (one choice per request), got {n}")


def sampling(f: Fields, defaults: Any) -> SamplingParams:
    """The sampler of a request: OpenAI's temperature, top_p and seed, plus llama.cpp's top_k, min_p, repeat_penalty."""
    seed = f.int("seed", defaults.seed, lo=-(2**63), hi=2**64 - 1)
    if seed is not None and seed < 0:
        seed %= 2**64  # OpenAI takes signed 64-bit seeds; the sampler takes 0 .. 2**64-1
    return SamplingParams(
        temperature=f.float("temperature", float(defaults.temperature), lo=0.0, hi=2.0),
        top_p=_top_p(f, float(defaults.top_p)),
        top_k=f.int("top_k", int(defaults.top_k), lo=0),
        min_p=f.float("min_p", float(defaults.min_p), lo=0.0, hi=1.0),
        repeat_penalty=_positive(f, "repeat_penalty", float(defaults.repeat_penalty)),
        seed=seed,
    )


def _top_p(f: Fields, default: float) -> float:
    v = f.float("top_p", default, lo=0.0, hi=1.0)
    assert v is not None
    return v if v > 0 else 1e-9  # top_p 0 is "only the most likely token", as OpenAI reads it


def _positive(f: Fields, name: str, default: float) -> float:
    v = f.float(name, default)
    assert v is not None
    if v <= 0:
        raise bad_param(name, f"'{name}' must be > 0; got {v}")
    return v


def stop_strings(f: Fields) -> list[str]:
    v = f.raw("stop")
    if v is None:
        return []
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise bad_param("stop", "'stop' must be a string or an array of strings", "invalid_type")
    if len(v) > 4:
        raise bad_param("stop", f"'stop' takes at most 4 strings, got {len(v)}")
    return list(v)
