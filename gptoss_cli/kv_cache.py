"""Per-layer key/value cache.

Full-attention layers keep one slot per position of the context. Sliding-window
layers keep a ring of `sliding_window` slots (position p lives in slot
p % window), so their memory stays constant however long the context grows.
Buffers are allocated with np.zeros, whose pages the OS maps only when written:
a 128k context costs memory only as far as it is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import ModelConfig


@dataclass(frozen=True)
class KVCheckpoint:
    """The cache as it was after `n_past` tokens: copies of the sliding-window rings only.

    Full-attention layers need no copy: positions below n_past are never
    overwritten by later tokens. For gpt-oss-20b a checkpoint is about 6 MB.
    """

    n_past: int
    rings: dict[int, tuple[np.ndarray, np.ndarray]]


class KVCache:
    """One sequence's keys and values for every layer; the model is handed it on each call."""

    #: snapshot / load_snapshot are supported (the generation loop splits prompts at save points)
    snapshots = True

    def __init__(self, cfg: ModelConfig, context: int) -> None:
        self.context = context
        self.k: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.window: list[int] = []
        for layer in range(cfg.n_layers):
            if cfg.is_sliding(layer):
                slots, window = min(cfg.sliding_window, context), cfg.sliding_window
            else:
                slots, window = context, 0
            shape = (cfg.n_kv_heads, slots, cfg.head_dim)  # head-major: a head's keys are contiguous
            self.k.append(np.zeros(shape, dtype=np.float32))
            self.v.append(np.zeros(shape, dtype=np.float32))
            self.window.append(window)
        self.n_past = 0

    def reset(self) -> None:
        """Forget every position; old slots are overwritten before they are read again."""
        self.n_past = 0

    def _is_ring(self, layer: int) -> bool:
        """Fewer slots than the context: slots are reused, so every slot may hold a live position."""
        return self.k[layer].shape[1] < self.context

    def _held_rows(self, layer: int, n_past: int) -> int:
        """Slots that hold the first n_past positions: the whole ring, or n_past of a full layer."""
        return self.k[layer].shape[1] if self._is_ring(layer) else n_past

    def checkpoint(self) -> KVCheckpoint:
        rings = {i: (self.k[i].copy(), self.v[i].copy()) for i in range(len(self.k)) if self._is_ring(i)}
        return KVCheckpoint(self.n_past, rings)

    def rollback(self, cp: KVCheckpoint) -> None:
        """Return to a checkpoint taken earlier in the current sequence (n_past >= cp.n_past)."""
        if cp.n_past > self.n_past:
            raise ValueError(f"checkpoint at {cp.n_past} tokens is ahead of the cache ({self.n_past})")
        for i, (k, v) in cp.rings.items():
            self.k[i][...] = k
            self.v[i][...] = v
        self.n_past = cp.n_past

    def snapshot(self, max_bytes: int | None = None) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Copies of what the cache holds now: per layer (k, v), the first n_past slots
        of a full layer, the whole ring of a sliding one. `load_snapshot` puts them back.
        None, and nothing copied, when they would take more than max_bytes."""
        rows = [self._held_rows(i, self.n_past) for i in range(len(self.k))]
        size = sum(2 * r * k.shape[0] * k.shape[2] * k.itemsize for r, k in zip(rows, self.k))
        if max_bytes is not None and size > max_bytes:
            return None
        return [(k[:, :r].copy(), v[:, :r].copy()) for r, k, v in zip(rows, self.k, self.v)]

    def load_snapshot(self, n_past: int, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Restore a `snapshot` taken after n_past tokens (ValueError when it does not fit this cache)."""
        if not 0 < n_past <= self.context or len(layers) != len(self.k):
            raise ValueError("the snapshot does not fit this cache")
        for i, (k, (sk, sv)) in enumerate(zip(self.k, layers)):
            want = (k.shape[0], self._held_rows(i, n_past), k.shape[2])
            if sk.shape != want or sv.shape != want:
                raise ValueError("the snapshot does not fit this cache")
        for k, v, (sk, sv) in zip(self.k, self.v, layers):
            k[:, : sk.shape[1]] = sk
            v[:, : sv.shape[1]] = sv
        self.n_past = n_past

    def store(self, layer: int, start: int, k: np.ndarray, v: np.ndarray) -> None:
        """Write keys/values ``[n, Hkv, D]`` for positions start..start+n-1 of one layer.

        The buffers are head-major, ``[Hkv, slots, D]``, the layout attention() reads.
        """
        kc, vc = self.k[layer], self.v[layer]
        slots = kc.shape[1]
        n = k.shape[0]
        if n == 1:  # a decode step: plain slicing, about 40 us less than the fancy index below
            kc[:, start % slots] = k[0]
            vc[:, start % slots] = v[0]
            return
        keep = min(n, slots)  # earlier rows of a long block would be overwritten anyway
        first = start + n - keep
        idx = np.arange(first, start + n) % slots
        kc[:, idx] = k[n - keep :].transpose(1, 0, 2)
        vc[:, idx] = v[n - keep :].transpose(1, 0, 2)
