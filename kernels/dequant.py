"""Dequantization: stored weight rows -> float32, bit-exact with ``gguf.quants``.

The ``deq_row_*`` helpers decode a column range of one row into a small
buffer; the matmul kernels reuse them to dequantize one tile at a time (the
SIMD paths make theirs from the same block loop, :func:`block_row_decoder`).
:func:`dequantize` decodes whole matrices, for small tensors (norms, biases,
embedding rows) and for tests. The decode path never calls it on a big matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from . import ggml_types as gt
from .decode import E8M0_HALF, bf16_to_f32, e2m1_doubled, f16_to_f32, f16_to_f32_fast, f32_value, mxfp4_nibbles
from .specialize import Hook, specialize
from .validate import as_weight

# ---------------------------------------------------------------- row ranges
# Each decoder writes columns [k0, k0 + kc) of `row` into dst[0:kc]. For the
# block types k0 and kc are multiples of 32. They are made from two loops, one
# per element and one per 32-weight block, and the value / block decoder below.

_elem = Hook("one stored value -> float32")
_block = Hook("(row, block index, dst, offset): the block's 32 weights -> dst[offset : offset + 32]")


def _elements(row, k0, kc, dst):
    for j in range(kc):
        dst[j] = _elem(row[k0 + j])


def _blocks(row, k0, kc, dst):
    b0 = k0 // 32
    for b in range(kc // 32):
        _block(row, b0 + b, dst, b * 32)


def element_row_decoder(name: str, elem: Callable) -> Callable:
    """The row-range decoder of a one-value-per-element type, from its value decoder."""
    return specialize(_elements, name, {"_elem": elem})


def block_row_decoder(name: str, block: Callable) -> Callable:
    """The row-range decoder of a 32-weight block type, from its block decoder."""
    return specialize(_blocks, name, {"_block": block})


@njit(cache=True, inline="always")
def _q8_0_block(row, blk, dst, at):
    o = blk * 34
    d = f16_to_f32(np.int64(row[o]) | (np.int64(row[o + 1]) << 8))
    for j in range(32):
        dst[at + j] = np.float32(np.int8(row[o + 2 + j])) * d


@njit(cache=True, inline="always")
def _mxfp4_block(row, blk, dst, at):
    o = blk * 17
    d = E8M0_HALF[row[o]]
    for j in range(16):
        lo, hi = mxfp4_nibbles(row[o + 1 + j])
        # + 0.0 turns nibble 8's -0.0 into +0.0, as ggml's integer table does
        dst[at + j] = (e2m1_doubled(lo) + np.float32(0.0)) * d
        dst[at + 16 + j] = (e2m1_doubled(hi) + np.float32(0.0)) * d


deq_row_f32 = element_row_decoder("deq_row_f32", f32_value)
deq_row_f16 = element_row_decoder("deq_row_f16", f16_to_f32)
# the hardware conversion, for the products (differs from deq_row_f16 only in NaN payloads)
deq_row_f16_fast = element_row_decoder("deq_row_f16_fast", f16_to_f32_fast)
deq_row_bf16 = element_row_decoder("deq_row_bf16", bf16_to_f32)
deq_row_q8_0 = block_row_decoder("deq_row_q8_0", _q8_0_block)
deq_row_mxfp4 = block_row_decoder("deq_row_mxfp4", _mxfp4_block)


# ------------------------------------------------------------ whole matrices

_deq_row = Hook("a row-range decoder above")


def _rows(w, cols, out):
    for r in prange(w.shape[0]):
        _deq_row(w[r], 0, cols, out[r])


_KERNELS = {
    t: specialize(_rows, f"dequantize_{name}", {"_deq_row": deq_row}, parallel=True)
    for t, name, deq_row in (
        (gt.F32, "f32", deq_row_f32),
        (gt.F16, "f16", deq_row_f16),
        (gt.BF16, "bf16", deq_row_bf16),
        (gt.Q8_0, "q8_0", deq_row_q8_0),
        (gt.MXFP4, "mxfp4", deq_row_mxfp4),
    )
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
