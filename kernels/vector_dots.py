"""Row dot loops on register accumulators (:data:`simd.f32x32`), written once for every SIMD decoder.

A row is a run of 32-weight blocks. Each step multiplies two or four
consecutive blocks into as many accumulators, so consecutive blocks never wait
on each other's adds, and prefetches the row a fixed distance ahead (past the
row's end that is the next row, which is where the task goes next); the blocks
left over go into the first accumulator, then the accumulators are added
pairwise and summed across lanes. A weight type (mxfp4_fast.py, q8_fast.py)
brings the multiply of one block (``fma``), its prefetch geometry and, for
widths that are not a multiple of 32, a scalar tail. The accumulators are
:data:`simd.f32x32` unless a kernel brings its own vector operations (the
`fast` precision's integer steps of simd_vnni.py sum into ``<16 x float>``) and
the count of its positions (its steps: from the row, not from x).
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
_zero = Hook("an accumulator of zeros: () -> vector")
_add = Hook("lane-wise sum of two accumulators")
_sum = Hook("the lanes of an accumulator summed: vector -> float32")
_end = Hook("whole positions in the row: (row, x) -> int")


@njit(cache=True, inline="always")
def x_blocks(row, x):
    """Positions of a block type: x's 32-value blocks."""
    return x.shape[0] // 32


@njit(cache=True, inline="always")
def x_elements(row, x):
    """Positions of an element type (BF16): x's values."""
    return x.shape[0]


F32X32 = (simd.vzero, simd.vadd, simd.vsum)  # the accumulator operations of the float32 decoders


@njit(cache=True, inline="always")
def whole_blocks(row, x, end, s):
    """The tail of a type whose rows are whole blocks: nothing to add."""
    return s


def _blocks(row, x, scratch=None):
    end = _end(row, x)
    a0 = _zero()
    a1 = _zero()
    a2 = _zero()
    a3 = _zero()
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
        a0 = _add(a0, a1)
        a1 = _add(a2, a3)
    return _tail(row, x, p, _sum(_add(a0, a1)))


def row_dot(name: str, fma: Callable, *, accumulators: int, stride: int, ahead: int, lines: int, line: int = 64,
            block: int = 1, tail: Callable = whole_blocks, vectors: tuple = F32X32,
            end: Callable | None = None, inline: bool = False) -> Callable:
    """The row dot ``(row, x[, scratch]) -> float32`` of one block decoder (``scratch`` is unused).

    ``accumulators`` (2 or 4) is also the number of blocks per step; ``block``
    and ``stride`` say how a position in the row counts (see the hooks above).
    ``vectors`` are the accumulator's (zero, add, sum); ``end`` counts the row's
    whole positions (default: x's blocks, or x's values where ``block`` is 32).
    ``inline`` compiles the dot into its caller's row loop, so its constants are
    loaded once per task rather than once per row.
    """
    if accumulators not in (2, 4) or block not in (1, 32):
        raise ValueError(f"2 or 4 accumulators and 1 or 32 positions per block, not {accumulators}, {block}")
    zero, add, total = vectors
    hooks = {"_fma": fma, "_tail": tail, "_STEP": accumulators, "_BLOCK": block, "_STRIDE": stride,
             "_AHEAD": ahead, "_LINES": lines, "_LINE": line, "_zero": zero, "_add": add, "_sum": total,
             "_end": end or (x_blocks if block == 1 else x_elements)}
    return specialize(_blocks, name, hooks, **({"inline": "always"} if inline else {}))
