"""Rotary position embedding, half-split ("NeoX") style, applied in place.

For each head the first half a and second half b of the vector become
``[a*cos - b*sin, b*cos + a*sin]``. The caller computes the tables (YaRN
frequencies and scaling live in gptoss_cli/rope.py); the products are formed
in float64 and rounded once.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .validate import as_input


@njit(cache=True)
def _rope_token(x, c, s):
    heads, dim = x.shape
    half = dim // 2
    for h in range(heads):
        for i in range(half):
            a = np.float64(x[h, i])
            b = np.float64(x[h, half + i])
            ci = np.float64(c[i])
            si = np.float64(s[i])
            x[h, i] = np.float32(a * ci - b * si)
            x[h, half + i] = np.float32(b * ci + a * si)


@njit(parallel=True, cache=True)
def _rope(x, cos, sin):
    for t in prange(x.shape[0]):
        _rope_token(x[t], cos[t], sin[t])


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> None:
    """Rotate x ``[T, H, D]`` in place with cos/sin tables ``[T, D//2]``."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 3:
        raise ValueError("x must be a float32 array [T, H, D]")
    if not x.flags.c_contiguous or not x.flags.writeable:
        raise ValueError("x must be C-contiguous and writable (it is rotated in place)")
    T, _, D = x.shape
    if D % 2:
        raise ValueError(f"head dimension must be even, got {D}")
    cos = as_input(cos, "cos", (T, D // 2))
    sin = as_input(sin, "sin", (T, D // 2))
    if T:
        _rope(x, cos, sin)
