"""Activations as two 8-bit pieces per 32-value block: what the `fast` precision multiplies.

The `fast` precision (docs/design.md §2.8) rounds the activations that enter the
MXFP4 and Q8_0 products, once, to

    x ~= s * (p0 + p1 / 256),    p0 in [-127, 127], p1 in [-128, 127]

per block of 32 consecutive values, s the power of two that puts the block's largest
|x| / s in (63.5, 127]: p0 = floor(x / s + 1/2), p1 = round(256 (x / s - p0)). The error
is at most s / 512 (under 3.1e-5 of the block's largest value), a 16-bit integer grid,
where bfloat16 keeps 8 bits of each value and ggml's 8-bit blocks 7 bits of the
largest (on the parity models: mean |error| 4e-5..1.1e-4 of the logit std against
2.4e-3..8.8e-3 for bf16 inputs and 9e-3..1.8e-2 for 8-bit blocks,
docs/performance.md). Integer dot products (VNNI ``vpdpbusd``, 64 byte products per
instruction) multiply the two pieces with the weights' own integers exactly; only
the block scales are float.

Three forms of the same rounding, so that every kernel of the precision multiplies
the same numbers:

* :func:`split_mxfp4` / :func:`split_q8_0`: the pieces laid out for the integer
  group products of ``simd_vnni`` (decode);
* :func:`rounded_rows` / :func:`rounded_cols`: the rounded values as float32, for the
  float kernels (``X`` with tokens in rows, ``XT`` with tokens in columns), and
  :func:`rounded`, an exact kernel fed them: the precision's products wherever there
  is no integer kernel (prefill; decode on CPUs without AVX-512 VNNI).

The rounded values are exact in float32 (a 15-bit integer times a power of two), and
rounding them again gives them back: a kernel may round what another already rounded.
A block that holds a NaN or an infinity gets a NaN scale, so the products it enters
are NaN (float32 arithmetic would give NaN or an infinity).

Layouts, per activation row (``rows`` of 32-value blocks, zero past the last block):

* MXFP4, a group of 4 blocks (the 68 weight bytes of one step) in 384 bytes: p0 of
  the low halves (bytes 16 b + j = element 32 b + j of the group's block b), p0 of
  the high halves (element 32 b + 16 + j), p1 low, p1 high (64 bytes each), then 16
  int32 offsets ``K`` and 16 float32 scales ``S``. Lane ``4 b + l`` of a group's
  integer sum holds bytes ``4 l .. 4 l + 3`` of block b's two halves; ``K`` removes
  the +12 that makes the weights unsigned (``12 * (256 sum p0 + sum p1)`` over those
  bytes) and ``S`` is ``s_b / 512`` (1/256 for p1, and 1/2 of the E8M0 scale, which
  the products read as ``2^(e-127)``).
* Q8_0, a group of 2 blocks (68 weight bytes as well) in 256 bytes: p0, p1 (64
  bytes each, element order), ``K`` (the +128 that makes int8 weights unsigned:
  ``128 * (256 sum p0 + sum p1)`` over the 4 bytes of a lane), ``S`` (lanes 0-7
  block 0, 8-15 block 1).
"""

from __future__ import annotations

from collections.abc import Callable

import math

import numpy as np
from numba import njit

from .decode import bits_to_f32, f32_to_bits

MX_GROUP_BLOCKS = 4  # MXFP4 blocks per step of the group products (68 bytes)
MX_GROUP_BYTES = 384  # prepared activation bytes per MXFP4 group
Q8_GROUP_BLOCKS = 2  # Q8_0 blocks per step (68 bytes)
Q8_GROUP_BYTES = 256
MX_OFFSET = 12  # doubled E2M1 values + 12 are the unsigned weights (0 .. 24)
Q8_OFFSET = 128  # int8 weights + 128 are the unsigned weights (0 .. 255)


@njit(cache=True, inline="always")
def _scale_of(m):
    """The power-of-two scale of a block whose largest |x| is m (> 0, finite): m / s in (63.5, 127]."""
    bits = f32_to_bits(m)
    e = (bits >> 23) & 0xFF
    if e < 8:  # m below 2^-119 (or subnormal): the slow way
        f, k = math.frexp(m)  # m = f 2^k, f in [0.5, 1): m / 2^(k-7) = 128 f in [64, 128)
        return np.float32(math.ldexp(1.0, k - 7 if f <= 127.0 / 128.0 else k - 6))
    # m = 1.f 2^(e-127) and 64 * 1.f <= 127 while f <= 0x7E0000 / 2^23: s = 2^(e-133), else 2^(e-132)
    return bits_to_f32((e - 6 + ((bits & 0x7FFFFF) > 0x7E0000)) << 23)


@njit(cache=True, inline="always")
def _block_scale(x, at):
    """The scale s of x[at:at+32]; 0 for zeros, NaN for a block with a NaN or an infinity."""
    bits = x.view(np.uint32)
    m = np.uint32(0)
    for j in range(at, at + 32):  # |x| orders like its bits; 0x7F800000 and above: inf or NaN
        m = max(m, bits[j] & np.uint32(0x7FFFFFFF))
    if m >= np.uint32(0x7F800000):
        return np.float32(np.nan)
    return _scale_of(bits_to_f32(m)) if m > 0 else np.float32(0.0)


@njit(cache=True, inline="always")
def _pieces_of(y):
    """(p0, p1) as float32 of y = x / s in [-127, 127]: p0 + p1 / 256 is y rounded to 1/256, p1 in [-128, 127]."""
    q0 = np.floor(y + np.float32(0.5))  # y - q0 in [-0.5, 0.5)
    q1 = np.rint((y - q0) * np.float32(256.0))  # in [-128, 128]: 128 is one more p0 and p1 = -128
    up = np.float32(q1 > np.float32(127.0))  # no branch: the loops that call this vectorize
    return q0 + up, q1 - np.float32(256.0) * up


@njit(cache=True, inline="always")
def _row_pieces(x, scales, q0, q1, t):
    """The pieces of the activation row x: q0, q1 (int8) and t = 256 q0 + q1 (int32) per value, s per block.

    A block of zeros, or with a NaN or an infinity, has pieces 0 (and scale 0 or NaN). Written as
    loops LLVM vectorizes: one with a scalar per block, then one over the row.
    """
    f0 = np.empty(x.shape[0], np.float32)
    f1 = np.empty(x.shape[0], np.float32)
    for b in range(x.shape[0] // 32):
        s = _block_scale(x, b * 32)
        scales[b] = s
        inv = np.float32(1.0) / s if s > 0 else np.float32(0.0)  # a power of two: x * inv is exact
        for j in range(b * 32, b * 32 + 32):
            f0[j], f1[j] = _pieces_of(x[j] * inv)
    for j in range(x.shape[0]):
        a, c = np.int32(f0[j]), np.int32(f1[j])
        q0[j] = np.int8(a)
        q1[j] = np.int8(c)
        t[j] = 256 * a + c


@njit(cache=True, inline="always")
def _same_as_previous(x, i):
    """Row i of x equals row i - 1 (the decode step's experts all take the same activations)."""
    if i == 0:
        return False
    for j in range(x.shape[1]):
        if x[i, j] != x[i - 1, j]:
            return False
    return True


@njit(cache=True, inline="always")
def _group_count(cols, blocks_per_group):
    nb = cols // 32
    return (nb + blocks_per_group - 1) // blocks_per_group


@njit(cache=True)
def split_mxfp4(x):
    """x [k, cols] float32 -> uint8 [k, groups * 384]: the MXFP4 layout above."""
    k, cols = x.shape
    nb = cols // 32
    out = np.zeros((k, _group_count(cols, MX_GROUP_BLOCKS) * MX_GROUP_BYTES), np.uint8)
    q0, q1 = np.empty(cols, np.int8), np.empty(cols, np.int8)
    t, scales = np.empty(cols, np.int32), np.empty(nb, np.float32)
    for i in range(k):
        row = out[i]
        if _same_as_previous(x, i):
            row[:] = out[i - 1]
            continue
        _row_pieces(x[i], scales, q0, q1, t)
        pieces, ints, floats = row.view(np.int8), row.view(np.int32), row.view(np.float32)
        for b in range(nb):
            g, bb = b // MX_GROUP_BLOCKS, b % MX_GROUP_BLOCKS
            o, a = g * MX_GROUP_BYTES + 16 * bb, b * 32
            pieces[o : o + 16] = q0[a : a + 16]
            pieces[o + 64 : o + 80] = q0[a + 16 : a + 32]
            pieces[o + 128 : o + 144] = q1[a : a + 16]
            pieces[o + 192 : o + 208] = q1[a + 16 : a + 32]
            w = g * (MX_GROUP_BYTES // 4) + 4 * bb
            for lane in range(4):
                j = a + 4 * lane
                ints[w + 64 + lane] = MX_OFFSET * (t[j] + t[j + 1] + t[j + 2] + t[j + 3]
                                                   + t[j + 16] + t[j + 17] + t[j + 18] + t[j + 19])
                floats[w + 80 + lane] = scales[b] / np.float32(512.0)  # 1/256 for p1, half of E8M0's 2^(e-128)
    return out


@njit(cache=True)
def split_q8_0(x):
    """x [k, cols] float32 -> uint8 [k, groups * 256]: the Q8_0 layout above."""
    k, cols = x.shape
    nb = cols // 32
    out = np.zeros((k, _group_count(cols, Q8_GROUP_BLOCKS) * Q8_GROUP_BYTES), np.uint8)
    q0, q1 = np.empty(cols, np.int8), np.empty(cols, np.int8)
    t, scales = np.empty(cols, np.int32), np.empty(nb, np.float32)
    for i in range(k):
        row = out[i]
        if _same_as_previous(x, i):
            row[:] = out[i - 1]
            continue
        _row_pieces(x[i], scales, q0, q1, t)
        pieces, ints, floats = row.view(np.int8), row.view(np.int32), row.view(np.float32)
        for b in range(nb):
            g, bb = b // Q8_GROUP_BLOCKS, b % Q8_GROUP_BLOCKS
            o, a = g * Q8_GROUP_BYTES + 32 * bb, b * 32
            pieces[o : o + 32] = q0[a : a + 32]
            pieces[o + 64 : o + 96] = q1[a : a + 32]
            w = g * (Q8_GROUP_BYTES // 4) + 8 * bb
            for lane in range(8):
                j = a + 4 * lane
                ints[w + 32 + lane] = Q8_OFFSET * (t[j] + t[j + 1] + t[j + 2] + t[j + 3])
                floats[w + 48 + lane] = scales[b] / np.float32(256.0)
    return out


@njit(cache=True)
def rounded_rows(x):
    """x [t, cols] float32 -> a new array of each row's rounded values (the float form of the pieces)."""
    t, cols = x.shape
    out = np.empty_like(x)
    q0, q1 = np.empty(cols, np.int8), np.empty(cols, np.int8)
    grid, scales = np.empty(cols, np.int32), np.empty(cols // 32, np.float32)
    for i in range(t):
        _row_pieces(x[i], scales, q0, q1, grid)
        for b in range(cols // 32):
            s = scales[b]
            if np.isnan(s):  # a NaN or an infinity carries itself into the product
                out[i, b * 32 : b * 32 + 32] = x[i, b * 32 : b * 32 + 32]
                continue
            d = s / np.float32(256.0)
            for j in range(b * 32, b * 32 + 32):  # (256 p0 + p1) s / 256: exact in float32
                out[i, j] = np.float32(grid[j]) * d
    return out


@njit(cache=True)
def rounded_cols(xt):
    """xt [cols, n] float32 (tokens in columns) -> a new array, each column rounded as one activation row."""
    cols, n = xt.shape
    out = np.empty_like(xt)
    m = np.empty(n, np.float32)
    bad = np.empty(n, np.bool_)
    inv = np.empty(n, np.float32)
    d = np.empty(n, np.float32)
    for b in range(cols // 32):
        k0 = b * 32
        m[:] = 0.0
        bad[:] = False
        for k in range(k0, k0 + 32):
            for c in range(n):
                v = xt[k, c]
                bad[c] |= not np.isfinite(v)
                m[c] = max(m[c], abs(v))
        for c in range(n):
            s = _scale_of(m[c]) if m[c] > 0 and not bad[c] else np.float32(0.0)
            inv[c] = np.float32(1.0) / s if s > 0 else np.float32(0.0)
            d[c] = s / np.float32(256.0)
        for k in range(k0, k0 + 32):
            for c in range(n):
                if inv[c] > 0:
                    q0, q1 = _pieces_of(xt[k, c] * inv[c])
                    out[k, c] = (np.float32(256.0) * q0 + q1) * d[c]
                else:
                    out[k, c] = xt[k, c]
    return out


def rounded(kernel: Callable, tokens_in_columns: bool = False) -> Callable:
    """``kernel`` (any exact MXFP4 / Q8_0 product; its activations last but one argument) fed the rounded activations.

    ``tokens_in_columns``: the activations are ``XT [cols, n]`` (matmul_t), not rows.
    """
    rounding = rounded_cols if tokens_in_columns else rounded_rows

    def product(*args):
        *head, x, out = args
        kernel(*head, rounding(x), out)

    product.__name__ = product.__qualname__ = f"rounded_{getattr(kernel, '__name__', 'kernel')}"
    product.__doc__ = f"{getattr(kernel, '__name__', 'kernel')} of the fast precision's rounded activations"
    product.exact_kernel = kernel
    return product
