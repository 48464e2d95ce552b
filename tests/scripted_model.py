"""A fake model for generation tests: it 'predicts' a scripted Harmony completion.

    enc = harmony_encoding                      # conftest fixture
    model = ScriptedModel.from_text(enc, "<|channel|>final<|message|>Hi<|return|>")
    gen = Generator(model, enc)

It has the interface the generation loop needs (feed / reset / n_past /
context). After any multi-token feed (a prompt) it starts the script again;
each single-token feed of the next scripted token moves one step on. The
logits put all the probability on the scripted token, so any sampling settings
reproduce the script exactly.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class ScriptedModel:
    def __init__(self, script: Sequence[int], vocab: int, context: int = 4096, filler: int = 13):
        self.script = list(script)
        self.vocab = vocab
        self.context = context
        self.filler = filler
        self.fed: list[int] = []
        self.pos = 0
        self.feeds: list[list[int]] = []  # every feed call's ids
        self.resets = 0
        self.on_feed: Callable[[int], None] | None = None  # called with the feed number (tests raise from it)

    @classmethod
    def from_text(cls, encoding, completion: str, **kw) -> "ScriptedModel":
        ids = encoding.tokenizer.encode(completion, allow_special=True)
        return cls(ids, encoding.tokenizer.vocab_size, **kw)

    @property
    def n_past(self) -> int:
        return len(self.fed)

    def reset(self) -> None:
        self.fed = []
        self.pos = 0
        self.resets += 1

    def feed(self, ids, all_logits: bool = False):
        ids = [int(t) for t in ids]
        if self.on_feed is not None:
            self.on_feed(len(self.feeds))
        if len(self.fed) + len(ids) > self.context:
            raise AssertionError("fed past the context")
        self.feeds.append(ids)
        self.fed.extend(ids)
        if len(ids) == 1 and self.pos < len(self.script) and ids[0] == self.script[self.pos]:
            self.pos += 1
        else:
            self.pos = 0
        nxt = self.script[self.pos] if self.pos < len(self.script) else self.filler
        logits = np.full(self.vocab, -1e9, dtype=np.float32)
        logits[nxt] = 0.0
        return logits


class RandomLogitsModel:
    """Fixed pseudo-random logits per position: sampling (and the seed) decides the output."""

    def __init__(self, vocab: int, context: int = 4096, allowed: Sequence[int] | None = None):
        self.vocab = vocab
        self.context = context
        self.fed: list[int] = []
        self.allowed = np.asarray(allowed if allowed is not None else np.arange(vocab))

    @property
    def n_past(self) -> int:
        return len(self.fed)

    def reset(self) -> None:
        self.fed = []

    def feed(self, ids, all_logits: bool = False):
        self.fed.extend(int(t) for t in ids)
        rng = np.random.default_rng(len(self.fed))
        logits = np.full(self.vocab, -1e9, dtype=np.float32)
        logits[self.allowed] = rng.normal(0, 1.0, self.allowed.size).astype(np.float32)
        return logits
