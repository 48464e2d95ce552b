"""MXFP4 kernels on the shuffle decoders of :mod:`simd` (x86 only).

Same contracts as the plain ``expert_matvec_mxfp4`` (matvec.py) and
``matmul_mxfp4`` (matmul.py); ``linear`` picks these or the plain ones by
:data:`simd.MXFP4_ISA`. There is one set per path ('avx512', 'ssse3'), each
compiled only when first called, so a CPU never compiles code it cannot run.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import simd
from .decode import E8M0_HALF
from .matmul import COL_CHUNK, ROW_TILE, _store_tile, gemm_tile
from .matvec import ROWS_PER_TASK

# ------------------------------------------------------------------ row dots
# Four blocks per step into four accumulators, so consecutive blocks never wait
# on each other's adds; the accumulators stay in registers. Each step also
# prefetches the row PREFETCH bytes ahead (past the row's end that is the next
# row, which is where the task goes next): with it one core streams weights at
# close to its decoding rate instead of stalling on memory (measured 5 -> 11 GB/s).
#
# The expert matvec (AVX-512) walks rows in one of two orders, chosen per CPU
# (see avx512_row_order at the end):
# * pairs (dot2_mxfp4_avx512): two independent streams, one reduction per pair,
#   and a prefetch distance of PAIR_PREFETCH (about 2.7 rows, so the pair after
#   next). Intel Xeon, against one row at a time with 1 KB prefetch: 1.27x from
#   memory on 2 threads (docs/performance.md, "fifth session").
# * xperm (dot_mxfp4_xperm_avx512): one row at a time, x permuted once per call
#   into the lane order of simd's xperm decoder, which then needs no cross-lane
#   widening of the packed bytes. AMD Zen 4 ("seventh session").

PREFETCH = 1024  # bytes ahead of the block being decoded (two lines per 68-byte step)
PAIR_PREFETCH = 4096  # bytes ahead of each row of a pair (one line per 34-byte step)


@njit(cache=True)
def dot_mxfp4_avx512(row, x):
    nb = x.shape[0] // 32
    a0 = simd.vzero()
    a1 = simd.vzero()
    a2 = simd.vzero()
    a3 = simd.vzero()
    b = 0
    while b + 4 <= nb:
        o = b * 17
        xo = b * 32
        simd.prefetch(row, o + PREFETCH)
        simd.prefetch(row, o + PREFETCH + 64)
        a0 = simd.mx_block_fma_avx512(a0, row, o, E8M0_HALF[row[o]], x, xo)
        a1 = simd.mx_block_fma_avx512(a1, row, o + 17, E8M0_HALF[row[o + 17]], x, xo + 32)
        a2 = simd.mx_block_fma_avx512(a2, row, o + 34, E8M0_HALF[row[o + 34]], x, xo + 64)
        a3 = simd.mx_block_fma_avx512(a3, row, o + 51, E8M0_HALF[row[o + 51]], x, xo + 96)
        b += 4
    while b < nb:
        o = b * 17
        a0 = simd.mx_block_fma_avx512(a0, row, o, E8M0_HALF[row[o]], x, b * 32)
        b += 1
    return simd.vsum(simd.vadd(simd.vadd(a0, a1), simd.vadd(a2, a3)))


@njit(cache=True)
def dot2_mxfp4_avx512(ra, rb, x):
    """(ra . x, rb . x) for two MXFP4 rows in one pass.

    Two accumulators per row instead of four, so the float32 summation order
    differs from :func:`dot_mxfp4_avx512` (results agree to rounding).
    """
    nb = x.shape[0] // 32
    a0 = simd.vzero()
    a1 = simd.vzero()
    b0 = simd.vzero()
    b1 = simd.vzero()
    b = 0
    while b + 2 <= nb:
        o = b * 17
        xo = b * 32
        simd.prefetch(ra, o + PAIR_PREFETCH)
        simd.prefetch(rb, o + PAIR_PREFETCH)
        a0 = simd.mx_block_fma_avx512(a0, ra, o, E8M0_HALF[ra[o]], x, xo)
        b0 = simd.mx_block_fma_avx512(b0, rb, o, E8M0_HALF[rb[o]], x, xo)
        a1 = simd.mx_block_fma_avx512(a1, ra, o + 17, E8M0_HALF[ra[o + 17]], x, xo + 32)
        b1 = simd.mx_block_fma_avx512(b1, rb, o + 17, E8M0_HALF[rb[o + 17]], x, xo + 32)
        b += 2
    if b < nb:
        o = b * 17
        a0 = simd.mx_block_fma_avx512(a0, ra, o, E8M0_HALF[ra[o]], x, b * 32)
        b0 = simd.mx_block_fma_avx512(b0, rb, o, E8M0_HALF[rb[o]], x, b * 32)
    return simd.vsum(simd.vadd(a0, a1)), simd.vsum(simd.vadd(b0, b1))


XPERM_PREFETCH = 2048  # bytes ahead of the block being decoded (two lines per 68-byte step)
_XPERM = np.array(simd.XPERM_LANES, dtype=np.int64)


@njit(cache=True)
def xperm_rows(x, xp):
    """xp[i] = x[i] with each 32-element block in the lane order of :data:`simd.XPERM_LANES`."""
    for i in range(x.shape[0]):
        for b in range(x.shape[1] // 32):
            o = b * 32
            for p in range(32):
                xp[i, o + p] = x[i, o + _XPERM[p]]


@njit(cache=True)
def dot_mxfp4_xperm_avx512(row, xp):
    """row . x with ``xp`` the block-permuted x of :func:`xperm_rows` (one row, four accumulators)."""
    nb = xp.shape[0] // 32
    a0 = simd.vzero()
    a1 = simd.vzero()
    a2 = simd.vzero()
    a3 = simd.vzero()
    b = 0
    while b + 4 <= nb:
        o = b * 17
        xo = b * 32
        simd.prefetch(row, o + XPERM_PREFETCH)
        simd.prefetch(row, o + XPERM_PREFETCH + 64)
        a0 = simd.mx_block_fma_avx512_xperm(a0, row, o, E8M0_HALF[row[o]], xp, xo)
        a1 = simd.mx_block_fma_avx512_xperm(a1, row, o + 17, E8M0_HALF[row[o + 17]], xp, xo + 32)
        a2 = simd.mx_block_fma_avx512_xperm(a2, row, o + 34, E8M0_HALF[row[o + 34]], xp, xo + 64)
        a3 = simd.mx_block_fma_avx512_xperm(a3, row, o + 51, E8M0_HALF[row[o + 51]], xp, xo + 96)
        b += 4
    while b < nb:
        o = b * 17
        a0 = simd.mx_block_fma_avx512_xperm(a0, row, o, E8M0_HALF[row[o]], xp, b * 32)
        b += 1
    return simd.vsum(simd.vadd(simd.vadd(a0, a1), simd.vadd(a2, a3)))


@njit(cache=True)
def dot_mxfp4_ssse3(row, x):
    nb = x.shape[0] // 32
    a0 = simd.vzero()
    a1 = simd.vzero()
    a2 = simd.vzero()
    a3 = simd.vzero()
    b = 0
    while b + 4 <= nb:
        o = b * 17
        xo = b * 32
        simd.prefetch(row, o + PREFETCH)
        simd.prefetch(row, o + PREFETCH + 64)
        a0 = simd.mx_block_fma_ssse3(a0, row, o, E8M0_HALF[row[o]], x, xo)
        a1 = simd.mx_block_fma_ssse3(a1, row, o + 17, E8M0_HALF[row[o + 17]], x, xo + 32)
        a2 = simd.mx_block_fma_ssse3(a2, row, o + 34, E8M0_HALF[row[o + 34]], x, xo + 64)
        a3 = simd.mx_block_fma_ssse3(a3, row, o + 51, E8M0_HALF[row[o + 51]], x, xo + 96)
        b += 4
    while b < nb:
        o = b * 17
        a0 = simd.mx_block_fma_ssse3(a0, row, o, E8M0_HALF[row[o]], x, b * 32)
        b += 1
    return simd.vsum(simd.vadd(simd.vadd(a0, a1), simd.vadd(a2, a3)))


# ------------------------------------------------------------------ expert matvec
# w3: [n_experts, rows, width], experts: int64[k], x: float32[k, cols], out: float32[k, rows]


@njit(parallel=True, cache=True)
def expert_matvec_mxfp4_avx512(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        r1 = min(rows, r0 + ROWS_PER_TASK)
        r = r0
        while r + 2 <= r1:
            out[i, r], out[i, r + 1] = dot2_mxfp4_avx512(w3[e, r], w3[e, r + 1], x[i])
            r += 2
        if r < r1:
            out[i, r] = dot_mxfp4_avx512(w3[e, r], x[i])


@njit(parallel=True, cache=True)
def expert_matvec_mxfp4_xperm_avx512(w3, experts, x, out):
    xp = np.empty_like(x)
    xperm_rows(x, xp)
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_mxfp4_xperm_avx512(w3[e, r], xp[i])


@njit(parallel=True, cache=True)
def expert_matvec_mxfp4_ssse3(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_mxfp4_ssse3(w3[e, r], x[i])


# ------------------------------------------------------------------ tile dequant + matmul


@njit(cache=True)
def deq_row_mxfp4_avx512(row, k0, kc, dst):
    b0 = k0 // 32
    for b in range(kc // 32):
        o = (b0 + b) * 17
        simd.mx_block_store_avx512(row, o, E8M0_HALF[row[o]], dst, b * 32)


@njit(cache=True)
def deq_row_mxfp4_ssse3(row, k0, kc, dst):
    b0 = k0 // 32
    for b in range(kc // 32):
        o = (b0 + b) * 17
        simd.mx_block_store_ssse3(row, o, E8M0_HALF[row[o]], dst, b * 32)


@njit(parallel=True, cache=True)
def matmul_mxfp4_avx512(w, X, out):
    rows, cols = w.shape[0], X.shape[1]
    for tile in prange((rows + ROW_TILE - 1) // ROW_TILE):
        r0 = tile * ROW_TILE
        nr = min(ROW_TILE, rows - r0)
        buf = np.zeros((ROW_TILE, COL_CHUNK), np.float32)  # rows past nr stay zero
        acc = np.zeros((X.shape[0], ROW_TILE), np.float32)
        for k0 in range(0, cols, COL_CHUNK):
            kc = min(COL_CHUNK, cols - k0)
            for r in range(nr):
                deq_row_mxfp4_avx512(w[r0 + r], k0, kc, buf[r])
            gemm_tile(X, k0, kc, buf, acc)
        _store_tile(acc, out, r0, nr)


@njit(parallel=True, cache=True)
def matmul_mxfp4_ssse3(w, X, out):
    rows, cols = w.shape[0], X.shape[1]
    for tile in prange((rows + ROW_TILE - 1) // ROW_TILE):
        r0 = tile * ROW_TILE
        nr = min(ROW_TILE, rows - r0)
        buf = np.zeros((ROW_TILE, COL_CHUNK), np.float32)
        acc = np.zeros((X.shape[0], ROW_TILE), np.float32)
        for k0 in range(0, cols, COL_CHUNK):
            kc = min(COL_CHUNK, cols - k0)
            for r in range(nr):
                deq_row_mxfp4_ssse3(w[r0 + r], k0, kc, buf[r])
            gemm_tile(X, k0, kc, buf, acc)
        _store_tile(acc, out, r0, nr)


# How the AVX-512 expert matvec walks its rows depends on the CPU (docs/performance.md):
# on an Intel Xeon rows in pairs streamed 1.27x faster than one at a time (fifth
# session); on AMD Zen 4 pairs stream worse (a pure read of two rows at once: 16-21
# GB/s, one row: 30-34) and one row at a time with the xperm decoder gave 1.06x the
# whole 20b decode (seventh session, per-token alternation).
EXPERT_MATVEC_AVX512 = {"pairs": expert_matvec_mxfp4_avx512, "xperm": expert_matvec_mxfp4_xperm_avx512}


def avx512_row_order(cpu_name: str) -> str:
    """'xperm' (one row at a time) on AMD Zen CPUs, 'pairs' elsewhere: what was measured fastest."""
    return "xperm" if cpu_name.lower().startswith("znver") else "pairs"


EXPERT_MATVEC = {
    "avx512": EXPERT_MATVEC_AVX512[avx512_row_order(simd.host_cpu_name())],
    "ssse3": expert_matvec_mxfp4_ssse3,
}
MATMUL = {"avx512": matmul_mxfp4_avx512, "ssse3": matmul_mxfp4_ssse3}
DEQ_ROW = {"avx512": deq_row_mxfp4_avx512, "ssse3": deq_row_mxfp4_ssse3}
