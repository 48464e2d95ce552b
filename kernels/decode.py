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


@intrinsic
def bits_to_f32(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32 (no conversion)."""
    if not isinstance(bits, types.Integer):
        return None
    sig = types.float32(bits)

    def codegen(context, builder, signature, args):
        value = args[0]
        width = signature.args[0].bitwidth
        if width > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif width < 32:
            value = builder.zext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return sig, codegen


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


@intrinsic
def _half_fpext(typingctx, bits):
    """IEEE half bits -> float32 with LLVM's fpext (vcvtph2ps on x86 with F16C)."""
    if not isinstance(bits, types.Integer):
        return None
    sig = types.float32(bits)

    def codegen(context, builder, signature, args):
        value = args[0]
        width = signature.args[0].bitwidth
        if width > 16:
            value = builder.trunc(value, ir.IntType(16))
        return builder.fpext(builder.bitcast(value, ir.HalfType()), ir.FloatType())

    return sig, codegen


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
