"""Per-layer key/value cache.

Full-attention layers keep one slot per position of the context. Sliding-window
layers keep a ring of `sliding_window` slots (position p lives in slot
p % window), so their memory stays constant however long the context grows.
Buffers are allocated with np.zeros, whose pages the OS maps only when written:
a 128k context costs memory only as far as it is used.
"""

from __future__ import annotations

import numpy as np

from .config import ModelConfig


class KVCache:
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
            shape = (slots, cfg.n_kv_heads, cfg.head_dim)
            self.k.append(np.zeros(shape, dtype=np.float32))
            self.v.append(np.zeros(shape, dtype=np.float32))
            self.window.append(window)
        self.n_past = 0

    def reset(self) -> None:
        """Forget every position; old slots are overwritten before they are read again."""
        self.n_past = 0

    def store(self, layer: int, start: int, k: np.ndarray, v: np.ndarray) -> None:
        """Write keys/values for positions start..start+len(k)-1 of one layer."""
        kc, vc = self.k[layer], self.v[layer]
        slots = kc.shape[0]
        n = k.shape[0]
        keep = min(n, slots)  # earlier rows of a long block would be overwritten anyway
        first = start + n - keep
        idx = np.arange(first, start + n) % slots
        kc[idx] = k[n - keep :]
        vc[idx] = v[n - keep :]
