"""Scalar decoders for stored weight values, usable inside Numba kernels.

Numba's CPU float16 support is weak and it has no scalar bit-cast, so the
decoders work on raw integer bits and finish with a one-instruction LLVM
bitcast (``bits_to_f32``). Everything here is branch-light so LLVM can
vectorize the loops that call it. Each decoder is exact: ``dequant`` tests
them bit for bit against ``gguf.quants``.
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


def _resized(builder, value, width: int, bits: int):
    """An integer LLVM value of ``width`` bits truncated or zero-extended to ``bits``."""
    if width > bits:
        return builder.trunc(value, ir.IntType(bits))
    if width < bits:
        return builder.zext(value, ir.IntType(bits))
    return value


def _float32_from_bits(name: str, bits: int, finish, doc: str):
    """An intrinsic integer -> float32 that hands the low ``bits`` bits to ``finish(builder, value)``."""

    def impl(typingctx, value):
        if not isinstance(value, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            return finish(builder, _resized(builder, args[0], signature.args[0].bitwidth, bits))

        return types.float32(value), codegen

    impl.__name__ = name
    impl.__doc__ = doc
    return intrinsic(impl)


@intrinsic
def f32_to_bits(typingctx, value):
    """The bits of a float32 as an int64 (0 .. 2^32 - 1; no conversion)."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.zext(builder.bitcast(args[0], ir.IntType(32)), ir.IntType(64))

    return types.int64(value), codegen


bits_to_f32 = _float32_from_bits("bits_to_f32", 32, lambda b, v: b.bitcast(v, ir.FloatType()),
                                 "Reinterpret the low 32 bits of an integer as a float32 (no conversion).")


@njit(cache=True, inline="always")
def f16_to_f32(h):
    """IEEE half bits (0..65535) -> float32, exact, NaN payloads kept like NumPy."""
    h = np.int64(h)
    sign = (h & 0x8000) << 16
    em = h & 0x7FFF
    if em >= 0x7C00:  # inf / NaN: widen the payload
        return bits_to_f32(sign | 0x7F800000 | ((em & 0x3FF) << 13))
    if em >= 0x0400:  # normal: rebias the exponent by 127 - 15
        return bits_to_f32(sign | ((em << 13) + 0x38000000))
    f = np.float32(em) * np.float32(5.9604644775390625e-08)  # subnormal or zero: em * 2^-24
    return -f if sign else f


def _has_native_half() -> bool:
    """True when LLVM lowers half->float to one instruction (x86 F16C, any AArch64).

    Elsewhere it would emit a runtime-library call the JIT may not resolve, so
    the arithmetic decoder is used instead.
    """
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return True
    if machine in ("x86_64", "amd64"):
        try:
            return bool(llvm_binding.get_host_cpu_features().get("f16c", False))
        except Exception:  # pragma: no cover - exotic llvmlite builds
            return False
    return False


HALF_NATIVE = _has_native_half()


_half_fpext = _float32_from_bits(
    "_half_fpext", 16, lambda b, v: b.fpext(b.bitcast(v, ir.HalfType()), ir.FloatType()),
    "IEEE half bits -> float32 with LLVM's fpext (vcvtph2ps on x86 with F16C).")


@njit(cache=True, inline="always")
def f16_to_f32_fast(h):
    """Half bits -> float32 for the multiply kernels: hardware conversion when present.

    Equal to :func:`f16_to_f32` for every non-NaN input (hardware conversion
    quiets signaling NaNs, which does not matter to a product).
    """
    if HALF_NATIVE:
        return _half_fpext(h)
    return f16_to_f32(h)


@njit(cache=True, inline="always")
def f32_value(v):
    """An F32 weight is its own value (the element decoder of the float32 kernels)."""
    return v


@njit(cache=True, inline="always")
def bf16_to_f32(b):
    """bfloat16 bits -> float32: they are the top half of the float32."""
    return bits_to_f32((np.int64(b) & 0xFFFF) << 16)


def _e8m0_half_table() -> np.ndarray:
    """float32 of 2^(e-128) for e in 0..255, built from bits like ggml's E8M0-to-FP32-half.

    MXFP4 stores element values doubled ({0,1,2,3,4,6,8,12} instead of
    {0,.5,...,6}), so the block scale ggml applies is half of 2^(e-127). Exponents
    0 and 1 give subnormals; 255 gives 2^127 (not NaN). A table avoids any
    per-block ``2.0 ** e``.
    """
    e = np.arange(256, dtype=np.uint32)
    bits = np.where(e < 2, np.uint32(0x00200000) << e, (e - np.uint32(1)) << np.uint32(23))
    return bits.astype(np.uint32).view(np.float32)


E8M0_HALF = _e8m0_half_table()


@njit(cache=True, inline="always")
def e2m1_doubled(n):
    """MXFP4 nibble value (as float32 0..15) -> doubled E2M1 value as float32.

    Arithmetic instead of a 16-entry table: a table lookup vectorizes into slow
    gathers. With s the sign bit and m the 3-bit magnitude code, the doubled
    magnitudes {0,1,2,3,4,6,8,12} are exactly max(m, 2m-4, 4m-16). Every step is
    exact in float32. Nibble 8 gives -0.0 (callers that need +0 add 0.0).
    """
    s = np.floor(n * np.float32(0.125))
    m = n - np.float32(8.0) * s
    v = max(m, max(np.float32(2.0) * m - np.float32(4.0), np.float32(4.0) * m - np.float32(16.0)))
    return v * (np.float32(1.0) - np.float32(2.0) * s)


@njit(cache=True, inline="always")
def mxfp4_nibbles(byte):
    """A packed MXFP4 byte -> (low nibble, high nibble) as float32, by float arithmetic (it vectorizes)."""
    q = np.float32(byte)
    hi = np.floor(q * np.float32(0.0625))
    return q - np.float32(16.0) * hi, hi
