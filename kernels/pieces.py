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
  group products of ``simd_vnni`` (decode), and :func:`split16_mxfp4` /
  :func:`split16_q8_0`: the same pieces as one 16-bit integer each for those of
  ``simd_i16`` (AVX2 decode);
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
from .specialize import Hook, specialize

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
def _block_scale(bits, at):
    """The scale s of the float32 values whose bits are bits[at:at+32]; 0 for zeros, NaN for a NaN or an infinity."""
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
    bits = x.view(np.uint32)
    for b in range(x.shape[0] // 32):
        s = _block_scale(bits, b * 32)
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


_BLOCKS = Hook("activation blocks per group of the layout")
_BYTES = Hook("prepared bytes per group")
_RUN = Hook("values per run of a block's pieces in the layout (16: its two halves apart; 32: whole)")
_P1 = Hook("where p1 starts in a group (bytes), p0 starting at 0")
_OFFSET = Hook("what makes the weights unsigned (K removes it)")
_DIVISOR = Hook("S = s / this")


_lay = Hook("one row's pieces into its prepared bytes: (row bytes, q0, q1, t, scales)")


def _split(x):
    k, cols = x.shape
    nb = cols // 32
    out = np.zeros((k, _group_count(cols, _BLOCKS) * _BYTES), np.uint8)
    q0, q1 = np.empty(cols, np.int8), np.empty(cols, np.int8)
    t, scales = np.empty(cols, np.int32), np.empty(nb, np.float32)
    for i in range(k):
        if _same_as_previous(x, i):
            out[i] = out[i - 1]
            continue
        _row_pieces(x[i], scales, q0, q1, t)
        _lay(out[i], q0, q1, t, scales)
    return out


def _lay_groups(row, q0, q1, t, scales):
    """The VNNI layout: p0 and p1 in runs, then the offsets K and the scales S of each group."""
    lanes = _RUN // 4  # int32 lanes of a block: 4 values of each run
    pieces, ints, floats = row.view(np.int8), row.view(np.int32), row.view(np.float32)
    for b in range(scales.shape[0]):
        g, bb = b // _BLOCKS, b % _BLOCKS
        o, a = g * _BYTES + _RUN * bb, b * 32
        for h in range(32 // _RUN):  # run h of the block at byte 64 h of the piece's 64-byte vectors
            pieces[o + 64 * h : o + 64 * h + _RUN] = q0[a + _RUN * h : a + _RUN * (h + 1)]
            pieces[o + _P1 + 64 * h : o + _P1 + 64 * h + _RUN] = q1[a + _RUN * h : a + _RUN * (h + 1)]
        w = g * (_BYTES // 4) + lanes * bb  # K and S: the group's last two 64-byte vectors
        for lane in range(lanes):
            u = 0
            for h in range(32 // _RUN):
                j = a + _RUN * h + 4 * lane
                u += t[j] + t[j + 1] + t[j + 2] + t[j + 3]
            ints[w + _BYTES // 4 - 32 + lane] = _OFFSET * u
            floats[w + _BYTES // 4 - 16 + lane] = scales[b] / np.float32(_DIVISOR)


def _lay_values(row, q0, q1, t, scales):
    """The 16-bit layout: each block's 32 values t = 256 p0 + p1 as int16, then the group's S."""
    values, floats = row.view(np.int16), row.view(np.float32)
    for b in range(scales.shape[0]):
        g, bb = b // _BLOCKS, b % _BLOCKS
        o = g * (_BYTES // 2) + 32 * bb
        for j in range(32):
            values[o + j] = np.int16(t[b * 32 + j])
        floats[g * (_BYTES // 4) + 16 * _BLOCKS + bb] = scales[b] / np.float32(_DIVISOR)


def _splitter(name: str, lay: Callable, **layout) -> Callable:
    """x [k, cols] float32 -> uint8 [k, groups * bytes]: each row's pieces laid out by ``lay``."""
    bound = specialize(lay, f"{name}_row", {k: v for k, v in layout.items() if k in lay.__code__.co_names},
                       inline="always")
    return specialize(_split, name, {"_lay": bound, "_BLOCKS": layout["_BLOCKS"], "_BYTES": layout["_BYTES"]})


#: x [k, cols] float32 -> uint8 [k, groups * 384]: the MXFP4 layout above (S is s / 512: 1/256 for p1, and
#: the half of E8M0's 2^(e-128) that the products leave out).
split_mxfp4 = _splitter("split_mxfp4", _lay_groups, _BLOCKS=MX_GROUP_BLOCKS, _BYTES=MX_GROUP_BYTES, _RUN=16,
                        _P1=128, _OFFSET=MX_OFFSET, _DIVISOR=512.0)
#: x [k, cols] float32 -> uint8 [k, groups * 256]: the Q8_0 layout above.
split_q8_0 = _splitter("split_q8_0", _lay_groups, _BLOCKS=Q8_GROUP_BLOCKS, _BYTES=Q8_GROUP_BYTES, _RUN=32, _P1=64,
                       _OFFSET=Q8_OFFSET, _DIVISOR=256.0)
#: x [k, cols] float32 -> uint8 [k, groups * 136]: for the AVX2 products of simd_i16.py, each MXFP4 group of
#: 2 blocks as their 64 values t = 256 p0 + p1 (int16, element order), then S = s / 512 of each block.
split16_mxfp4 = _splitter("split16_mxfp4", _lay_values, _BLOCKS=2, _BYTES=136, _DIVISOR=512.0)
#: x [k, cols] float32 -> uint8 [k, blocks * 68]: the same for Q8_0, one block per group, S = s / 256.
split16_q8_0 = _splitter("split16_q8_0", _lay_values, _BLOCKS=1, _BYTES=68, _DIVISOR=256.0)


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
