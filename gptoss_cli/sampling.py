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
        order, mass = self._candidates(z)
        cand = z[order]
        probs = np.exp(cand - cand.max())
        probs /= probs.sum() if mass is None else mass
        if p.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), p.top_p) + 1)
            order, cand, probs = order[:keep], cand[:keep], probs[:keep]
        if p.min_p > 0.0:
            keep = probs >= p.min_p * probs.max()
            order, cand = order[keep], cand[keep]
        scaled = (cand - cand.max()) / p.temperature
        final = np.exp(scaled)
        final /= final.sum()
        return int(order[self.rng.choice(len(order), p=final)])

    def _candidates(self, z: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Token ids by descending logit (lower id first on ties), cut to what the filters can keep.

        Returns the ids and, when they are only the head of the allowed set,
        the allowed set's total mass relative to its best token (else None).

        A full sort of a 201k vocabulary costs ~20 ms per token, so only the
        head is sorted when the filters allow: top-k needs k ids; top-p and
        min-p need the ids whose mass reaches top-p or whose probability
        reaches min-p, which a partial sort finds unless the head is too flat.
        """
        p = self.params
        n = z.size
        if p.top_k and p.top_k < n:
            return _sorted_head(z, p.top_k), None
        if p.top_p >= 1.0 and p.min_p <= 0.0:
            return np.arange(n), None  # every token stays; order does not matter for the draw
        total = np.exp(z - z.max()).sum()
        head = 1024
        while head < n:
            order = _sorted_head(z, head)
            probs_head = np.exp(z[order] - z[order[0]])
            enough_p = p.top_p >= 1.0 or probs_head.sum() / total >= p.top_p
            enough_min = p.min_p <= 0.0 or probs_head[-1] < p.min_p
            if enough_p and (enough_min or p.top_p < 1.0):
                return order, float(total)
            head *= 8
        return np.argsort(-z, kind="stable"), None


def _sorted_head(z: np.ndarray, k: int) -> np.ndarray:
    """The k largest entries' ids, sorted descending; ties broken toward the lower id."""
    part = np.argpartition(-z, k - 1)[:k]
    part.sort()
    return part[np.argsort(-z[part], kind="stable")]
