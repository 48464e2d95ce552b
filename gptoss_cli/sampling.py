"""Choose the next token from logits: temperature, top-k, top-p, min-p, repetition penalty.

The order follows llama.cpp's default chain (penalties, top-k, top-p, min-p,
temperature), and a seeded NumPy generator makes runs repeatable. Temperature 0
means greedy decoding. Structured output passes a mask of the allowed tokens:
the chain then runs over those tokens alone (gptoss_cli.structured).
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

    def sample(self, logits: np.ndarray, history: Sequence[int] = (), allowed: np.ndarray | None = None) -> int:
        """The next token id. `allowed` (a boolean mask over the vocabulary, structured output)
        limits the draw to its tokens before the chain runs, so every filter and greedy see
        only allowed tokens; None leaves every token possible."""
        if allowed is None:
            z = np.asarray(logits, dtype=np.float64).copy()
            self._penalize(z, history)
            return int(self._draw(z))
        ids = _allowed_ids(allowed, np.shape(logits))
        z = np.asarray(logits, dtype=np.float64)[ids]  # a copy; ids ascend, so ties still go to the lower id
        self._penalize(z, history, ids)
        return int(ids[self._draw(z)])

    def _penalize(self, z: np.ndarray, history: Sequence[int], ids: np.ndarray | None = None) -> None:
        """Demote the recent tokens' logits in place (z holds the tokens `ids`, or all of them)."""
        p = self.params
        if p.repeat_penalty == 1.0 or not p.repeat_last_n or not len(history):
            return
        recent = np.unique(np.asarray(history[-p.repeat_last_n :], dtype=np.int64))
        if ids is not None:  # positions of the recent tokens among the allowed ones
            pos = np.minimum(np.searchsorted(ids, recent), ids.size - 1)
            recent = pos[ids[pos] == recent]
        vals = z[recent]
        z[recent] = np.where(vals > 0, vals / p.repeat_penalty, vals * p.repeat_penalty)

    def _draw(self, z: np.ndarray) -> int:
        """Index of the drawn entry of z (penalized logits): greedy, or the filters then a draw."""
        p = self.params
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


def _allowed_ids(allowed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The ids a mask allows, ascending; ValueError for a mask of another shape or one that allows nothing."""
    mask = np.asarray(allowed)
    if mask.dtype != np.bool_ or mask.shape != tuple(shape):
        raise ValueError(f"the allowed mask must be booleans of shape {tuple(shape)}, got {mask.dtype} {mask.shape}")
    ids = np.flatnonzero(mask)
    if ids.size == 0:
        raise ValueError("the allowed mask allows no token")
    return ids
