"""The `fast` precision's MXFP4 and Q8_0 decode kernels on AVX-512 VNNI and VBMI.

``expert_matvec`` of the precision (its activations as the two 8-bit pieces of
:mod:`pieces`): the task loop of matvec.py, whose ``prepare`` step splits each
activation row into its pieces once per call, and the row dot of vector_dots.py,
each 68-byte step of a weight row one integer group product of simd_vnni.py.
kernel_sets.py imports this module only for a CPU with ``avx512vnni`` and
``avx512vbmi``; elsewhere, and for prefill everywhere, the precision's products
are the exact float kernels fed the same rounded activations
(:func:`pieces.rounded`), so every product of the precision multiplies the same
numbers and they agree to float32 rounding.

Contract as the exact ``expert_matvec`` (matvec.py).
"""

from __future__ import annotations

from collections.abc import Callable

from . import pieces, simd, simd_vnni
from .matvec import expert_matvec_kernel, reaching_row
from .specialize import Hook, specialize
from .vector_dots import row_dot

STEP = 68  # weight bytes per integer step (4 MXFP4 blocks or 2 Q8_0 blocks)
PREFETCH = 2048  # bytes ahead of the step being multiplied (two lines per step)

_step = Hook("one whole step: (acc, row, byte, prepared x, its byte) -> f32x16")
_partial = Hook("the row's last step, `valid` bytes of it: (acc, row, byte, prepared x, its byte, valid)")
_XSTEP = Hook("prepared activation bytes per step")


def _at(acc, row, p, x):
    return _step(acc, row, p * STEP, x, p * _XSTEP)


def _last(row, x, p, s):
    if p < x.shape[0] // _XSTEP:  # the matrix's last row: its partial step, read masked
        s += simd.vsum(_partial(simd_vnni.vzero16(), row, p * STEP, x, p * _XSTEP, row.shape[0] - p * STEP))
    return s


def _steps(row, x):
    return min(x.shape[0] // _XSTEP, row.shape[0] // STEP)


_VECTORS = (simd_vnni.vzero16, simd.vadd, simd.vsum)


def _dot(name: str, step: Callable, partial: Callable, xstep: int) -> Callable:
    at = specialize(_at, f"{name}_step", {"_step": step, "_XSTEP": xstep}, inline="always")
    last = specialize(_last, f"{name}_last", {"_partial": partial, "_XSTEP": xstep}, inline="always")
    steps = specialize(_steps, f"{name}_steps", {"_XSTEP": xstep}, inline="always")
    return row_dot(name, at, accumulators=2, stride=STEP, ahead=PREFETCH, lines=2, tail=last, vectors=_VECTORS,
                   end=steps, inline=True)


dot_mxfp4_vnni = _dot("dot_mxfp4_vnni", simd_vnni.mx_step, simd_vnni.mx_step_partial, pieces.MX_GROUP_BYTES)
dot_q8_0_vnni = _dot("dot_q8_0_vnni", simd_vnni.q8_step, simd_vnni.q8_step_partial, pieces.Q8_GROUP_BYTES)

# An MXFP4 row's last step reads past the row into the next one where there is one (matvec.reaching_row):
# the blocks past the row are the next row's, their bytes meet zero pieces and a zero S, and their scale
# bytes are that row's own E8M0 scales (finite unless the file holds 255), so they add exactly 0 and the
# step needs no masked load (a masked step after the loop cost Zen 4 about 20% of a row before the dot was
# inlined; docs/performance.md). Only a matrix's last row reads its partial step masked. Q8_0 rows of an
# even block count (every gpt-oss width) end on a whole step; an odd one is read masked.
expert_matvec_mxfp4_vnni = expert_matvec_kernel("expert_matvec_mxfp4_vnni", dot_mxfp4_vnni,
                                                prepare=pieces.split_mxfp4, row=reaching_row)
expert_matvec_q8_0_vnni = expert_matvec_kernel("expert_matvec_q8_0_vnni", dot_q8_0_vnni, prepare=pieces.split_q8_0)
