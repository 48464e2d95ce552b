"""Q8_0 and BF16 decode kernels on the register-resident vectors of :mod:`simd`.

Same contracts as the plain ``expert_matvec_q8_0`` / ``expert_matvec_bf16``
(matvec.py); ``linear`` picks these or the plain ones by the kernel path
(:data:`simd.KERNEL_ISA`, ``GPTOSS_KERNELS``). The vector code is plain LLVM IR
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

Both use the row loops of vector_dots.py. Each step also prefetches PREFETCH
bytes ahead into L1 (past the row's end that is the next row, where the task
goes next). Measured on 2 Xeon cores (AVX-512) streaming 300 MB: Q8_0 8 -> 13.5 GB/s on one thread, 15 -> 26.5 on two, with
plain-read bandwidth at 17.5 / 29.5 GB/s.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import simd
from .decode import bf16_to_f32, f16_to_f32_fast
from .matvec import expert_matvec_kernel
from .vector_dots import row_dot

PREFETCH = 2048  # bytes ahead of the block being decoded (Q8_0: about 15 blocks)
BF16_PREFETCH = PREFETCH // 2  # the same distance in bf16 elements


@njit(cache=True, inline="always")
def _q8_scale(row, o):
    return f16_to_f32_fast(np.uint16(row[o]) | (np.uint16(row[o + 1]) << np.uint16(8)))


# ------------------------------------------------------------------ Q8_0 row dots


@njit(cache=True, inline="always")
def _q8_fma_avx512(acc, row, b, x):
    return simd.q8_block_fma_h(acc, row, b * 34, x, b * 32)


@njit(cache=True, inline="always")
def _q8_fma_ssse3(acc, row, b, x):
    o = b * 34
    return simd.q8_block_fma(acc, row, o, _q8_scale(row, o), x, b * 32)


# AVX-512: 136 bytes per step, three cache lines prefetched
dot_q8_0_avx512 = row_dot("dot_q8_0_avx512", _q8_fma_avx512, accumulators=4, stride=34, ahead=PREFETCH, lines=3)
dot_q8_0_ssse3 = row_dot("dot_q8_0_ssse3", _q8_fma_ssse3, accumulators=2, stride=34, ahead=PREFETCH, lines=2)


# ------------------------------------------------------------------ BF16 row dots
# Any width: 32-element groups in the vectors, the remaining cols % 32 in a scalar tail.


@njit(cache=True, inline="always")
def _bf16_tail(row, x, n0, s):
    t = np.float32(0.0)
    for j in range(n0, x.shape[0]):
        t += bf16_to_f32(row[j]) * x[j]
    return s + t


@njit(cache=True, inline="always")
def _bf16_fma(acc, row, j, x):
    return simd.bf16_fma(acc, row, j, x, j)


# Positions are elements. AVX-512: 256 bytes per step, four cache lines (32 elements each) prefetched.
dot_bf16_avx512 = row_dot("dot_bf16_avx512", _bf16_fma, accumulators=4, block=32, stride=1, ahead=BF16_PREFETCH,
                          lines=4, line=32, tail=_bf16_tail)
dot_bf16_ssse3 = row_dot("dot_bf16_ssse3", _bf16_fma, accumulators=2, block=32, stride=1, ahead=BF16_PREFETCH,
                         lines=2, line=32, tail=_bf16_tail)


# ------------------------------------------------------------------ expert matvec
# w3: [n_experts, rows, width], experts: int64[k], x: float32[k, cols], out: float32[k, rows].

EXPERT_MATVEC_Q8_0 = {p: expert_matvec_kernel(f"expert_matvec_q8_0_{p}", dot)
                      for p, dot in (("avx512", dot_q8_0_avx512), ("ssse3", dot_q8_0_ssse3))}
EXPERT_MATVEC_BF16 = {p: expert_matvec_kernel(f"expert_matvec_bf16_{p}", dot)
                      for p, dot in (("avx512", dot_bf16_avx512), ("ssse3", dot_bf16_ssse3))}
