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
from .mxfp4_fast import PAIR_PREFETCH, dot2_mxfp4_avx512


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
        # each x block is loaded once for both rows (LLVM reuses the load)
        a0 = simd.vfma(a0, wa, x0, xo)
        c0 = simd.vfma(c0, wb, x0, xo)
        a1 = simd.vfma(a1, wa, x1, xo)
        c1 = simd.vfma(c1, wb, x1, xo)
        a2 = simd.vfma(a2, wa, x2, xo)
        c2 = simd.vfma(c2, wb, x2, xo)
        a3 = simd.vfma(a3, wa, x3, xo)
        c3 = simd.vfma(c3, wb, x3, xo)
    return (simd.vsum(a0), simd.vsum(a1), simd.vsum(a2), simd.vsum(a3),
            simd.vsum(c0), simd.vsum(c1), simd.vsum(c2), simd.vsum(c3))


@njit(parallel=True, cache=True)
def matmul_few_mxfp4_avx512(w, X, out):
    """out = X @ W.T; tasks of ROWS_PER_TASK rows, taken two rows by four tokens at a time.

    A task's odd last row is paired with itself (both results land in the same place).
    """
    rows, t = w.shape[0], X.shape[0]
    for task in prange((rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK):
        r1 = min(rows, (task + 1) * ROWS_PER_TASK)
        for r in range(task * ROWS_PER_TASK, r1, 2):
            rb = min(r + 1, r1 - 1)
            j = 0
            while j + 4 <= t:
                s0, s1, s2, s3, u0, u1, u2, u3 = dot4x2_mxfp4_avx512(w[r], w[rb], X[j], X[j + 1], X[j + 2], X[j + 3])
                out[j, r], out[j + 1, r], out[j + 2, r], out[j + 3, r] = s0, s1, s2, s3
                out[j, rb], out[j + 1, rb], out[j + 2, rb], out[j + 3, rb] = u0, u1, u2, u3
                j += 4
            left = t - j
            if left >= 2:  # slots past the last token repeat it; their sums are dropped
                j2 = min(j + 2, t - 1)
                s0, s1, s2, _, u0, u1, u2, _ = dot4x2_mxfp4_avx512(w[r], w[rb], X[j], X[j + 1], X[j2], X[j2])
                out[j, r], out[j + 1, r], out[j2, r] = s0, s1, s2
                out[j, rb], out[j + 1, rb], out[j2, rb] = u0, u1, u2
            elif left == 1:
                out[j, r], out[j, rb] = dot2_mxfp4_avx512(w[r], w[rb], X[j])
