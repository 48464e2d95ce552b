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
    m = np.float32(0.0)
    bad = False
    for j in range(32):
        v = x[at + j]
        bad |= not np.isfinite(v)
        m = max(m, abs(v))
    if bad:
        return np.float32(np.nan)
    return _scale_of(m) if m > 0 else np.float32(0.0)


@njit(cache=True, inline="always")
def _pieces_of(y):
    """(p0, p1) as float32 of y = x / s in [-127, 127]: p0 + p1 / 256 is y rounded to 1/256, p1 in [-128, 127]."""
    q0 = np.floor(y + np.float32(0.5))  # y - q0 in [-0.5, 0.5)
    q1 = np.rint((y - q0) * np.float32(256.0))  # in [-128, 128]: 128 is one more p0 and p1 = -128
    up = q1 > np.float32(127.0)
    return (q0 + np.float32(1.0), np.float32(-128.0)) if up else (q0, q1)


@njit(cache=True, inline="always")
def _block_pieces(x, at, p0, p1):
    """Pieces of x[at:at+32] into p0[0:32], p1[0:32] (float32); returns the block scale s (0 or NaN: pieces 0)."""
    s = _block_scale(x, at)
    inv = np.float32(1.0) / s if s > 0 else np.float32(0.0)  # a power of two: x * inv is exact
    for j in range(32):
        q0, q1 = _pieces_of(x[at + j] * inv)
        p0[j] = q0
        p1[j] = q1
    return s


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
    ng = _group_count(cols, MX_GROUP_BLOCKS)
    out = np.zeros((k, ng * MX_GROUP_BYTES), np.uint8)
    p0 = np.empty(32, np.float32)
    p1 = np.empty(32, np.float32)
    for i in range(k):
        row = out[i]
        if _same_as_previous(x, i):
            row[:] = out[i - 1]
            continue
        pieces = row.view(np.int8)
        ints = row.view(np.int32)
        floats = row.view(np.float32)
        for b in range(nb):
            g, bb = b // MX_GROUP_BLOCKS, b % MX_GROUP_BLOCKS
            s = _block_pieces(x[i], b * 32, p0, p1)
            o = g * MX_GROUP_BYTES + 16 * bb
            for j in range(16):
                pieces[o + j] = np.int8(p0[j])
                pieces[o + 64 + j] = np.int8(p0[16 + j])
                pieces[o + 128 + j] = np.int8(p1[j])
                pieces[o + 192 + j] = np.int8(p1[16 + j])
            w = g * (MX_GROUP_BYTES // 4) + 4 * bb
            for lane in range(4):
                t = np.float32(0.0)  # exact: under 2^24
                for j in range(4 * lane, 4 * lane + 4):
                    t += np.float32(256.0) * (p0[j] + p0[16 + j]) + p1[j] + p1[16 + j]
                ints[w + 64 + lane] = MX_OFFSET * np.int32(t)
                floats[w + 80 + lane] = s / np.float32(512.0)  # 1/256 for p1, and half of E8M0's 2^(e-128)
    return out


@njit(cache=True)
def split_q8_0(x):
    """x [k, cols] float32 -> uint8 [k, groups * 256]: the Q8_0 layout above."""
    k, cols = x.shape
    nb = cols // 32
    ng = _group_count(cols, Q8_GROUP_BLOCKS)
    out = np.zeros((k, ng * Q8_GROUP_BYTES), np.uint8)
    p0 = np.empty(32, np.float32)
    p1 = np.empty(32, np.float32)
    for i in range(k):
        row = out[i]
        if _same_as_previous(x, i):
            row[:] = out[i - 1]
            continue
        pieces = row.view(np.int8)
        ints = row.view(np.int32)
        floats = row.view(np.float32)
        for b in range(nb):
            g, bb = b // Q8_GROUP_BLOCKS, b % Q8_GROUP_BLOCKS
            s = _block_pieces(x[i], b * 32, p0, p1)
            o = g * Q8_GROUP_BYTES + 32 * bb
            for j in range(32):
                pieces[o + j] = np.int8(p0[j])
                pieces[o + 64 + j] = np.int8(p1[j])
            w = g * (Q8_GROUP_BYTES // 4) + 8 * bb
            for lane in range(8):
                t = np.float32(0.0)  # exact: under 2^24
                for j in range(4 * lane, 4 * lane + 4):
                    t += np.float32(256.0) * p0[j] + p1[j]
                ints[w + 32 + lane] = Q8_OFFSET * np.int32(t)
                floats[w + 48 + lane] = s / np.float32(256.0)
    return out


@njit(cache=True)
def rounded_rows(x):
    """x [t, cols] float32 -> a new array of each row's rounded values (the float form of the pieces)."""
    t, cols = x.shape
    out = np.empty_like(x)
    for i in range(t):
        for b in range(cols // 32):
            at = b * 32
            s = _block_scale(x[i], at)
            if not s > 0:  # zeros stay zeros; a NaN or an infinity carries itself into the product
                out[i, at : at + 32] = x[i, at : at + 32]
                continue
            inv = np.float32(1.0) / s
            d = s / np.float32(256.0)
            for j in range(at, at + 32):  # 256 p0 + p1 (exact) times s / 256: exact in float32
                q0, q1 = _pieces_of(x[i, j] * inv)
                out[i, j] = (np.float32(256.0) * q0 + q1) * d
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
