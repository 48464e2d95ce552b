"""Vector operations on ``f32x8`` values for attention: one lane per query head.

The query heads that share a KV head (8 in gpt-oss) read the same keys and
values, so attention.py keeps them in the 8 lanes of one vector: a score is
``acc + q[:, d] * k[d]`` with the key element broadcast, and a weighted value
``acc + p * v[d]``; nothing is summed across lanes. These are plain LLVM
vector IR (no target intrinsics), so they compile on any CPU; multiply-adds
carry the ``contract`` flag, so LLVM fuses them where the CPU has FMA.

``hexp`` is a vector exponential (Cephes' single-precision polynomial,
within 2 ulp of ``expf`` over the arguments softmax feeds it, ``x <= 0``):
Numba's ``np.exp`` inside a loop is a scalar libm call on CPUs without SVML.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .simd import _splat, f32x8

HEAD_LANES = 8

_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_VEC = ir.VectorType(_F32, HEAD_LANES)
_IVEC = ir.VectorType(_I32, HEAD_LANES)
_CONTRACT = ("contract",)


def _const(x: float) -> ir.Constant:
    return ir.Constant(_VEC, [float(x)] * HEAD_LANES)


def _is_vec(t) -> bool:
    return t == f32x8


@intrinsic
def hsplat(typingctx, x):
    """An ``f32x8`` with ``x`` in every lane."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, signature, args):
        return _splat(builder, context.cast(builder, args[0], signature.args[0], types.float32), HEAD_LANES)

    return f32x8(x), codegen


def _binary(name: str, op):
    def impl(typingctx, a, b):
        if not (_is_vec(a) and _is_vec(b)):
            return None
        return f32x8(a, b), lambda context, builder, signature, args: op(builder, args[0], args[1])

    impl.__name__ = name
    impl.__doc__ = f"Lane-wise {name[1:]} of two ``f32x8``."
    return intrinsic(impl)


def _max(builder, a, b):
    # a > b ? a : b  (a NaN in b is returned as is; scores are finite)
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)


hadd = _binary("hadd", lambda b, x, y: b.fadd(x, y))
hsub = _binary("hsub", lambda b, x, y: b.fsub(x, y))
hmul = _binary("hmul", lambda b, x, y: b.fmul(x, y))
hmax = _binary("hmax", _max)


@intrinsic
def hmuladd(typingctx, acc, v, w):
    """``acc + v * w`` lane-wise, ``w`` a float scalar broadcast to every lane (fused where the CPU can)."""
    if not (_is_vec(acc) and _is_vec(v) and isinstance(w, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        w32 = context.cast(builder, args[2], signature.args[2], types.float32)
        prod = builder.fmul(args[1], _splat(builder, w32, HEAD_LANES), flags=_CONTRACT)
        return builder.fadd(args[0], prod, flags=_CONTRACT)

    return f32x8(acc, v, w), codegen


def _fma(builder, a, b, c):
    return builder.fadd(builder.fmul(a, b, flags=_CONTRACT), c, flags=_CONTRACT)


@intrinsic
def hexp(typingctx, x):
    """Lane-wise ``exp(x)`` in float32; arguments below -87.3 give exp(-87.3) (~1e-38), above 88 are not supported."""
    if not _is_vec(x):
        return None

    def codegen(context, builder, signature, args):
        v = _max(builder, args[0], _const(-87.33654))
        # n = round(x / ln 2) by the 1.5 * 2^23 trick: the sum's low mantissa bits are n
        magic = _const(12582912.0)
        t = _fma(builder, v, _const(1.44269504088896341), magic)
        nf = builder.fsub(t, magic)
        n = builder.sub(builder.bitcast(t, _IVEC), builder.bitcast(magic, _IVEC))
        # r = x - n ln 2 in two steps (Cody-Waite), |r| <= ln2 / 2
        r = builder.fsub(v, builder.fmul(nf, _const(0.693359375)))
        r = builder.fsub(r, builder.fmul(nf, _const(-2.12194440e-4)))
        p = _const(1.9875691500e-4)
        for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
            p = _fma(builder, p, r, _const(c))
        p = _fma(builder, p, builder.fmul(r, r), builder.fadd(r, _const(1.0)))
        # times 2^n, built in the exponent bits (n >= -126 after the clamp)
        scale = builder.bitcast(
            builder.shl(builder.add(n, ir.Constant(_IVEC, [127] * HEAD_LANES)), ir.Constant(_IVEC, [23] * HEAD_LANES)),
            _VEC,
        )
        return builder.fmul(p, scale)

    return f32x8(x), codegen


__all__ = ["HEAD_LANES", "hsplat", "hadd", "hsub", "hmul", "hmax", "hmuladd", "hexp"]
