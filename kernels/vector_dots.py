"""Row dot loops on register accumulators (:data:`simd.f32x32`), written once for every SIMD decoder.

A row is a run of 32-weight blocks. Each step multiplies two or four
consecutive blocks into as many accumulators, so consecutive blocks never wait
on each other's adds, and prefetches the row a fixed distance ahead (past the
row's end that is the next row, which is where the task goes next); the blocks
left over go into the first accumulator, then the accumulators are added
pairwise and summed across lanes. A weight type (mxfp4_fast.py, q8_fast.py)
brings the multiply of one block (``fma``), its prefetch geometry and, for
widths that are not a multiple of 32, a scalar tail.
"""

from __future__ import annotations

from collections.abc import Callable

from numba import njit

from . import simd
from .specialize import Hook, specialize

_fma = Hook("acc + the block at position p of row times x: (acc, row, p, x) -> f32x32")
_tail = Hook("s plus the dot of the elements past the last whole block: (row, x, end position, s) -> float32")
_STEP = Hook("blocks per step, one accumulator each: 2 or 4")
_BLOCK = Hook("positions per block: 1 where a position is a block (MXFP4, Q8_0), 32 where it is an element (BF16)")
_STRIDE = Hook("row elements per position")
_AHEAD = Hook("prefetch distance in row elements")
_LINES = Hook("cache lines prefetched per step")
_LINE = Hook("row elements per cache line")


@njit(cache=True, inline="always")
def whole_blocks(row, x, end, s):
    """The tail of a type whose rows are whole blocks: nothing to add."""
    return s


def _blocks(row, x, scratch=None):
    end = x.shape[0] // (32 // _BLOCK)
    a0 = simd.vzero()
    a1 = simd.vzero()
    a2 = simd.vzero()
    a3 = simd.vzero()
    p = 0
    while p + _STEP * _BLOCK <= end:
        for line in range(_LINES):
            simd.prefetch(row, p * _STRIDE + _AHEAD + line * _LINE)
        a0 = _fma(a0, row, p, x)
        a1 = _fma(a1, row, p + _BLOCK, x)
        if _STEP == 4:
            a2 = _fma(a2, row, p + 2 * _BLOCK, x)
            a3 = _fma(a3, row, p + 3 * _BLOCK, x)
        p += _STEP * _BLOCK
    while p + _BLOCK <= end:
        a0 = _fma(a0, row, p, x)
        p += _BLOCK
    if _STEP == 4:
        a0 = simd.vadd(a0, a1)
        a1 = simd.vadd(a2, a3)
    return _tail(row, x, p, simd.vsum(simd.vadd(a0, a1)))


def row_dot(name: str, fma: Callable, *, accumulators: int, stride: int, ahead: int, lines: int, line: int = 64,
            block: int = 1, tail: Callable = whole_blocks) -> Callable:
    """The row dot ``(row, x[, scratch]) -> float32`` of one block decoder (``scratch`` is unused).

    ``accumulators`` (2 or 4) is also the number of blocks per step; ``block``
    and ``stride`` say how a position in the row counts (see the hooks above).
    """
    if accumulators not in (2, 4) or block not in (1, 32):
        raise ValueError(f"2 or 4 accumulators and 1 or 32 positions per block, not {accumulators}, {block}")
    hooks = {"_fma": fma, "_tail": tail, "_STEP": accumulators, "_BLOCK": block, "_STRIDE": stride,
             "_AHEAD": ahead, "_LINES": lines, "_LINE": line}
    return specialize(_blocks, name, hooks)
