"""Decode-time matrix-vector kernels: fused dequantize-and-multiply, one per type.

Decode is bound by memory bandwidth (DESIGN.md section 4): each weight byte is
read once, decoded in registers and multiplied straight into a 64-lane float32
accumulator; no float copy of the matrix ever exists. All kernels have the
expert form ``out[i] = W[experts[i]] @ x[i]`` and run one parallel launch over
(expert, row-chunk) tasks; a plain matrix is the one-expert case of it, so each
type compiles once.

The inner loops are written so LLVM vectorizes them: contiguous byte loads,
arithmetic nibble decoding (no gathers), per-block scale from a table, and
``fastmath`` limited to reassociation/contraction (NaNs still propagate).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .decode import E8M0_HALF, bf16_to_f32, e2m1_doubled, f16_to_f32, f16_to_f32_fast

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
            q = np.float32(row[o + 1 + j])
            hi = np.floor(q * np.float32(0.0625))
            lo = q - np.float32(16.0) * hi
            acc[j] += (e2m1_doubled(lo) * d) * x[xo + j]
            acc[16 + j] += (e2m1_doubled(hi) * d) * x[xo + 16 + j]
    return _lanes_sum(acc)


@njit(cache=True, fastmath=FASTMATH)
def dot_q8_0(row, x, acc, scales):
    """Q8_0 row dot; ``scales`` is scratch for the row's block scales.

    Decoding all f16 scales first keeps the main loop free of the scalar,
    branchy half decode (measured 1.5x faster).
    """
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


@njit(cache=True, fastmath=FASTMATH)
def dot_f32(row, x, acc):
    n = x.shape[0]
    full = n - n % LANES
    for b in range(0, full, LANES):
        for j in range(LANES):
            acc[j] += row[b + j] * x[b + j]
    for j in range(full, n):
        acc[j - full] += row[j] * x[j]
    return _lanes_sum(acc)


@njit(cache=True, fastmath=FASTMATH)
def dot_f16(row, x, acc):
    n = x.shape[0]
    full = n - n % LANES
    for b in range(0, full, LANES):
        for j in range(LANES):
            acc[j] += f16_to_f32_fast(row[b + j]) * x[b + j]
    for j in range(full, n):
        acc[j - full] += f16_to_f32_fast(row[j]) * x[j]
    return _lanes_sum(acc)


@njit(cache=True, fastmath=FASTMATH)
def dot_bf16(row, x, acc):
    n = x.shape[0]
    full = n - n % LANES
    for b in range(0, full, LANES):
        for j in range(LANES):
            acc[j] += bf16_to_f32(row[b + j]) * x[b + j]
    for j in range(full, n):
        acc[j - full] += bf16_to_f32(row[j]) * x[j]
    return _lanes_sum(acc)


# --------------------------------------------------------- expert matvec kernels
# w3: [n_experts, rows, width], experts: int64[k], x: float32[k, cols],
# out: float32[k, rows]. Tasks are (expert slot, chunk of ROWS_PER_TASK rows).


@njit(parallel=True, cache=True)
def expert_matvec_mxfp4(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        acc = np.zeros(LANES, np.float32)
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_mxfp4(w3[e, r], x[i], acc)


@njit(parallel=True, cache=True)
def expert_matvec_q8_0(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        acc = np.zeros(LANES, np.float32)
        scales = np.empty(x.shape[1] // 32, np.float32)
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_q8_0(w3[e, r], x[i], acc, scales)


@njit(parallel=True, cache=True)
def expert_matvec_f32(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        acc = np.zeros(LANES, np.float32)
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_f32(w3[e, r], x[i], acc)


@njit(parallel=True, cache=True)
def expert_matvec_f16(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        acc = np.zeros(LANES, np.float32)
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_f16(w3[e, r], x[i], acc)


@njit(parallel=True, cache=True)
def expert_matvec_bf16(w3, experts, x, out):
    rows = w3.shape[1]
    chunks = (rows + ROWS_PER_TASK - 1) // ROWS_PER_TASK
    for task in prange(experts.shape[0] * chunks):
        i = task // chunks
        r0 = (task - i * chunks) * ROWS_PER_TASK
        e = experts[i]
        acc = np.zeros(LANES, np.float32)
        for r in range(r0, min(rows, r0 + ROWS_PER_TASK)):
            out[i, r] = dot_bf16(w3[e, r], x[i], acc)
