"""RMSNorm: ``out = x / sqrt(mean(x^2) + eps) * w`` row by row.

The mean of squares is accumulated in float64 (vectorized; reassociation only
changes the order of float64 additions), so the result is the float64 value
rounded once to float32. ``out`` may be ``x`` itself.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .validate import as_input, check_output

_FASTMATH = {"reassoc", "contract", "nsz"}
_PARALLEL_MIN_ROWS = 4  # below this a parallel launch costs more than it saves


@njit(cache=True, fastmath=_FASTMATH)
def _rmsnorm_row(x, w, eps, out):
    d = x.shape[0]
    ss = 0.0
    for j in range(d):
        v = np.float64(x[j])
        ss += v * v
    scale = 1.0 / np.sqrt(ss / d + eps)
    for j in range(d):
        out[j] = np.float32(np.float64(x[j]) * scale * np.float64(w[j]))


@njit(cache=True)
def _rmsnorm_serial(x, w, eps, out):
    for t in range(x.shape[0]):
        _rmsnorm_row(x[t], w, eps, out[t])


@njit(parallel=True, cache=True)
def _rmsnorm_parallel(x, w, eps, out):
    for t in prange(x.shape[0]):
        _rmsnorm_row(x[t], w, eps, out[t])


def rmsnorm(x: np.ndarray, w: np.ndarray, eps: float, out: np.ndarray) -> None:
    """Normalize each row of x ``[T, d]`` (or one vector ``[d]``) and scale by w ``[d]`` into out."""
    if out is x:  # in place: the kernel reads a row fully before writing it
        check_output(out, "out", x.shape)
        xin = x
    else:
        xin = as_input(x, "x")
        check_output(out, "out", xin.shape)
    if xin.ndim not in (1, 2):
        raise ValueError(f"x must be [T, d] or [d], got shape {xin.shape}")
    d = xin.shape[-1]
    w = as_input(w, "w", (d,))
    if xin.ndim == 1:
        xin, out = xin[None], out[None]
    if xin.flags.writeable:  # one compiled signature: read-only x
        xin = xin.view()
        xin.flags.writeable = False
    kernel = _rmsnorm_parallel if xin.shape[0] >= _PARALLEL_MIN_ROWS else _rmsnorm_serial
    kernel(xin, w, float(eps), out)
