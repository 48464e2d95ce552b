"""Integer group products of the `fast` precision (x86 with AVX-512 VNNI and VBMI).

The activations arrive as two int8 pieces per 32-value block (:mod:`pieces`), the
weights stay in the file's bytes; each 68-byte step of a row (4 MXFP4 blocks, or 2
Q8_0 blocks) becomes one ``<16 x float>`` contribution:

* MXFP4: the 64 nibble bytes of 4 blocks are gathered from the two 64-byte loads
  that cover the step (``vpermt2b``, dropping the scale bytes), each nibble becomes
  its doubled E2M1 value + 12 with one ``vpermb`` from a 64-entry table (it reads
  six index bits, so the table repeats every 16 and neither nibble needs a mask),
  and ``vpdpbusd`` multiplies those unsigned bytes with the signed pieces, four
  products per int32 lane: p0 then, after an 8-bit shift, p1 into the same lanes.
  Subtracting the prepared offset ``K`` leaves ``256 sum(v p0) + sum(v p1)`` exact
  in each lane (block b in lanes 4b .. 4b+3).
* Q8_0: the 64 int8 weights of 2 blocks, made unsigned by flipping their top bit,
  the same two ``vpdpbusd`` and offset.

The lanes are then converted to float and multiplied by their block's scale, the
weight scale (the f16 of Q8_0, or for MXFP4 the float whose bits are ``e << 23``,
``2^(e-127)``, the other half of E8M0's ``2^(e-128)`` being in ``S``) times the
prepared ``S``, in one fused multiply-add into a float32 accumulator. Every integer
step is exact; the rounding is the activations' (:mod:`pieces`) and the float32
sums. The E8M0 exponent 0 (a subnormal scale, 2^-128) counts as zero here, and 255
(2^127, which overflows float32 for any element but +-0.5) as infinite.

A row's last, partial step is read with a masked load (``vmovdqu8`` with a byte
mask), so nothing past the row is touched. Plain LLVM IR and the target's
``vpdpbusd`` / ``vpermb`` intrinsics: only the kernel set of a CPU with
``avx512vnni`` and ``avx512vbmi`` ever compiles this (kernel_sets.py).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from . import pieces
from .simd import E2M1_DOUBLED, _declare, _elem_ptr, _splat, f32x16

_I1 = ir.IntType(1)
_I8 = ir.IntType(8)
_I16 = ir.IntType(16)
_I32 = ir.IntType(32)
_F32 = ir.FloatType()
_B64 = ir.VectorType(_I8, 64)
_W32 = ir.VectorType(_I16, 32)
_D16 = ir.VectorType(_I32, 16)
_F16 = ir.VectorType(_F32, 16)

# MXFP4 step: output byte 16 b + j is nibble byte j of block b; blocks 0-2 from the load at
# the step's start (byte 17 b + 1 + j), block 3 from the load 4 bytes later (52 + j - 4).
_MX_GATHER = [17 * b + 1 + j if b < 3 else 64 + 48 + j for b in range(4) for j in range(16)]
# the scale byte of block b (17 b) into byte 0 of dword lanes 4 b .. 4 b + 3, zeros elsewhere
_MX_SCALES = [17 * (i // 16) if i % 4 == 0 else 64 for i in range(64)]
_MX_TABLE = [(E2M1_DOUBLED[i % 16] + pieces.MX_OFFSET) & 0xFF for i in range(64)]
# Q8_0 step: the 32 int8 weights of block 0 (bytes 2..33) and of block 1 (bytes 36..67)
_Q8_GATHER = [2 + j if j < 32 else 64 + 32 + (j - 32) for j in range(64)]
# the two f16 scales (half-words 0 and 17 of the step) into 8 lanes each
_Q8_SCALES = [0] * 8 + [17] * 8


def _const(vec_t, values):
    return ir.Constant(vec_t, list(values))


def _load(builder, ptr, vec_t, valid=None):
    """A ``vec_t`` from ``ptr``; with ``valid`` (an i64 byte count < 64) only that many bytes, the rest 0."""
    p = builder.bitcast(ptr, vec_t.as_pointer())
    if valid is None:
        return builder.load(p, align=1)
    n = builder.trunc(valid, _I8)
    mask = builder.icmp_unsigned("<", _const(_B64, range(64)), _splat(builder, n, 64))
    fn = _declare(builder, "llvm.masked.load.v64i8.p0", _B64, [p.type, _I32, ir.VectorType(_I1, 64), _B64])
    return builder.call(fn, [p, ir.Constant(_I32, 1), mask, ir.Constant(_B64, None)])


def _byte_ptr(context, builder, aryty, ary, index_type, index, plus=0):
    i64 = context.cast(builder, index, index_type, types.intp)
    if plus:
        i64 = builder.add(i64, ir.Constant(i64.type, plus))
    return _elem_ptr(context, builder, aryty, ary, i64, _I8)


def _step_bytes(context, builder, row_t, row_v, o_t, o_v, valid):
    """The two 64-byte loads that cover a 68-byte step at byte o: (bytes o .., bytes o+4 ..)."""
    a = _load(builder, _byte_ptr(context, builder, row_t, row_v, o_t, o_v), _B64, valid)
    if valid is not None:
        valid = builder.select(builder.icmp_unsigned(">", valid, ir.Constant(valid.type, 4)),
                               builder.sub(valid, ir.Constant(valid.type, 4)), ir.Constant(valid.type, 0))
    b = _load(builder, _byte_ptr(context, builder, row_t, row_v, o_t, o_v, 4), _B64, valid)
    return a, b


def _dpbusd(builder, acc, u8, s8):
    fn = _declare(builder, "llvm.x86.avx512.vpdpbusd.512", _D16, [_D16, _D16, _D16])
    return builder.call(fn, [acc, builder.bitcast(u8, _D16), builder.bitcast(s8, _D16)])


def _x_vectors(context, builder, xp_t, xp_v, xo_t, xo_v, n):
    """The first n 64-byte vectors of a prepared group at byte xo of xp."""
    return [_load(builder, _byte_ptr(context, builder, xp_t, xp_v, xo_t, xo_v, 64 * i), _B64) for i in range(n)]


def _exact_ints(builder, lo, hi, x, k):
    """256 (lo . p0_lo + hi . p0_hi) + (lo . p1_lo + hi . p1_hi) - K per int32 lane (hi None: one weight vector)."""
    zero = ir.Constant(_D16, None)
    if hi is None:
        p0, p1 = x
        a = _dpbusd(builder, zero, lo, p0)
        a = builder.shl(a, _const(_D16, [8] * 16))
        a = _dpbusd(builder, a, lo, p1)
    else:
        p0l, p0h, p1l, p1h = x
        a = _dpbusd(builder, _dpbusd(builder, zero, lo, p0l), hi, p0h)
        a = builder.shl(a, _const(_D16, [8] * 16))
        a = _dpbusd(builder, _dpbusd(builder, a, lo, p1l), hi, p1h)
    return builder.sub(a, builder.bitcast(k, _D16))


def _fma16(builder, acc, ints, scale):
    fn = _declare(builder, "llvm.fma.v16f32", _F16, [_F16, _F16, _F16])
    return builder.call(fn, [builder.sitofp(ints, _F16), scale, acc])


def _mx_step(context, builder, sig, args, valid):
    acc, row, o, xp, xo = args[:5]
    a, b = _step_bytes(context, builder, sig.args[1], row, sig.args[2], o, valid)
    q = builder.shuffle_vector(a, b, _const(ir.VectorType(_I32, 64), _MX_GATHER))
    perm = _declare(builder, "llvm.x86.avx512.permvar.qi.512", _B64, [_B64, _B64])
    table = _const(_B64, _MX_TABLE)
    lo = builder.call(perm, [table, q])
    hi = builder.call(perm, [table, builder.bitcast(builder.lshr(builder.bitcast(q, _W32), _const(_W32, [4] * 32)),
                                                    _B64)])
    xs = _x_vectors(context, builder, sig.args[3], xp, sig.args[4], xo, 6)
    ints = _exact_ints(builder, lo, hi, xs[:4], xs[4])
    # float bits e << 23 are 2^(e-127) for e >= 1 (0 for e = 0); the other half of 2^(e-128) is in S
    e = builder.bitcast(builder.shuffle_vector(a, ir.Constant(_B64, None), _const(ir.VectorType(_I32, 64), _MX_SCALES)),
                        _D16)
    d = builder.bitcast(builder.shl(e, _const(_D16, [23] * 16)), _F16)
    return _fma16(builder, acc, ints, builder.fmul(d, builder.bitcast(xs[5], _F16)))


def _q8_step(context, builder, sig, args, valid):
    acc, row, o, xp, xo = args[:5]
    a, b = _step_bytes(context, builder, sig.args[1], row, sig.args[2], o, valid)
    q = builder.shuffle_vector(a, b, _const(ir.VectorType(_I32, 64), _Q8_GATHER))
    u = builder.xor(q, _const(_B64, [0x80] * 64))
    xs = _x_vectors(context, builder, sig.args[3], xp, sig.args[4], xo, 4)
    ints = _exact_ints(builder, u, None, xs[:2], xs[2])
    halves = builder.shuffle_vector(builder.bitcast(a, _W32), ir.Constant(_W32, None),
                                    _const(ir.VectorType(_I32, 16), _Q8_SCALES))
    d = builder.fpext(builder.bitcast(halves, ir.VectorType(ir.HalfType(), 16)), _F16)
    return _fma16(builder, acc, ints, builder.fmul(d, builder.bitcast(xs[3], _F16)))


def _step_args_ok(acc, row, o, xp, xo):
    return (acc == f32x16 and isinstance(row, types.Array) and row.dtype == types.uint8 and row.ndim == 1
            and isinstance(o, types.Integer) and isinstance(xp, types.Array) and xp.dtype == types.uint8
            and xp.ndim == 1 and isinstance(xo, types.Integer))


def _make_step(name, step, partial):
    if partial:
        def impl(typingctx, acc, row, o, xp, xo, valid):
            if not (_step_args_ok(acc, row, o, xp, xo) and isinstance(valid, types.Integer)):
                return None

            def codegen(context, builder, signature, args):
                n = context.cast(builder, args[5], signature.args[5], types.int64)
                return step(context, builder, signature, args, n)

            return f32x16(acc, row, o, xp, xo, valid), codegen
    else:
        def impl(typingctx, acc, row, o, xp, xo):
            if not _step_args_ok(acc, row, o, xp, xo):
                return None
            return f32x16(acc, row, o, xp, xo), lambda context, builder, signature, args: step(
                context, builder, signature, args, None)

    impl.__name__ = name
    impl.__doc__ = (f"acc + the 68-byte step at byte o of row times the prepared group at byte xo of xp"
                    f"{' (only the first `valid` bytes of the step exist)' if partial else ''}.")
    return intrinsic(impl)


mx_step = _make_step("mx_step", _mx_step, False)
mx_step_partial = _make_step("mx_step_partial", _mx_step, True)
q8_step = _make_step("q8_step", _q8_step, False)
q8_step_partial = _make_step("q8_step_partial", _q8_step, True)


@intrinsic
def vzero16(typingctx):
    """A ``f32x16`` of zeros (simd.vadd and simd.vsum add and sum it)."""
    return f32x16(), lambda context, builder, signature, args: ir.Constant(_F16, None)

