"""`tool_choice` "required" and a named function, enforced on the logits as the model writes.

gpt-oss answers on the final channel and calls functions from the
commentary channel. "required" forbids the final channel (the token after
`<|channel|>` cannot begin "final") and `<|return|>`, so the reply can only
reason, write a preamble, and call. A named function also, once the model
opens the commentary channel, writes ` to=functions.NAME <|constrain|>json<|message|>`
for it. The model's reasoning (analysis) is left alone. "none" is handled
by leaving the tools out of the prompt (gptoss_cli.serve.chat).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

__all__ = ["ToolChoiceGuide"]

_BANNED = -1e30  # not -inf: the sampler's softmax stays finite


@lru_cache(maxsize=4)
def _final_tokens(tokenizer) -> np.ndarray:
    """Ids of ordinary tokens that can begin the channel name "final" (one scan of the vocabulary)."""
    out = []
    for t in range(tokenizer.vocab_size):
        if tokenizer.is_special(t):
            continue
        try:
            b = tokenizer.token_bytes(t)
        except Exception:
            continue
        if b and (b"final".startswith(b) or b.startswith(b"final")):
            out.append(t)
    return np.asarray(out, dtype=np.int64)


class ToolChoiceGuide:
    """A Job.adjust for tool_choice "required" (name None) or one named function."""

    def __init__(self, encoding, name: str | None = None) -> None:
        self.enc = encoding
        self.name = name
        self._final = _final_tokens(encoding.tokenizer)
        self._forced: list[int] = []
        self._commentary = encoding.encode("commentary")
        if name is not None:
            self._forced = (
                encoding.encode(f" to=functions.{name} ")
                + [encoding.constrain_id]
                + encoding.encode("json")
                + [encoding.message_id]
            )

    def __call__(self, logits: np.ndarray, tokens: Sequence[int]) -> np.ndarray:
        enc = self.enc
        out = np.array(logits, dtype=np.float32, copy=True)
        out[enc.return_id] = _BANNED
        if tokens and tokens[-1] == enc.channel_id:
            out[self._final] = _BANNED
        forced = self._next_forced(tokens)
        if forced is not None:
            keep = out[forced]
            out[:] = _BANNED
            out[forced] = max(float(keep), 0.0)
        return out

    def _next_forced(self, tokens: Sequence[int]) -> int | None:
        """The token the named call's header needs next, when the model is in a commentary header."""
        if not self._forced:
            return None
        enc = self.enc
        try:
            c = len(tokens) - 1 - list(reversed(tokens)).index(enc.channel_id)
        except ValueError:
            return None
        tail = list(tokens[c + 1 :])
        if enc.message_id in tail:
            return None
        n = len(self._commentary)
        if tail[:n] != self._commentary:
            return None
        done = tail[n:]
        if done != self._forced[: len(done)] or len(done) >= len(self._forced):
            return None
        return self._forced[len(done)]
