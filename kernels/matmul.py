"""Prefill matrix-matrix kernels: ``out = X @ W.T`` with W in stored form.

Tiled and fused: a task owns ROW_TILE weight rows; it dequantizes them
COL_CHUNK columns at a time into a small float32 buffer (L1-sized) and uses
that buffer for every token before moving on, so each weight block is decoded
exactly once per call. A 4-token x 8-row register-blocked micro-kernel does the
multiply (32 independent accumulators that LLVM vectorizes along the columns).
Tasks are parallel over row tiles; an expert slice ``w3[e]`` is simply a 2-D W.
The loop is written once (:func:`matmul_kernel`); each type, here and in
mxfp4_fast.py, brings its row-range decoder.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from .dequant import deq_row_bf16, deq_row_f16_fast, deq_row_f32, deq_row_mxfp4, deq_row_q8_0
from .matvec import FASTMATH
from .specialize import Hook, specialize

ROW_TILE = 16  # weight rows per task (a multiple of 8)
COL_CHUNK = 512  # columns dequantized at a time (a multiple of 32): 16 x 512 x 4 B = 32 KiB


@njit(cache=True, fastmath=FASTMATH)
def _micro_4x8(X, t, r, k0, kc, buf, acc):
    """acc[t:t+4, r:r+8] += X[t:t+4, k0:k0+kc] @ buf[r:r+8, :kc].T (32 accumulators)."""
    x0 = X[t + 0]
    x1 = X[t + 1]
    x2 = X[t + 2]
    x3 = X[t + 3]
    b0 = buf[r + 0]
    b1 = buf[r + 1]
    b2 = buf[r + 2]
    b3 = buf[r + 3]
    b4 = buf[r + 4]
    b5 = buf[r + 5]
    b6 = buf[r + 6]
    b7 = buf[r + 7]
    c00 = c01 = c02 = c03 = c04 = c05 = c06 = c07 = np.float32(0.0)
    c10 = c11 = c12 = c13 = c14 = c15 = c16 = c17 = np.float32(0.0)
    c20 = c21 = c22 = c23 = c24 = c25 = c26 = c27 = np.float32(0.0)
    c30 = c31 = c32 = c33 = c34 = c35 = c36 = c37 = np.float32(0.0)
    for k in range(kc):
        w0 = b0[k]
        w1 = b1[k]
        w2 = b2[k]
        w3 = b3[k]
        w4 = b4[k]
        w5 = b5[k]
        w6 = b6[k]
        w7 = b7[k]
        v = x0[k0 + k]
        c00 += v * w0
        c01 += v * w1
        c02 += v * w2
        c03 += v * w3
        c04 += v * w4
        c05 += v * w5
        c06 += v * w6
        c07 += v * w7
        v = x1[k0 + k]
        c10 += v * w0
        c11 += v * w1
        c12 += v * w2
        c13 += v * w3
        c14 += v * w4
        c15 += v * w5
        c16 += v * w6
        c17 += v * w7
        v = x2[k0 + k]
        c20 += v * w0
        c21 += v * w1
        c22 += v * w2
        c23 += v * w3
        c24 += v * w4
        c25 += v * w5
        c26 += v * w6
        c27 += v * w7
        v = x3[k0 + k]
        c30 += v * w0
        c31 += v * w1
        c32 += v * w2
        c33 += v * w3
        c34 += v * w4
        c35 += v * w5
        c36 += v * w6
        c37 += v * w7
    acc[t + 0, r + 0] += c00
    acc[t + 0, r + 1] += c01
    acc[t + 0, r + 2] += c02
    acc[t + 0, r + 3] += c03
    acc[t + 0, r + 4] += c04
    acc[t + 0, r + 5] += c05
    acc[t + 0, r + 6] += c06
    acc[t + 0, r + 7] += c07
    acc[t + 1, r + 0] += c10
    acc[t + 1, r + 1] += c11
    acc[t + 1, r + 2] += c12
    acc[t + 1, r + 3] += c13
    acc[t + 1, r + 4] += c14
    acc[t + 1, r + 5] += c15
    acc[t + 1, r + 6] += c16
    acc[t + 1, r + 7] += c17
    acc[t + 2, r + 0] += c20
    acc[t + 2, r + 1] += c21
    acc[t + 2, r + 2] += c22
    acc[t + 2, r + 3] += c23
    acc[t + 2, r + 4] += c24
    acc[t + 2, r + 5] += c25
    acc[t + 2, r + 6] += c26
    acc[t + 2, r + 7] += c27
    acc[t + 3, r + 0] += c30
    acc[t + 3, r + 1] += c31
    acc[t + 3, r + 2] += c32
    acc[t + 3, r + 3] += c33
    acc[t + 3, r + 4] += c34
    acc[t + 3, r + 5] += c35
    acc[t + 3, r + 6] += c36
    acc[t + 3, r + 7] += c37


@njit(cache=True, fastmath=FASTMATH)
def _micro_1x8(X, t, r, k0, kc, buf, acc):
    """The one-token remainder of _micro_4x8."""
    x0 = X[t + 0]
    b0 = buf[r + 0]
    b1 = buf[r + 1]
    b2 = buf[r + 2]
    b3 = buf[r + 3]
    b4 = buf[r + 4]
    b5 = buf[r + 5]
    b6 = buf[r + 6]
    b7 = buf[r + 7]
    c00 = c01 = c02 = c03 = c04 = c05 = c06 = c07 = np.float32(0.0)
    for k in range(kc):
        w0 = b0[k]
        w1 = b1[k]
        w2 = b2[k]
        w3 = b3[k]
        w4 = b4[k]
        w5 = b5[k]
        w6 = b6[k]
        w7 = b7[k]
        v = x0[k0 + k]
        c00 += v * w0
        c01 += v * w1
        c02 += v * w2
        c03 += v * w3
        c04 += v * w4
        c05 += v * w5
        c06 += v * w6
        c07 += v * w7
    acc[t + 0, r + 0] += c00
    acc[t + 0, r + 1] += c01
    acc[t + 0, r + 2] += c02
    acc[t + 0, r + 3] += c03
    acc[t + 0, r + 4] += c04
    acc[t + 0, r + 5] += c05
    acc[t + 0, r + 6] += c06
    acc[t + 0, r + 7] += c07


@njit(cache=True)
def gemm_tile(X, k0, kc, buf, acc):
    """acc[t, r] += X[t, k0:k0+kc] . buf[r, :kc] for all tokens t and ROW_TILE rows r.

    Register blocking of 4 tokens x 8 rows: each loaded weight serves 4 tokens
    and each activation 8 rows. The micro-kernels are separate functions on
    purpose: inlined into this loop nest LLVM spills and runs at half speed.
    """
    T = X.shape[0]
    for r in range(0, ROW_TILE, 8):
        t = 0
        while t + 4 <= T:
            _micro_4x8(X, t, r, k0, kc, buf, acc)
            t += 4
        while t < T:
            _micro_1x8(X, t, r, k0, kc, buf, acc)
            t += 1


@njit(cache=True)
def _store_tile(acc, out, r0, nr):
    for t in range(out.shape[0]):
        for r in range(nr):
            out[t, r0 + r] = acc[t, r]


# The tiled loop, written once; each kernel binds its row-range decoder.

_deq_row = Hook("columns [k0, k0 + kc) of one stored row -> dst[:kc] as float32 (dequant.py, mxfp4_fast.py)")


def _tiled(w, X, out):
    rows, cols = w.shape[0], X.shape[1]
    for tile in prange((rows + ROW_TILE - 1) // ROW_TILE):
        r0 = tile * ROW_TILE
        nr = min(ROW_TILE, rows - r0)
        buf = np.zeros((ROW_TILE, COL_CHUNK), np.float32)  # rows past nr stay zero
        acc = np.zeros((X.shape[0], ROW_TILE), np.float32)
        for k0 in range(0, cols, COL_CHUNK):
            kc = min(COL_CHUNK, cols - k0)
            for r in range(nr):
                _deq_row(w[r0 + r], k0, kc, buf[r])
            gemm_tile(X, k0, kc, buf, acc)
        _store_tile(acc, out, r0, nr)


def matmul_kernel(name: str, deq_row: Callable) -> Callable:
    """The parallel tiled ``out = X @ W.T`` of one row-range decoder."""
    return specialize(_tiled, name, {"_deq_row": deq_row}, parallel=True)


matmul_mxfp4 = matmul_kernel("matmul_mxfp4", deq_row_mxfp4)
matmul_q8_0 = matmul_kernel("matmul_q8_0", deq_row_q8_0)
matmul_f32 = matmul_kernel("matmul_f32", deq_row_f32)
matmul_f16 = matmul_kernel("matmul_f16", deq_row_f16_fast)
matmul_bf16 = matmul_kernel("matmul_bf16", deq_row_bf16)
