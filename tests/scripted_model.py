"""A fake model for generation tests: it 'predicts' a scripted Harmony completion.

    enc = harmony_encoding                      # conftest fixture
    model = ScriptedModel.from_text(enc, "<|channel|>final<|message|>Hi<|return|>")
    gen = Generator(model, enc)

It has the interface the generation loop needs (gptoss_cli.generation's
LanguageModel: context, new_cache, forward); its cache (FakeCache) holds the
fed tokens and where the script stands. After any multi-token forward (a
prompt) it starts the script again; each single-token forward of the next
scripted token moves one step on. The logits put all the probability on the
scripted token, so any sampling settings reproduce the script exactly.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class FakeCache:
    """A KV cache stand-in: the tokens fed so far and the script position; no snapshots."""

    snapshots = False

    def __init__(self, context: int, on_reset: Callable[[], None] | None = None):
        self.context = context
        self.fed: list[int] = []
        self.pos = 0
        self._on_reset = on_reset

    @property
    def n_past(self) -> int:
        return len(self.fed)

    def reset(self) -> None:
        self.fed = []
        self.pos = 0
        if self._on_reset is not None:
            self._on_reset()

    def checkpoint(self):
        return (list(self.fed), self.pos)

    def rollback(self, cp) -> None:
        self.fed, self.pos = list(cp[0]), cp[1]

    def snapshot(self, max_bytes=None):
        return None

    def load_snapshot(self, n_past, layers) -> None:
        raise ValueError("a fake cache keeps no snapshots")


class ScriptedModel:
    def __init__(self, script: Sequence[int], vocab: int, context: int = 4096, filler: int = 13):
        self.script = list(script)
        self.vocab = vocab
        self.context = context
        self.filler = filler
        self.feeds: list[list[int]] = []  # every forward call's ids
        self.resets = 0
        self.on_feed: Callable[[int], None] | None = None  # called with the feed number (tests raise from it)
        self.cache: FakeCache | None = None  # the last cache made

    def new_cache(self, context: int | None = None) -> FakeCache:
        self.cache = FakeCache(self.context if context is None else context, self._count_reset)
        return self.cache

    def _count_reset(self) -> None:
        self.resets += 1

    @classmethod
    def from_text(cls, encoding, completion: str, **kw) -> "ScriptedModel":
        ids = encoding.tokenizer.encode(completion, allow_special=True)
        return cls(ids, encoding.tokenizer.vocab_size, **kw)

    def forward(self, ids, cache: FakeCache, all_logits: bool = False):
        ids = [int(t) for t in ids]
        if self.on_feed is not None:
            self.on_feed(len(self.feeds))
        if cache.n_past + len(ids) > cache.context:
            raise AssertionError("fed past the context")
        self.feeds.append(ids)
        cache.fed.extend(ids)
        if len(ids) == 1 and cache.pos < len(self.script) and ids[0] == self.script[cache.pos]:
            cache.pos += 1
        else:
            cache.pos = 0
        nxt = self.script[cache.pos] if cache.pos < len(self.script) else self.filler
        logits = np.full(self.vocab, -1e9, dtype=np.float32)
        logits[nxt] = 0.0
        return logits


class RandomLogitsModel:
    """Fixed pseudo-random logits per position: sampling (and the seed) decides the output."""

    def __init__(self, vocab: int, context: int = 4096, allowed: Sequence[int] | None = None):
        self.vocab = vocab
        self.context = context
        self.allowed = np.asarray(allowed if allowed is not None else np.arange(vocab))

    def new_cache(self, context: int | None = None) -> FakeCache:
        return FakeCache(self.context if context is None else context)

    def forward(self, ids, cache: FakeCache, all_logits: bool = False):
        cache.fed.extend(int(t) for t in ids)
        rng = np.random.default_rng(cache.n_past)
        logits = np.full(self.vocab, -1e9, dtype=np.float32)
        logits[self.allowed] = rng.normal(0, 1.0, self.allowed.size).astype(np.float32)
        return logits
