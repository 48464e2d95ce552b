"""Quantization kernels: float32 rows -> Q8_0 / MXFP4 / BF16 bytes, and the
checkpoint-to-GGUF MXFP4 repack.

Every encoder is bit-identical to ``gguf.quants.quantize`` (which follows
ggml's reference C code) on finite inputs; ``tests/test_quantize.py`` checks
them byte for byte. They run row-parallel (``prange``) and never build the
large temporaries gguf-py's NumPy versions do (its MXFP4 path makes a
16-times-larger error array), so a 20b model quantizes in minutes.

Arithmetic follows gguf-py exactly, in float32:
  Q8_0   d = max|x| / 127; id = 0 if d == 0 else 1 / d; q = round-half-away(x * id);
         the scale is d as IEEE half (round to nearest even).
  MXFP4  e = floor(log2(max|x|)) - 2 + 127 as a byte (0 for an all-zero block);
         d = 2^(e-128) (ggml's "E8M0 half"); each value takes the first of the 16
         doubled E2M1 values k minimising |d*k - x|; element j goes to the low
         nibble of byte j, element j+16 to the high nibble.
  BF16   round to nearest even, NaN made quiet (ggml_compute_fp32_to_bf16).

Kernels take 2-D C-contiguous arrays (rows x columns / bytes) and write into a
caller-provided output; the public wrappers check shapes.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from .decode import bits_to_f32

__all__ = [
    "quantize_q8_0",
    "quantize_mxfp4",
    "f32_to_bf16",
    "repack_mxfp4",
    "f32_to_f16_bits",
]


@intrinsic
def f32_to_bits(typingctx, value):
    """Reinterpret a float32 as its 32 bits (returned as uint32)."""
    if not isinstance(value, types.Float) or value.bitwidth != 32:
        return None
    sig = types.uint32(value)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


# --------------------------------------------------------------------- scalars


@njit(cache=True, inline="always")
def f32_to_f16_bits(x):
    """float32 -> IEEE half bits, round to nearest even (NumPy's astype(float16))."""
    u = np.int64(f32_to_bits(np.float32(x)))
    sign = (u >> 16) & 0x8000
    a = u & 0x7FFFFFFF
    if a > 0x7F800000:  # NaN: keep the top payload bits, stay a NaN
        r = 0x7C00 + ((a & 0x7FFFFF) >> 13)
        if r == 0x7C00:
            r += 1
        return sign | r
    if a >= 0x477FF000:  # >= 65520 rounds to infinity (and infinity itself)
        return sign | 0x7C00
    if a >= 0x38800000:  # normal half: rebias the exponent, round 13 bits away
        a2 = a - 0x38000000
        h = a2 >> 13
        rem = a2 & 0x1FFF
        if rem > 0x1000 or (rem == 0x1000 and (h & 1) == 1):
            h += 1
        return sign | h
    if a <= 0x33000000:  # at most 2^-25: rounds to zero (2^-25 itself is a tie to even 0)
        return sign
    e = a >> 23  # 102..112: a half subnormal, units of 2^-24
    m = (a & 0x7FFFFF) | 0x800000
    shift = 126 - e
    h = m >> shift
    rem = m & ((np.int64(1) << shift) - 1)
    half = np.int64(1) << (shift - 1)
    if rem > half or (rem == half and (h & 1) == 1):
        h += 1
    return sign | h


@njit(cache=True, inline="always")
def _roundf(v):
    """gguf.quants.np_roundf on a float32 scalar: round half away from zero."""
    a = np.abs(v)
    fl = np.floor(a)
    b = fl + np.floor(np.float32(2.0) * (a - fl))
    if v > 0:
        return b
    if v < 0:
        return -b
    return v * np.float32(0.0)


@njit(cache=True, inline="always")
def _e8m0_half(e):
    """ggml_e8m0_to_fp32_half: 2^(e-128) as float32, exact down to e = 0."""
    if e < 2:
        return bits_to_f32(np.int64(0x00200000) << e)
    return bits_to_f32((np.int64(e) - 1) << 23)


# --------------------------------------------------------------------- kernels


@njit(cache=True, parallel=True)
def _q8_0_rows(x, out):
    rows, cols = x.shape
    nb = cols // 32
    inv127 = np.float32(127.0)
    for r in prange(rows):
        for b in range(nb):
            base = b * 32
            amax = np.float32(0.0)
            for j in range(32):
                v = np.abs(x[r, base + j])
                if v > amax or v != v:
                    amax = v
                    if v != v:
                        break
            d = amax / inv127
            if d == np.float32(0.0):
                idv = np.float32(0.0)
            else:
                idv = np.float32(1.0) / d
            hb = f32_to_f16_bits(d)
            o = b * 34
            out[r, o] = np.uint8(hb & 0xFF)
            out[r, o + 1] = np.uint8((hb >> 8) & 0xFF)
            for j in range(32):
                q = _roundf(x[r, base + j] * idv)
                out[r, o + 2 + j] = np.uint8(np.int64(q) & 0xFF)


@njit(cache=True, parallel=True)
def _mxfp4_rows(x, out, kvals):
    rows, cols = x.shape
    nb = cols // 32
    for r in prange(rows):
        idx = np.empty(32, dtype=np.int64)
        for b in range(nb):
            base = b * 32
            amax = np.float32(0.0)
            isnan = False
            for j in range(32):
                v = np.abs(x[r, base + j])
                if v != v:
                    isnan = True
                elif v > amax:
                    amax = v
            if (not isnan) and amax > np.float32(0.0):
                # float32 log2 like NumPy's, then floor, in float32
                ef = np.floor(np.log2(amax)) - np.float32(2.0) + np.float32(127.0)
                e = np.int64(ef) & 0xFF
            else:
                e = 0
            d = _e8m0_half(e)
            for j in range(32):
                v = x[r, base + j]
                best = np.abs(d * kvals[0] - v)
                bi = 0
                for k in range(1, 16):
                    err = np.abs(d * kvals[k] - v)
                    if err < best:
                        best = err
                        bi = k
                idx[j] = bi
            o = b * 17
            out[r, o] = np.uint8(e)
            for j in range(16):
                out[r, o + 1 + j] = np.uint8(idx[j] | (idx[j + 16] << 4))


@njit(cache=True, parallel=True)
def _bf16_rows(x, out):
    rows, cols = x.shape
    for r in prange(rows):
        for j in range(cols):
            u = np.int64(f32_to_bits(x[r, j]))
            if (u & 0x7FFFFFFF) > 0x7F800000:
                u = (u & 0xFFFF0000) | 0x00400000
            u = (u + (0x7FFF + ((u >> 16) & 1))) >> 16
            out[r, j] = np.uint16(u & 0xFFFF)


@njit(cache=True, parallel=True)
def _repack_mxfp4_rows(blocks, scales, row0, step, out):
    """out[i] = GGUF MXFP4 row from checkpoint row row0 + i*step.

    blocks: uint8 [R, nb, 16], checkpoint nibble order (byte j: element 2j low,
    2j+1 high); scales: uint8 [R, nb]; out: uint8 [n, nb*17].
    GGUF byte j holds element j (low) and element j+16 (high).
    """
    n = out.shape[0]
    nb = blocks.shape[1]
    for i in prange(n):
        src = row0 + i * step
        for b in range(nb):
            o = b * 17
            out[i, o] = scales[src, b]
            for j in range(16):
                a = np.int64(blocks[src, b, j // 2])  # holds elements j, j+1 (j even) / j-1, j (j odd)
                c = np.int64(blocks[src, b, 8 + j // 2])  # the same for elements j+16
                sh = (j & 1) * 4
                lo = (a >> sh) & 0x0F
                hi = (c >> sh) & 0x0F
                out[i, o + 1 + j] = np.uint8(lo | (hi << 4))


# --------------------------------------------------------------------- public

_KVALUES = np.array([0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12], dtype=np.float32)


def _rows2d(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"{what}: input must be float32, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{what}: input must have at least one axis")
    if x.shape[-1] % 32:
        raise ValueError(f"{what}: last axis {x.shape[-1]} is not a multiple of 32")
    return np.ascontiguousarray(x.reshape(-1, x.shape[-1]))


def quantize_q8_0(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 [..., n] -> Q8_0 bytes uint8 [..., n/32*34] (as gguf.quants.quantize)."""
    x2 = _rows2d(x, "Q8_0")
    shape = (*np.shape(x)[:-1], x2.shape[1] // 32 * 34)
    o = np.empty(shape, dtype=np.uint8) if out is None else out
    _q8_0_rows(x2, o.reshape(x2.shape[0], -1))
    return o


def quantize_mxfp4(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 [..., n] -> GGUF MXFP4 bytes uint8 [..., n/32*17] (as gguf.quants.quantize)."""
    x2 = _rows2d(x, "MXFP4")
    shape = (*np.shape(x)[:-1], x2.shape[1] // 32 * 17)
    o = np.empty(shape, dtype=np.uint8) if out is None else out
    _mxfp4_rows(x2, o.reshape(x2.shape[0], -1), _KVALUES)
    return o


def f32_to_bf16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 [..., n] -> bfloat16 bits uint16 [..., n] (round to nearest even, quiet NaN)."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise TypeError(f"BF16: input must be float32, got {x.dtype}")
    x2 = np.ascontiguousarray(x.reshape(-1, x.shape[-1] if x.ndim else 1))
    o = np.empty(x.shape, dtype=np.uint16) if out is None else out
    _bf16_rows(x2, o.reshape(x2.shape))
    return o


def repack_mxfp4(blocks: np.ndarray, scales: np.ndarray, row0: int = 0, step: int = 1,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Checkpoint MXFP4 (blocks uint8 [R, nb, 16], scales uint8 [R, nb]) -> GGUF MXFP4 rows.

    Takes rows row0, row0+step, ... (step 2 picks gate or up out of the
    interleaved gate_up rows) and returns uint8 [n, nb*17]. Bytes are moved,
    never dequantized: the scale byte is kept and the nibbles reordered.
    """
    if blocks.dtype != np.uint8 or scales.dtype != np.uint8:
        raise TypeError("MXFP4 blocks and scales must be uint8")
    if blocks.ndim != 3 or blocks.shape[2] != 16 or scales.shape != blocks.shape[:2]:
        raise ValueError(f"MXFP4 blocks {blocks.shape} / scales {scales.shape} do not fit together")
    if step < 1 or not 0 <= row0 < max(blocks.shape[0], 1):
        raise ValueError("bad row selection")
    n = (blocks.shape[0] - row0 + step - 1) // step
    o = np.empty((n, blocks.shape[1] * 17), dtype=np.uint8) if out is None else out
    if o.shape != (n, blocks.shape[1] * 17):
        raise ValueError(f"output shape {o.shape}, expected {(n, blocks.shape[1] * 17)}")
    _repack_mxfp4_rows(blocks, scales, row0, step, o)
    return o
