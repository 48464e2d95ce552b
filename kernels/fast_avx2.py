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

from collections.abc import Callable

from numba import njit

from . import pieces, simd, simd_i16
from .matvec import expert_matvec_kernel
from .specialize import Hook, specialize
from .vector_dots import row_dot, whole_blocks

MX_STEP_BYTES = 34  # weight bytes per MXFP4 step (two blocks)
Q8_STEP_BYTES = 34  # one Q8_0 block
PREFETCH = 1024  # bytes ahead of the step being multiplied
_VECTORS = (simd_i16.vzero8, simd.vadd, simd.vsum)


_step = Hook("one step: (acc, row, byte, prepared x, its byte) -> f32x8")
_STEP = Hook("weight bytes per step")
_XSTEP = Hook("prepared activation bytes per step")


def _at(acc, row, p, x):
    return _step(acc, row, p * _STEP, x, p * _XSTEP)


def _steps(row, x):
    return min(x.shape[0] // _XSTEP, row.shape[0] // _STEP)


@njit(cache=True, inline="always")
def _mx_last(row, x, p, s):
    if row.shape[0] - p * MX_STEP_BYTES >= 17:  # a row of an odd block count: its last block alone
        s += simd.vsum(simd_i16.mx16_block(simd_i16.vzero8(), row, p * MX_STEP_BYTES, x, p * simd_i16.MX_GROUP_BYTES))
    return s


def _dot(name: str, step: Callable, step_bytes: int, x_bytes: int, tail: Callable = whole_blocks) -> Callable:
    hooks = {"_step": step, "_STEP": step_bytes, "_XSTEP": x_bytes}
    at = specialize(_at, f"{name}_step", hooks, inline="always")
    steps = specialize(_steps, f"{name}_steps", {"_STEP": step_bytes, "_XSTEP": x_bytes}, inline="always")
    return row_dot(name, at, accumulators=2, stride=step_bytes, ahead=PREFETCH, lines=2, tail=tail,
                   vectors=_VECTORS, end=steps, inline=True)


dot_mxfp4_avx2 = _dot("dot_mxfp4_avx2", simd_i16.mx16_step, MX_STEP_BYTES, simd_i16.MX_GROUP_BYTES, _mx_last)
dot_q8_0_avx2 = _dot("dot_q8_0_avx2", simd_i16.q16_block, Q8_STEP_BYTES, simd_i16.Q8_GROUP_BYTES)

expert_matvec_mxfp4_avx2 = expert_matvec_kernel("expert_matvec_mxfp4_avx2", dot_mxfp4_avx2,
                                                prepare=pieces.split16_mxfp4)
expert_matvec_q8_0_avx2 = expert_matvec_kernel("expert_matvec_q8_0_avx2", dot_q8_0_avx2, prepare=pieces.split16_q8_0)
