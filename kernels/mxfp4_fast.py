"""MXFP4 kernels on the shuffle decoders of :mod:`simd` (x86 only).

Same contracts as the plain ``expert_matvec_mxfp4`` (matvec.py) and
``matmul_mxfp4`` (matmul.py); ``linear`` picks these or the plain ones by
:data:`simd.KERNEL_ISA`. There is one set per path ('avx512', 'ssse3'), each
compiled only when first called, so a CPU never compiles code it cannot run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from . import simd
from .decode import E8M0_HALF
from .dequant import block_row_decoder
from .matmul import matmul_kernel
from .matvec import expert_matvec_kernel
from .specialize import Hook, specialize
from .vector_dots import row_dot

# ------------------------------------------------------------------ row dots
# Four blocks per step into four register accumulators (the loop of vector_dots.py).
# Each step prefetches the row PREFETCH bytes ahead: with it one core streams
# weights at close to its decoding rate instead of stalling on memory (measured
# 5 -> 11 GB/s).
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
XPERM_PREFETCH = 2048  # bytes ahead of the block being decoded (two lines per 68-byte step)

_block_op = Hook("an MXFP4 block intrinsic of simd (fma or store), given the block's scale")


def _fma(acc, row, b, x):
    o = b * 17
    return _block_op(acc, row, o, E8M0_HALF[row[o]], x, b * 32)


def _store(row, b, dst, at):
    o = b * 17
    _block_op(row, o, E8M0_HALF[row[o]], dst, at)


def _on(template: Callable, name: str, op: Callable) -> Callable:
    """``template`` (block index -> byte offset and scale) around one block intrinsic."""
    return specialize(template, name, {"_block_op": op}, inline="always")


def _dot(name: str, op: Callable, ahead: int) -> Callable:
    return row_dot(name, _on(_fma, f"{name}_block", op), accumulators=4, stride=17, ahead=ahead, lines=2)


def _deq_row(name: str, op: Callable) -> Callable:
    return block_row_decoder(name, _on(_store, f"{name}_block", op))


dot_mxfp4_avx512 = _dot("dot_mxfp4_avx512", simd.mx_block_fma_avx512, PREFETCH)
dot_mxfp4_ssse3 = _dot("dot_mxfp4_ssse3", simd.mx_block_fma_ssse3, PREFETCH)
# x permuted once per call (xperm_rows) into the lane order of simd's xperm decoder
dot_mxfp4_xperm_avx512 = _dot("dot_mxfp4_xperm_avx512", simd.mx_block_fma_avx512_xperm, XPERM_PREFETCH)


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


_XPERM = np.array(simd.XPERM_LANES, dtype=np.int64)


@njit(cache=True)
def xperm_rows(x, xp):
    """xp[i] = x[i] with each 32-element block in the lane order of :data:`simd.XPERM_LANES`."""
    for i in range(x.shape[0]):
        for b in range(x.shape[1] // 32):
            o = b * 32
            for p in range(32):
                xp[i, o + p] = x[i, o + _XPERM[p]]


@njit(cache=True, inline="always")
def _xperm_copy(x):
    xp = np.empty_like(x)
    xperm_rows(x, xp)
    return xp


# ------------------------------------------------------------------ expert matvec
# w3: [n_experts, rows, width], experts: int64[k], x: float32[k, cols], out: float32[k, rows]

expert_matvec_mxfp4_avx512 = expert_matvec_kernel("expert_matvec_mxfp4_avx512", dot_mxfp4_avx512,
                                                  dot2=dot2_mxfp4_avx512)
expert_matvec_mxfp4_xperm_avx512 = expert_matvec_kernel("expert_matvec_mxfp4_xperm_avx512", dot_mxfp4_xperm_avx512,
                                                        prepare=_xperm_copy)
expert_matvec_mxfp4_ssse3 = expert_matvec_kernel("expert_matvec_mxfp4_ssse3", dot_mxfp4_ssse3)

# ------------------------------------------------------------------ tile dequant + matmul

deq_row_mxfp4_avx512 = _deq_row("deq_row_mxfp4_avx512", simd.mx_block_store_avx512)
deq_row_mxfp4_ssse3 = _deq_row("deq_row_mxfp4_ssse3", simd.mx_block_store_ssse3)
matmul_mxfp4_avx512 = matmul_kernel("matmul_mxfp4_avx512", deq_row_mxfp4_avx512)
matmul_mxfp4_ssse3 = matmul_kernel("matmul_mxfp4_ssse3", deq_row_mxfp4_ssse3)


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
