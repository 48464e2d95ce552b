"""Log-probabilities in OpenAI's shapes: Chat's `logprobs.content` entries and Completions' parallel arrays."""

from __future__ import annotations

from typing import Any, Sequence

from .scheduler import LogProb

__all__ = ["chat_logprobs", "token_text"]


def token_text(tokenizer: Any, token: int) -> tuple[str, list[int]]:
    """A token's text (bytes of an unfinished character replaced) and its bytes."""
    b = tokenizer.token_bytes(token)
    return b.decode("utf-8", errors="replace"), list(b)


def _entry(tokenizer: Any, token: int, logprob: float) -> dict[str, Any]:
    text, b = token_text(tokenizer, token)
    return {"token": text, "logprob": logprob, "bytes": b}


def chat_logprobs(tokenizer: Any, lps: Sequence[LogProb]) -> dict[str, Any]:
    return {
        "content": [
            dict(_entry(tokenizer, lp.token, lp.logprob), top_logprobs=[_entry(tokenizer, t, v) for t, v in lp.top])
            for lp in lps
        ],
        "refusal": None,
    }
