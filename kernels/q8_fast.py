"""Q8_0 and BF16 decode kernels on the register-resident vectors of :mod:`simd`.

Same contracts as the plain ``expert_matvec_q8_0`` / ``expert_matvec_bf16``
(matvec.py); ``linear`` picks these or the plain ones by the kernel path
(:data:`simd.MXFP4_ISA`, ``GPTOSS_KERNELS``). The vector code is plain LLVM IR
(``sitofp <32 x i8>``, a 16-bit shift for bf16), so it is correct on any x86
CPU; the two sets differ in how they are tuned:

* ``avx512``: four ``<32 x float>`` accumulators (8 zmm) and the Q8_0 block
  scale widened in the vector unit (``vcvtph2psx`` with a broadcast operand).
* ``ssse3``: two accumulators (8 ymm on AVX2, which has 16 registers) and the
  scale decoded by :func:`decode.f16_to_f32_fast` (no F16C needed).

Each weight is ``q * d`` (Q8_0: exact in float32) or the widened bf16, then
``acc + w * x`` with contraction, exactly as the plain loops; only the order
of the float32 summation differs (lane ``j`` of accumulator ``a`` sums element
``j`` of every fourth block, and the lanes are added pairwise at the end).

Each step also prefetches PREFETCH bytes ahead into L1 (past the row's end that
is the next row, where the task goes next). Measured on 2 Xeon cores (AVX-512)
streaming 300 MB: Q8_0 8 -> 13.5 GB/s on one thread, 15 -> 26.5 on two, with
plain-read bandwidth at 17.5 / 29.5 GB/s.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import simd
from .decode import bf16_to_f32, f16_to_f32_fast
from .matvec import ROWS_PER_TASK

PREFETCH = 2048  # bytes ahead of the block being decoded (Q8_0: about 15 blocks)
BF16_PREFETCH = PREFETCH // 2  # the same distance in bf16 elements


@njit(cache=True, inline="always")
def _q8_scale(row, o):
    return f16_to_f32_fast(np.uint16(row[o]) | (np.uint16(row[o + 1]) << np.uint16(8)))


# ------------------------------------------------------------------ Q8_0 row dots


@njit(cache=True)
def dot_q8_0_avx512(row, x):
    nb = x.shape[0] // 32
    a0 = simd.vzero()
    a1 = simd.vzero()
    a2 = simd.vzero()
    a3 = simd.vzero()
    b = 0
    while b + 4 <= nb:  # 136 bytes per step: three cache lines prefetched
        o = b * 34
        xo = b * 32
        simd.prefetch(row, o + PREFETCH)
        simd.prefetch(row, o + PREFETCH + 64)
        simd.prefetch(row, o + PREFETCH + 128)
        a0 = simd.q8_block_fma_h(a0, row, o, x, xo)
        a1 = simd.q8_block_fma_h(a1, row, o + 34, x, xo + 32)
        a2 = simd.q8_block_fma_h(a2, row, o + 68, x, xo + 64)
        a3 = simd.q8_block_fma_h(a3, row, o + 102, x, xo + 96)
        b += 4
    while b < nb:
        a0 = simd.q8_block_fma_h(a0, row, b * 34, x, b * 32)
        b += 1
    return simd.vsum(simd.vadd(simd.vadd(a0, a1), simd.vadd(a2, a3)))


@njit(cache=True)
def dot_q8_0_ssse3(row, x):
    nb = x.shape[0] // 32
    a0 = simd.vzero()
    a1 = simd.vzero()
    b = 0
    while b + 2 <= nb:
        o = b * 34
        xo = b * 32
        simd.prefetch(row, o + PREFETCH)
        simd.prefetch(row, o + PREFETCH + 64)
        a0 = simd.q8_block_fma(a0, row, o, _q8_scale(row, o), x, xo)
        a1 = simd.q8_block_fma(a1, row, o + 34, _q8_scale(row, o + 34), x, xo + 32)
        b += 2
    if b < nb:
        o = b * 34
        a0 = simd.q8_block_fma(a0, row, o, _q8_scale(row, o), x, b * 32)
    return simd.vsum(simd.vadd(a0, a1))


# ------------------------------------------------------------------ BF16 row dots
# Any width: 32-element groups in the vectors, the remaining cols % 32 in a scalar tail.


@njit(cache=True, inline="always")
def _bf16_tail(row, x, n0, s):
    t = np.float32(0.0)
    for j in range(n0, x.shape[0]):
        t += bf16_to_f32(row[j]) * x[j]
    return s + t


@njit(cache=True)
def dot_bf16_avx512(row, x):
    n = x.shape[0]
    a0 = simd.vzero()
    a1 = simd.vzero()
    a2 = simd.vzero()
    a3 = simd.vzero()
    j = 0
    while j + 128 <= n:  # 256 bytes per step: four cache lines prefetched
        simd.prefetch(row, j + BF16_PREFETCH)
        simd.prefetch(row, j + BF16_PREFETCH + 32)
        simd.prefetch(row, j + BF16_PREFETCH + 64)
        simd.prefetch(row, j + BF16_PREFETCH + 96)
        a0 = simd.bf16_fma(a0, row, j, x, j)
        a1 = simd.bf16_fma(a1, row, j + 32, x, j + 32)
        a2 = simd.bf16_fma(a2, row, j + 64, x, j + 64)
        a3 = simd.bf16_fma(a3, row, j + 96, x, j + 96)
        j += 128
    while j + 32 <= n:
        a0 = simd.bf16_fma(a0, row, j, x, j)
        j += 32
    return _bf16_tail(row, x, j, simd.vsum(simd.vadd(simd.vadd(a0, a1), simd.vadd(a2, a3))))


@njit(cache=True)
def dot_bf16_ssse3(row, x):
    n = x.shape[0]
    a0 = simd.vzero()
    a1 = simd.vzero()
    j = 0
    while j + 64 <= n:
        simd.prefetch(row, j + BF16_PREFETCH)
        simd.prefetch(row, j + BF16_PREFETCH + 32)
        a0 = simd.bf16_fma(a0, row, j, x, j)
        a1 = simd.bf16_fma(a1, row, j + 32, x, j + 32)
        j += 64
    while j + 32 <= n:
        a0 = simd.bf16_fma(a0, row, j, x, j)
        j += 32
    return _bf16_tail(row, x, j, simd.vsum(simd.vadd(a0, a1)))


# ------------------------------------------------------------------ expert matvec
# w3: [n_experts, rows, width], experts: int64[k], x: float32[k, cols], out: float32[k, rows].
# Tasks are (expert slot, ROWS_PER_TASK rows); prange hands each thread one
# contiguous, equal share of them.


@njit(parallel=True, cache=True)
def expert_matvec_q8_0_avx512(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_q8_0_avx512(w3[e, r], x[i])


@njit(parallel=True, cache=True)
def expert_matvec_q8_0_ssse3(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_q8_0_ssse3(w3[e, r], x[i])


@njit(parallel=True, cache=True)
def expert_matvec_bf16_avx512(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_bf16_avx512(w3[e, r], x[i])


@njit(parallel=True, cache=True)
def expert_matvec_bf16_ssse3(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_bf16_ssse3(w3[e, r], x[i])


EXPERT_MATVEC_Q8_0 = {"avx512": expert_matvec_q8_0_avx512, "ssse3": expert_matvec_q8_0_ssse3}
EXPERT_MATVEC_BF16 = {"avx512": expert_matvec_bf16_avx512, "ssse3": expert_matvec_bf16_ssse3}
