"""Choose the next token from logits: temperature, top-k, top-p, min-p, repetition penalty.

The order follows llama.cpp's default chain (penalties, top-k, top-p, min-p,
temperature), and a seeded NumPy generator makes runs repeatable. Temperature 0
means greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0
    repeat_penalty: float = 1.0  # 1.0: off
    repeat_last_n: int = 64
    seed: int | None = None

    def validate(self) -> None:
        """Raise ValueError naming the option when a value is impossible."""
        if not np.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top-k must be >= 0, got {self.top_k}")
        if not 0.0 <= self.min_p <= 1.0:
            raise ValueError(f"min-p must be in [0, 1], got {self.min_p}")
        if not np.isfinite(self.repeat_penalty) or self.repeat_penalty <= 0:
            raise ValueError(f"repeat-penalty must be > 0, got {self.repeat_penalty}")
        if self.repeat_last_n < 0:
            raise ValueError(f"repeat-last-n must be >= 0, got {self.repeat_last_n}")


class Sampler:
    def __init__(self, params: SamplingParams) -> None:
        params.validate()
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def sample(self, logits: np.ndarray, history: Sequence[int] = ()) -> int:
        p = self.params
        z = np.asarray(logits, dtype=np.float64).copy()
        if p.repeat_penalty != 1.0 and p.repeat_last_n and len(history):
            recent = np.unique(np.asarray(history[-p.repeat_last_n :], dtype=np.int64))
            vals = z[recent]
            z[recent] = np.where(vals > 0, vals / p.repeat_penalty, vals * p.repeat_penalty)
        if p.temperature == 0.0:
            return int(np.argmax(z))
        # Candidates sorted by logit, descending (stable: lower id first on ties).
        order = np.argsort(-z, kind="stable")
        if p.top_k:
            order = order[: p.top_k]
        cand = z[order]
        probs = np.exp(cand - cand[0])
        probs /= probs.sum()
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            order, cand, probs = order[:keep], cand[:keep], probs[:keep]
        if p.min_p > 0.0:
            keep = probs >= p.min_p * probs[0]
            order, cand = order[keep], cand[keep]
        scaled = (cand - cand[0]) / p.temperature
        final = np.exp(scaled)
        final /= final.sum()
        return int(order[self.rng.choice(len(order), p=final)])
