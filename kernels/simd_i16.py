"""Integer block products of the `fast` precision on AVX2 (16-bit activations, ``vpmaddwd``).

AVX2 has no ``vpdpbusd``, and its byte product ``vpmaddubsw`` saturates 16-bit pair
sums (an unsigned Q8_0 weight times a piece overflows it). So here the two 8-bit
pieces of an activation are one exact 16-bit integer ``t = 256 p0 + p1`` (:mod:`pieces`,
|t| <= 32639) and each weight is widened to 16 bits: ``vpmaddwd`` multiplies 16 pairs
and adds them in twos into 8 int32 lanes, exactly. Per 32-value block:

* MXFP4: the 16 nibble bytes of the block become two 16-byte vectors of doubled E2M1
  values (``vpshufb`` of the masked nibbles against the 16 signed values, two blocks per
  256-bit shuffle), widened to 16 bits: the low nibbles multiply the block's first 16
  values, the high nibbles its last 16 (each lane: 4 products, at most 12 * 32639 * 4).
* Q8_0: the 32 int8 weights widened to 16 bits (each lane: at most 128 * 32639 * 4,
  under 2^24, so the int32 lanes convert to float32 exactly).

The 8 int32 lanes are converted to float and multiplied, in one fused multiply-add into
a ``<8 x float>`` accumulator, by the block's weight scale (MXFP4: the float whose bits
are ``e << 23``, 2^(e-127), E8M0 exponent 0 counting as zero as in simd_vnni.py; Q8_0:
its f16) times the prepared ``S`` (s / 512 or s / 256). Every integer step is exact; the
rounding is the activations' and the float32 sums, as in the VNNI kernels (which group
the lanes otherwise, so the two paths agree to float32 rounding, not bit for bit).

A step reads only its own blocks' bytes (MXFP4: two 16-byte loads at the nibbles of two
blocks, or one for a row's odd last block; Q8_0: 2 + 32 bytes), so no row is read past
its end. Plain LLVM IR and the AVX2 intrinsics ``vpshufb`` / ``vpmaddwd``: only the
kernel set of a CPU with ``avx2`` compiles this (kernel_sets.py).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .simd import _F32, _I8, _I32, E2M1_DOUBLED, _declare, _elem_ptr, _splat, f32x8

_I16 = ir.IntType(16)
_B16 = ir.VectorType(_I8, 16)
_B32 = ir.VectorType(_I8, 32)
_W16 = ir.VectorType(_I16, 16)
_D8 = ir.VectorType(_I32, 8)
_F8 = ir.VectorType(_F32, 8)

MX_STEP_BLOCKS = 2  # MXFP4 blocks per step (34 weight bytes)
MX_GROUP_BYTES = 136  # prepared bytes per MXFP4 group: 2 x 32 int16 values, 2 float32 S
Q8_GROUP_BYTES = 68  # per Q8_0 block: 32 int16 values, one float32 S


def _load(context, builder, ary_t, ary, index_t, index, plus, vec_t):
    i64 = context.cast(builder, index, index_t, types.intp)
    if plus:
        i64 = builder.add(i64, ir.Constant(i64.type, plus))
    return builder.load(_elem_ptr(context, builder, ary_t, ary, i64, vec_t), align=1)


def _slice(builder, v, start, n):
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, n), list(range(start, start + n))))


def _pmaddwd(builder, a, b):
    fn = _declare(builder, "llvm.x86.avx2.pmadd.wd", _D8, [_W16, _W16])
    return builder.call(fn, [a, b])


def _block_ints(context, builder, lo, hi, xp_t, xp, xo_t, xo, at):
    """The 8 int32 lanes of one block: lo (weights of its first 16 values) and hi (its last 16),
    <16 x i8> each, times the 32 int16 values at byte `at` of the prepared group."""
    tl = _load(context, builder, xp_t, xp, xo_t, xo, at, _W16)
    th = _load(context, builder, xp_t, xp, xo_t, xo, at + 32, _W16)
    return builder.add(_pmaddwd(builder, builder.sext(lo, _W16), tl), _pmaddwd(builder, builder.sext(hi, _W16), th))


def _fma8(builder, acc, ints, scale):
    fn = _declare(builder, "llvm.fma.v8f32", _F8, [_F8, _F8, _F8])
    return builder.call(fn, [builder.sitofp(ints, _F8), _splat(builder, scale, 8), acc])


def _e8m0(context, builder, row_t, row, o_t, o, plus):
    """2^(e-127) as float32 from the E8M0 byte at o + plus (0 for e = 0, inf for 255)."""
    e = builder.zext(_load(context, builder, row_t, row, o_t, o, plus, _I8), _I32)
    return builder.bitcast(builder.shl(e, ir.Constant(_I32, 23)), _F32)


def _s_at(context, builder, xp_t, xp, xo_t, xo, at):
    return _load(context, builder, xp_t, xp, xo_t, xo, at, _F32)


def _mx_blocks(context, builder, sig, args, blocks):
    acc, row, o, xp, xo = args
    row_t, o_t, xp_t, xo_t = sig.args[1], sig.args[2], sig.args[3], sig.args[4]
    nibbles = [_load(context, builder, row_t, row, o_t, o, 17 * b + 1, _B16) for b in range(blocks)]
    n = 16 * blocks
    q = nibbles[0] if blocks == 1 else builder.shuffle_vector(
        nibbles[0], nibbles[1], ir.Constant(ir.VectorType(_I32, 32), list(range(32))))
    vec_t = ir.VectorType(_I8, n)
    mask = ir.Constant(vec_t, [15] * n)
    lo_i = builder.and_(q, mask)
    hi_i = builder.and_(builder.lshr(q, ir.Constant(vec_t, [4] * n)), mask)
    table = ir.Constant(vec_t, [v & 0xFF for v in E2M1_DOUBLED] * blocks)
    name = "llvm.x86.avx2.pshuf.b" if blocks == 2 else "llvm.x86.ssse3.pshuf.b.128"
    shuf = _declare(builder, name, vec_t, [vec_t, vec_t])
    lo, hi = builder.call(shuf, [table, lo_i]), builder.call(shuf, [table, hi_i])
    for b in range(blocks):
        lo_b = lo if blocks == 1 else _slice(builder, lo, 16 * b, 16)
        hi_b = hi if blocks == 1 else _slice(builder, hi, 16 * b, 16)
        ints = _block_ints(context, builder, lo_b, hi_b, xp_t, xp, xo_t, xo, 64 * b)
        d = _e8m0(context, builder, row_t, row, o_t, o, 17 * b)
        s = _s_at(context, builder, xp_t, xp, xo_t, xo, 64 * MX_STEP_BLOCKS + 4 * b)
        acc = _fma8(builder, acc, ints, builder.fmul(d, s))
    return acc


def _q8_block(context, builder, sig, args):
    acc, row, o, xp, xo = args
    row_t, o_t, xp_t, xo_t = sig.args[1], sig.args[2], sig.args[3], sig.args[4]
    q = _load(context, builder, row_t, row, o_t, o, 2, _B32)
    ints = _block_ints(context, builder, _slice(builder, q, 0, 16), _slice(builder, q, 16, 16), xp_t, xp, xo_t, xo, 0)
    half = _load(context, builder, row_t, row, o_t, o, 0, ir.HalfType())
    d = builder.fpext(half, _F32)
    return _fma8(builder, acc, ints, builder.fmul(d, _s_at(context, builder, xp_t, xp, xo_t, xo, 64)))


def _args_ok(acc, row, o, xp, xo):
    return (acc == f32x8 and isinstance(row, types.Array) and row.dtype == types.uint8 and row.ndim == 1
            and isinstance(o, types.Integer) and isinstance(xp, types.Array) and xp.dtype == types.uint8
            and xp.ndim == 1 and isinstance(xo, types.Integer))


def _make(name, codegen_of):
    def impl(typingctx, acc, row, o, xp, xo):
        if not _args_ok(acc, row, o, xp, xo):
            return None
        return f32x8(acc, row, o, xp, xo), lambda context, builder, signature, args: codegen_of(
            context, builder, signature, args)

    impl.__name__ = name
    impl.__doc__ = "acc + the weight bytes at byte o of row times the prepared group at byte xo of xp (f32x8)."
    return intrinsic(impl)


mx16_step = _make("mx16_step", lambda c, b, s, a: _mx_blocks(c, b, s, a, 2))  # two MXFP4 blocks
mx16_block = _make("mx16_block", lambda c, b, s, a: _mx_blocks(c, b, s, a, 1))  # one (a row's odd last block)
q16_block = _make("q16_block", _q8_block)  # one Q8_0 block


@intrinsic
def vzero8(typingctx):
    """A ``f32x8`` of zeros (simd.vadd and simd.vsum add and sum it)."""
    return f32x8(), lambda context, builder, signature, args: ir.Constant(_F8, None)
