"""Decode-time matrix-vector kernels: fused dequantize-and-multiply, one per type.

Decode is bound by memory bandwidth (docs/design.md §5.8): each weight byte is
read once, decoded in registers and multiplied straight into a 64-lane float32
accumulator; no float copy of the matrix ever exists. All kernels have the
expert form ``out[i] = W[experts[i]] @ x[i]`` and run one parallel launch over
(expert, row-chunk) tasks; a plain matrix is the one-expert case of it, so each
type compiles once. That task loop is written once (:func:`expert_matvec_kernel`);
each type, here and in mxfp4_fast.py / q8_fast.py, brings its row dot.

The inner loops are written so LLVM vectorizes them: contiguous byte loads,
arithmetic nibble decoding (no gathers), per-block scale from a table, and
``fastmath`` limited to reassociation/contraction (NaNs still propagate).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit, prange

from .decode import E8M0_HALF, bf16_to_f32, e2m1_doubled, f16_to_f32, f16_to_f32_fast, f32_value, mxfp4_nibbles
from .specialize import Hook, specialize

FASTMATH = {"reassoc", "contract", "nsz"}
LANES = 64  # accumulator lanes per row: two 32-weight blocks per loop step
ROWS_PER_TASK = 8  # rows handled by one parallel task (amortizes its scratch allocation)


@njit(cache=True, fastmath=FASTMATH, inline="always")
def _lanes_sum(acc):
    """Pairwise sum of the 64 accumulator lanes, which are cleared for the next row."""
    for j in range(32):
        acc[j] += acc[j + 32]
    for j in range(16):
        acc[j] += acc[j + 16]
    for j in range(8):
        acc[j] += acc[j + 8]
    s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7])
    acc[:] = 0.0
    return s


# ------------------------------------------------------------- row dot products
# Each returns dot(decoded row, x) using `acc` (LANES float32, zero on entry,
# zero on return). The accumulator lives in memory; giving each loop step 64
# independent lanes hides the store-to-load latency of that round trip.


# The plain MXFP4 kernel below is the portable path and the tests' reference; on
# x86 with AVX-512 or SSSE3 ``linear`` uses the shuffle kernels of mxfp4_fast.py.
@njit(cache=True, fastmath=FASTMATH)
def dot_mxfp4(row, x, acc):
    for b in range(x.shape[0] // 32):
        o = b * 17
        xo = b * 32
        d = E8M0_HALF[row[o]]
        for j in range(16):
            lo, hi = mxfp4_nibbles(row[o + 1 + j])
            acc[j] += (e2m1_doubled(lo) * d) * x[xo + j]
            acc[16 + j] += (e2m1_doubled(hi) * d) * x[xo + 16 + j]
    return _lanes_sum(acc)


@njit(cache=True, fastmath=FASTMATH)
def dot_q8_0(row, x, scratch):
    """Q8_0 row dot; ``scratch`` is (acc, room for the row's block scales).

    Decoding all f16 scales first keeps the main loop free of the scalar,
    branchy half decode (measured 1.5x faster).
    """
    acc, scales = scratch
    nb = x.shape[0] // 32
    for b in range(nb):
        o = b * 34
        scales[b] = f16_to_f32(np.int64(row[o]) | (np.int64(row[o + 1]) << 8))
    b = 0
    while b + 2 <= nb:
        o = b * 34
        xo = b * 32
        d0 = scales[b]
        d1 = scales[b + 1]
        for j in range(32):
            acc[j] += (np.float32(np.int8(row[o + 2 + j])) * d0) * x[xo + j]
            acc[32 + j] += (np.float32(np.int8(row[o + 36 + j])) * d1) * x[xo + 32 + j]
        b += 2
    if b < nb:
        o = b * 34
        xo = b * 32
        d0 = scales[b]
        for j in range(32):
            acc[j] += (np.float32(np.int8(row[o + 2 + j])) * d0) * x[xo + j]
    return _lanes_sum(acc)


_elem = Hook("one stored value -> float32")


def _elements_dot(row, x, acc):
    n = x.shape[0]
    full = n - n % LANES
    for b in range(0, full, LANES):
        for j in range(LANES):
            acc[j] += _elem(row[b + j]) * x[b + j]
    for j in range(full, n):
        acc[j - full] += _elem(row[j]) * x[j]
    return _lanes_sum(acc)


dot_f32 = specialize(_elements_dot, "dot_f32", {"_elem": f32_value}, fastmath=FASTMATH)
dot_f16 = specialize(_elements_dot, "dot_f16", {"_elem": f16_to_f32_fast}, fastmath=FASTMATH)
dot_bf16 = specialize(_elements_dot, "dot_bf16", {"_elem": bf16_to_f32}, fastmath=FASTMATH)


# ------------------------------------------------------------- per-task scratch
# What a row dot needs besides the row and x, allocated once per task from the
# width: the plain dots' accumulator lanes; none for the register kernels.


@njit(cache=True, inline="always")
def lanes(cols):
    return np.zeros(LANES, np.float32)


@njit(cache=True, inline="always")
def lanes_and_scales(cols):
    return np.zeros(LANES, np.float32), np.empty(cols // 32, np.float32)


@njit(cache=True, inline="always")
def no_scratch(cols):
    return None


@njit(cache=True, inline="always")
def same_x(x):
    return x


@njit(cache=True, inline="always")
def own_row(w, r):
    """Row r of w, as the row dots read it."""
    return w[r]


@njit(cache=True, inline="always")
def reaching_row(w, r):
    """Row r of w and up to one row of what follows it in w (for dots whose last step reads past the row)."""
    flat = w.reshape(-1)
    width = w.shape[1]
    return flat[r * width : min(flat.shape[0], (r + 2) * width)]


# --------------------------------------------------------- expert matvec kernels
# w3: [n_experts, rows, width], experts: int64[k], x: float32[k, cols],
# out: float32[k, rows]. Tasks are (expert slot, chunk of ROWS_PER_TASK rows);
# prange hands each thread one contiguous, equal share of them. The task loop
# and the two ways of walking a task's rows are written once, here.

_dot = Hook("row dot: (row, x, scratch) -> float32")
_dot2 = Hook("two rows at once: (row a, row b, x) -> (float32, float32)")
_scratch = Hook("the row dot's per-task scratch, from the width")
_walk = Hook("one task's rows: (w, x, r0, r1, out)")
_prepare = Hook("x as the row dot reads it (x itself, or a permuted copy)")
_row = Hook("the row a row dot is given: (w, r) -> 1-D array")


def _row_by_row(w, x, r0, r1, out):
    s = _scratch(x.shape[0])
    for r in range(r0, r1):
        out[r] = _dot(_row(w, r), x, s)


def _row_pairs(w, x, r0, r1, out):
    r = r0
    while r + 2 <= r1:
        out[r], out[r + 1] = _dot2(w[r], w[r + 1], x)
        r += 2
    if r < r1:
        out[r] = _dot(w[r], x, None)


@njit(cache=True, inline="always")
def _task_rows(task, chunks, rows):
    """Task `task` of `chunks` per matrix: (its matrix's index, its first row, one past its last)."""
    i = task // chunks
    r0 = (task - i * chunks) * ROWS_PER_TASK
    return i, r0, min(rows, r0 + ROWS_PER_TASK)


def _expert_matvec(w3, experts, x, out):
    xs = _prepare(x)
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i, r0, r1 = _task_rows(task, chunks, rows)
        _walk(w3[experts[i]], xs[i], r0, r1, out[i])


# The grouped form, for decode steps of several sequences: w3, experts: int64[G] (group g's
# matrix), starts: int64[G + 1] (group g's vectors are rows starts[g] .. starts[g + 1] of x
# and out), x: float32[P, cols], out: float32[P, rows]. A task's rows are each read once for
# all vectors of its group (the weights stream once, not once per vector), and every
# (vector, row) dot is the very one expert_matvec computes: the same row dot on the same
# prepared vector. So a vector's result does not depend on the others (batch-invariant).


def _row_by_row_group(w, xs, p0, p1, r0, r1, out):
    s = _scratch(xs.shape[1])
    for r in range(r0, r1):
        row = _row(w, r)
        for p in range(p0, p1):
            out[p, r] = _dot(row, xs[p], s)


def _row_pairs_group(w, xs, p0, p1, r0, r1, out):
    r = r0
    while r + 2 <= r1:
        for p in range(p0, p1):
            out[p, r], out[p, r + 1] = _dot2(w[r], w[r + 1], xs[p])
        r += 2
    if r < r1:
        for p in range(p0, p1):
            out[p, r] = _dot(w[r], xs[p], None)


_walk_group = Hook("one task's rows for a group's vectors: (w, xs, p0, p1, r0, r1, out)")


def _grouped_matvec(w3, experts, starts, x, out):
    xs = _prepare(x)
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        g, r0, r1 = _task_rows(task, chunks, rows)
        _walk_group(w3[experts[g]], xs, starts[g], starts[g + 1], r0, r1, out)


_GROUPED: dict[Callable, Callable] = {}


def grouped_kernel(kernel: Callable) -> Callable:
    """The grouped form (above) of an ``expert_matvec`` kernel made by :func:`expert_matvec_kernel`."""
    return _GROUPED[kernel]


def expert_matvec_kernel(name: str, dot: Callable, scratch: Callable = no_scratch, prepare: Callable = same_x,
                         dot2: Callable | None = None, row: Callable = own_row) -> Callable:
    """The parallel ``out[i] = W[experts[i]] @ x[i]`` of a row dot (two rows at a time with ``dot2``).

    ``row`` gives the dot its row (:func:`reaching_row`: the row and the next one, where there is one).
    Its grouped form, with the same arithmetic, is :func:`grouped_kernel` of the result.
    """
    if dot2 is None:
        hooks = {"_dot": dot, "_scratch": scratch, "_row": row}
        walk = specialize(_row_by_row, f"{name}_rows", hooks, inline="always")
        walk_group = specialize(_row_by_row_group, f"{name}_group_rows", hooks, inline="always")
    else:
        hooks = {"_dot": dot, "_dot2": dot2}
        walk = specialize(_row_pairs, f"{name}_rows", hooks, inline="always")
        walk_group = specialize(_row_pairs_group, f"{name}_group_rows", hooks, inline="always")
    kernel = specialize(_expert_matvec, name, {"_walk": walk, "_prepare": prepare}, parallel=True)
    _GROUPED[kernel] = specialize(_grouped_matvec, f"{name}_grouped", {"_walk_group": walk_group, "_prepare": prepare},
                                  parallel=True)
    return kernel


expert_matvec_mxfp4 = expert_matvec_kernel("expert_matvec_mxfp4", dot_mxfp4, lanes)
expert_matvec_q8_0 = expert_matvec_kernel("expert_matvec_q8_0", dot_q8_0, lanes_and_scales)
expert_matvec_f32 = expert_matvec_kernel("expert_matvec_f32", dot_f32, lanes)
expert_matvec_f16 = expert_matvec_kernel("expert_matvec_f16", dot_f16, lanes)
expert_matvec_bf16 = expert_matvec_kernel("expert_matvec_bf16", dot_bf16, lanes)
