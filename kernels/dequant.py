"""Dequantization: stored weight rows -> float32, bit-exact with ``gguf.quants``.

The ``deq_row_*`` helpers decode a column range of one row into a small
buffer; the matmul kernels reuse them to dequantize one tile at a time.
:func:`dequantize` decodes whole matrices, for small tensors (norms, biases,
embedding rows) and for tests. The decode path never calls it on a big matrix.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import ggml_types as gt
from .decode import E8M0_HALF, bf16_to_f32, e2m1_doubled, f16_to_f32, f16_to_f32_fast
from .validate import as_weight

# ---------------------------------------------------------------- row ranges
# Each helper writes columns [k0, k0 + kc) of `row` into dst[0:kc]. For the
# block types k0 and kc are multiples of 32.


@njit(cache=True)
def deq_row_f32(row, k0, kc, dst):
    for j in range(kc):
        dst[j] = row[k0 + j]


@njit(cache=True)
def deq_row_f16(row, k0, kc, dst):
    for j in range(kc):
        dst[j] = f16_to_f32(row[k0 + j])


@njit(cache=True)
def deq_row_f16_fast(row, k0, kc, dst):
    """As deq_row_f16 but with the hardware conversion (differs only in NaN payloads)."""
    for j in range(kc):
        dst[j] = f16_to_f32_fast(row[k0 + j])


@njit(cache=True)
def deq_row_bf16(row, k0, kc, dst):
    for j in range(kc):
        dst[j] = bf16_to_f32(row[k0 + j])


@njit(cache=True)
def deq_row_q8_0(row, k0, kc, dst):
    b0 = k0 // 32
    for b in range(kc // 32):
        o = (b0 + b) * 34
        d = f16_to_f32(np.int64(row[o]) | (np.int64(row[o + 1]) << 8))
        for j in range(32):
            dst[b * 32 + j] = np.float32(np.int8(row[o + 2 + j])) * d


@njit(cache=True)
def deq_row_mxfp4(row, k0, kc, dst):
    b0 = k0 // 32
    for b in range(kc // 32):
        o = (b0 + b) * 17
        d = E8M0_HALF[row[o]]
        for j in range(16):
            q = np.float32(row[o + 1 + j])
            hi = np.floor(q * np.float32(0.0625))
            lo = q - np.float32(16.0) * hi
            # + 0.0 turns nibble 8's -0.0 into +0.0, as ggml's integer table does
            dst[b * 32 + j] = (e2m1_doubled(lo) + np.float32(0.0)) * d
            dst[b * 32 + 16 + j] = (e2m1_doubled(hi) + np.float32(0.0)) * d


# ------------------------------------------------------------ whole matrices


@njit(parallel=True, cache=True)
def _dequantize_f32(w, cols, out):
    for r in prange(w.shape[0]):
        deq_row_f32(w[r], 0, cols, out[r])


@njit(parallel=True, cache=True)
def _dequantize_f16(w, cols, out):
    for r in prange(w.shape[0]):
        deq_row_f16(w[r], 0, cols, out[r])


@njit(parallel=True, cache=True)
def _dequantize_bf16(w, cols, out):
    for r in prange(w.shape[0]):
        deq_row_bf16(w[r], 0, cols, out[r])


@njit(parallel=True, cache=True)
def _dequantize_q8_0(w, cols, out):
    for r in prange(w.shape[0]):
        deq_row_q8_0(w[r], 0, cols, out[r])


@njit(parallel=True, cache=True)
def _dequantize_mxfp4(w, cols, out):
    for r in prange(w.shape[0]):
        deq_row_mxfp4(w[r], 0, cols, out[r])


_KERNELS = {
    gt.F32: _dequantize_f32,
    gt.F16: _dequantize_f16,
    gt.BF16: _dequantize_bf16,
    gt.Q8_0: _dequantize_q8_0,
    gt.MXFP4: _dequantize_mxfp4,
}


def dequantize(ggml_type: int, w: np.ndarray, cols: int) -> np.ndarray:
    """Decode stored rows to a new float32 array of shape ``w.shape[:-1] + (cols,)``.

    ``w`` is in kernel storage form (see ``ggml_types.storage_layout``) with any
    number of leading axes. The result is always a fresh, writable array.
    """
    w = as_weight(ggml_type, w, cols, min_ndim=1, max_ndim=8)
    lead = w.shape[:-1]
    flat = w.reshape(-1, w.shape[-1])
    out = np.empty((flat.shape[0], cols), dtype=np.float32)
    if flat.shape[0]:
        _KERNELS[ggml_type](flat, cols, out)
    return out.reshape(lead + (cols,))
