"""The `fast` precision's MXFP4 and Q8_0 decode kernels on AVX2 (no AVX-512).

``expert_matvec`` of the precision (and its grouped form): the task loop of
matvec.py, whose ``prepare`` step turns each activation row into its 16-bit
integers once per call (:func:`pieces.split16_mxfp4` / :func:`pieces.split16_q8_0`),
and the row dot of vector_dots.py, each step of a weight row one integer block
product of simd_i16.py into ``<8 x float>`` accumulators. kernel_sets.py imports this
module only for the ``ssse3`` kernel path of a CPU with ``avx2``; the precision's
products multiply the same rounded activations everywhere, so these agree with the
VNNI kernels and the exact kernels fed the rounded values to float32 rounding.

Contract as the exact ``expert_matvec`` (matvec.py).
"""

from __future__ import annotations

from numba import njit

from . import pieces, simd, simd_i16
from .matvec import expert_matvec_kernel
from .vector_dots import row_dot

MX_STEP_BYTES = 34  # weight bytes per MXFP4 step (two blocks)
Q8_STEP_BYTES = 34  # one Q8_0 block
PREFETCH = 1024  # bytes ahead of the step being multiplied
_VECTORS = (simd_i16.vzero8, simd.vadd, simd.vsum)


@njit(cache=True, inline="always")
def _mx_at(acc, row, p, x):
    return simd_i16.mx16_step(acc, row, p * MX_STEP_BYTES, x, p * simd_i16.MX_GROUP_BYTES)


@njit(cache=True, inline="always")
def _mx_steps(row, x):
    return min(x.shape[0] // simd_i16.MX_GROUP_BYTES, row.shape[0] // MX_STEP_BYTES)


@njit(cache=True, inline="always")
def _mx_last(row, x, p, s):
    if row.shape[0] - p * MX_STEP_BYTES >= 17:  # a row of an odd block count: its last block alone
        s += simd.vsum(simd_i16.mx16_block(simd_i16.vzero8(), row, p * MX_STEP_BYTES, x, p * simd_i16.MX_GROUP_BYTES))
    return s


@njit(cache=True, inline="always")
def _q8_at(acc, row, p, x):
    return simd_i16.q16_block(acc, row, p * Q8_STEP_BYTES, x, p * simd_i16.Q8_GROUP_BYTES)


@njit(cache=True, inline="always")
def _q8_steps(row, x):
    return min(x.shape[0] // simd_i16.Q8_GROUP_BYTES, row.shape[0] // Q8_STEP_BYTES)


dot_mxfp4_avx2 = row_dot("dot_mxfp4_avx2", _mx_at, accumulators=2, stride=MX_STEP_BYTES, ahead=PREFETCH, lines=2,
                         tail=_mx_last, vectors=_VECTORS, end=_mx_steps, inline=True)
dot_q8_0_avx2 = row_dot("dot_q8_0_avx2", _q8_at, accumulators=2, stride=Q8_STEP_BYTES, ahead=PREFETCH, lines=2,
                        vectors=_VECTORS, end=_q8_steps, inline=True)

expert_matvec_mxfp4_avx2 = expert_matvec_kernel("expert_matvec_mxfp4_avx2", dot_mxfp4_avx2,
                                                prepare=pieces.split16_mxfp4)
expert_matvec_q8_0_avx2 = expert_matvec_kernel("expert_matvec_q8_0_avx2", dot_q8_0_avx2, prepare=pieces.split16_q8_0)
