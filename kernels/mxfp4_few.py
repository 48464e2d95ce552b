"""MXFP4 products for a few tokens (AVX-512): each block decoded once for four tokens.

Why: in a short prompt (a chat turn of 10-50 tokens) each expert sees only
2-15 tokens. The token-lane kernels of gemm_t.py dequantize every weight to a
float tile (a store and a load per weight) and pad the group to 8 lanes, and
one matvec per token streams and decodes the matrix again for each token.
Here a task walks its rows two at a time, and for every 32-weight block the
two decoded rows are multiplied into one accumulator per row and token, four
tokens per pass: each decode feeds four tokens, each load of x feeds two rows,
and the rows' bytes come from memory once (later passes find them in L1).
Measured against those paths on a 20b expert (2880 x 2880, from memory, 2
threads): 1.2-1.8x for 2-12 tokens, 1.1x for 13-15, equal at 16 (linear.py
switches there).

Contract as :func:`gptoss_kernels.matmul.matmul_mxfp4`: ``w [rows, width]``
(packed MXFP4 rows), ``X [t, cols]`` float32, ``out [t, rows]`` written.
Each output is a float32 sum of fused multiply-adds over two accumulators
(one for each 16-weight half of a block), so it agrees with the other
kernels to rounding.
"""

from __future__ import annotations

from numba import njit, prange

from . import simd
from .decode import E8M0_HALF
from .matvec import ROWS_PER_TASK
from .mxfp4_fast import PAIR_PREFETCH, dot2_mxfp4_avx512, dot_mxfp4_avx512


@njit(cache=True)
def dot4_mxfp4_avx512(row, x0, x1, x2, x3):
    """(row . x0, row . x1, row . x2, row . x3), each block decoded once."""
    nb = x0.shape[0] // 32
    a0 = simd.vzero()
    a1 = simd.vzero()
    a2 = simd.vzero()
    a3 = simd.vzero()
    for b in range(nb):
        o = b * 17
        xo = b * 32
        simd.prefetch(row, o + PAIR_PREFETCH)
        w = simd.mx_block_decode_avx512(row, o, E8M0_HALF[row[o]])
        a0 = simd.vfma(a0, w, x0, xo)
        a1 = simd.vfma(a1, w, x1, xo)
        a2 = simd.vfma(a2, w, x2, xo)
        a3 = simd.vfma(a3, w, x3, xo)
    return simd.vsum(a0), simd.vsum(a1), simd.vsum(a2), simd.vsum(a3)


@njit(cache=True)
def dot4x2_mxfp4_avx512(ra, rb, x0, x1, x2, x3):
    """Two rows times four tokens: each x load feeds two FMAs, each decoded block four."""
    nb = x0.shape[0] // 32
    a0 = simd.vzero()
    a1 = simd.vzero()
    a2 = simd.vzero()
    a3 = simd.vzero()
    c0 = simd.vzero()
    c1 = simd.vzero()
    c2 = simd.vzero()
    c3 = simd.vzero()
    for b in range(nb):
        o = b * 17
        xo = b * 32
        simd.prefetch(ra, o + PAIR_PREFETCH)
        simd.prefetch(rb, o + PAIR_PREFETCH)
        wa = simd.mx_block_decode_avx512(ra, o, E8M0_HALF[ra[o]])
        wb = simd.mx_block_decode_avx512(rb, o, E8M0_HALF[rb[o]])
        a0 = simd.vfma(a0, wa, x0, xo)
        c0 = simd.vfma(c0, wb, x0, xo)  # same x load (LLVM reuses it)
        a1 = simd.vfma(a1, wa, x1, xo)
        c1 = simd.vfma(c1, wb, x1, xo)  # same x load (LLVM reuses it)
        a2 = simd.vfma(a2, wa, x2, xo)
        c2 = simd.vfma(c2, wb, x2, xo)  # same x load (LLVM reuses it)
        a3 = simd.vfma(a3, wa, x3, xo)
        c3 = simd.vfma(c3, wb, x3, xo)  # same x load (LLVM reuses it)
    return (simd.vsum(a0), simd.vsum(a1), simd.vsum(a2), simd.vsum(a3),
            simd.vsum(c0), simd.vsum(c1), simd.vsum(c2), simd.vsum(c3))

@njit(cache=True)
def _row_tokens_avx512(row, X, j, out, r):
    """out[j:, r] = X[j:] @ row for a task's odd last row, four tokens per pass."""
    t = X.shape[0]
    while j + 4 <= t:
        out[j, r], out[j + 1, r], out[j + 2, r], out[j + 3, r] = dot4_mxfp4_avx512(row, X[j], X[j + 1], X[j + 2], X[j + 3])
        j += 4
    left = t - j
    if left >= 2:  # slots past the last token repeat it; their sums are dropped
        j2 = min(j + 2, t - 1)
        s0, s1, s2, _ = dot4_mxfp4_avx512(row, X[j], X[j + 1], X[j2], X[j2])
        out[j, r], out[j + 1, r] = s0, s1
        if left == 3:
            out[j2, r] = s2
    elif left == 1:
        out[j, r] = dot_mxfp4_avx512(row, X[j])


@njit(parallel=True, cache=True)
def matmul_few_mxfp4_avx512(w, X, out):
    """out = X @ W.T; tasks of ROWS_PER_TASK rows, taken two rows by four tokens at a time."""
    rows, t = w.shape[0], X.shape[0]
    for task in prange((rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        r = task * ROWS_PER_TASK
        r1 = min(rows, r + ROWS_PER_TASK)
        while r + 2 <= r1:
            j = 0
            while j + 4 <= t:
                (out[j, r], out[j + 1, r], out[j + 2, r], out[j + 3, r],
                 out[j, r + 1], out[j + 1, r + 1], out[j + 2, r + 1], out[j + 3, r + 1]) = dot4x2_mxfp4_avx512(
                    w[r], w[r + 1], X[j], X[j + 1], X[j + 2], X[j + 3])
                j += 4
            left = t - j
            if left >= 2:  # slots past the last token repeat it; their sums are dropped
                j1 = j + 1
                j2 = min(j + 2, t - 1)
                s0, s1, s2, _, u0, u1, u2, _ = dot4x2_mxfp4_avx512(w[r], w[r + 1], X[j], X[j1], X[j2], X[j2])
                out[j, r], out[j1, r], out[j, r + 1], out[j1, r + 1] = s0, s1, u0, u1
                if left == 3:
                    out[j2, r], out[j2, r + 1] = s2, u2
            elif left == 1:
                out[j, r], out[j, r + 1] = dot2_mxfp4_avx512(w[r], w[r + 1], X[j])
            r += 2
        if r < r1:
            _row_tokens_avx512(w[r], X, 0, out, r)

