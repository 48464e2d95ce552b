"""Explicit-SIMD building blocks for the MXFP4, Q8_0 and BF16 kernels (x86), and the choice of path.

Plain loops decode an MXFP4 nibble by arithmetic or by a gathered table lookup,
which leaves the kernels compute-bound at a fraction of memory bandwidth
(docs/design.md §5.4, §5.8). The lookup is really one register shuffle, which Numba
cannot express; the intrinsics below emit it through llvmlite:

* ``avx512``: the 16 packed bytes of a block are zero-extended to 16 int32
  lanes; ``vpermps`` (which reads only the low 4 bits of each lane) picks the
  low-nibble values from a 16-float table that was already multiplied by the
  block scale, and a 4-bit shift then ``vpermps`` again the high-nibble ones.
  No integer-to-float conversion and no masking are needed. The ``xperm``
  variant (AMD Zen) broadcasts the 16 bytes instead and picks each lane's byte
  with a variable shift, for an x whose blocks were permuted to match
  (:data:`XPERM_LANES`).
* ``ssse3``: ``pshufb`` of the masked nibbles against the 16 doubled E2M1
  values as int8, sign extension and conversion to float, then the scale
  (SSSE3 / AVX2 CPUs; LLVM widens the float work to whatever the CPU has).

Both compute every weight as ``(v * d)`` with ``v`` the doubled E2M1 value and
``d`` the halved E8M0 scale from :data:`decode.E8M0_HALF`, exactly as
``gguf.quants.dequantize`` does (all such products are exact or overflow the
same way), then ``acc + w * x`` with contraction allowed, like the plain path:
only the order of the float32 summation differs.

A row's dot product is carried in a value of the Numba type :data:`f32x32`,
an LLVM ``<32 x float>`` (two AVX-512 registers) that stays in registers:
lane ``j`` accumulates element ``j`` of every block (the low nibbles take lanes
0..15, the high nibbles 16..31).

Q8_0 and BF16 need no table: their blocks are widened with plain LLVM vector
IR (``sitofp <32 x i8>``, a 16-bit shift), see the section at the end.

The path is chosen once, at import, from the features of the CPU Numba
compiles for (:func:`target_features`, :func:`choose_isa`): 'avx512' needs
AVX512F, 'ssse3' SSSE3, anything else (other CPUs, non-x86) gets the plain
loops. ``GPTOSS_KERNELS=portable`` forces the plain loops and
``GPTOSS_KERNELS=ssse3`` the shuffle path on an AVX-512 CPU (for tests and
debugging). Each path has its own compiled kernels, so switching never reuses
another path's cached machine code.
"""

from __future__ import annotations

import os
import platform

from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, models, register_model

# ------------------------------------------------------------------ path choice

ISAS = ("avx512", "ssse3", "portable")
ENV_VAR = "GPTOSS_KERNELS"


def host_features() -> dict[str, bool]:
    """LLVM's view of the host CPU features (what Numba compiles for)."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return {}
    try:
        return {k: bool(v) for k, v in llvm_binding.get_host_cpu_features().items()}
    except Exception:  # pragma: no cover - exotic llvmlite builds
        return {}


def host_cpu_name() -> str:
    """LLVM's name for the host CPU ('znver4', 'sapphirerapids', ...; '' when unknown)."""
    try:
        return str(llvm_binding.get_host_cpu_name())
    except Exception:  # pragma: no cover - exotic llvmlite builds
        return ""


def target_features() -> dict[str, bool]:
    """Features of the CPU Numba compiles for: the host, unless NUMBA_CPU_NAME/FEATURES say otherwise.

    With ``NUMBA_CPU_FEATURES`` set ("+avx2,-avx512f,...") those are used; with only
    ``NUMBA_CPU_NAME`` set (e.g. 'generic', for portable caches) nothing is
    assumed, so the plain path is taken and LLVM never meets an instruction
    the target lacks.
    """
    from numba.core import config

    if config.CPU_FEATURES:
        if not host_features():
            return {}
        return {f[1:]: f[0] == "+" for f in str(config.CPU_FEATURES).split(",") if f[:1] in "+-" and len(f) > 1}
    if config.CPU_NAME and config.CPU_NAME != "host":
        return {}
    return host_features()


def supported_isas(features: dict[str, bool]) -> list[str]:
    """Paths that can run on a CPU with ``features``, fastest first ('portable' always)."""
    out = []
    if features.get("avx512f"):
        out.append("avx512")
    if features.get("ssse3"):
        out.append("ssse3")
    out.append("portable")
    return out


def choose_isa(features: dict[str, bool], request: str | None = None) -> str:
    """The MXFP4 path to use: the fastest supported one, or ``request`` when it is supported.

    ``request`` is the value of ``GPTOSS_KERNELS`` ('', 'auto', 'avx512', 'ssse3',
    'portable'); an unknown or unsupported request falls back to the best path
    that does not exceed it ('avx512' on an AVX2 CPU gives 'ssse3').
    """
    avail = supported_isas(features)
    req = (request or "auto").strip().lower()
    if req in ("", "auto", "native"):
        return avail[0]
    if req in ("portable", "plain", "generic", "none", "off"):
        return "portable"
    if req in ISAS:
        for isa in ISAS[ISAS.index(req):]:
            if isa in avail:
                return isa
    return avail[0]


KERNEL_ISA = choose_isa(target_features(), os.environ.get(ENV_VAR))  # one path for MXFP4, Q8_0 and BF16

# ------------------------------------------------------------------ vector type

LANES = 32


class F32x32(types.Type):
    """A ``<32 x float>`` register value (two zmm, four ymm or eight xmm)."""

    def __init__(self):
        super().__init__(name="f32x32")


f32x32 = F32x32()

_VEC = ir.VectorType(ir.FloatType(), LANES)


@register_model(F32x32)
class _F32x32Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VEC)


# Doubled E2M1 values {0, 1, 2, 3, 4, 6, 8, 12} and their negatives, by nibble.
# Nibble 8 is +0, as in ggml's integer table.
E2M1_DOUBLED = (0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12)

_F32 = ir.FloatType()
_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_FLAGS = ("contract",)


def _splat(builder, value, n):
    vec_t = ir.VectorType(value.type, n)
    v = builder.insert_element(ir.Constant(vec_t, None), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vec_t, None), ir.Constant(ir.VectorType(_I32, n), [0] * n))


def _concat(builder, a, b):
    n = a.type.count
    return builder.shuffle_vector(a, b, ir.Constant(ir.VectorType(_I32, 2 * n), list(range(2 * n))))


def _half(builder, v, upper):
    n = v.type.count // 2
    idx = list(range(n, 2 * n)) if upper else list(range(n))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, n), idx))


def _elem_ptr(context, builder, aryty, ary, index, vec_t):
    """Pointer to ``ary[index]`` as a pointer to ``vec_t`` (no bounds check)."""
    data = context.make_array(aryty)(context, builder, value=ary).data
    ptr = builder.gep(data, [index])
    return builder.bitcast(ptr, vec_t.as_pointer())


def _plus_w_times_x(context, builder, acc, w, x_type, x, xo_type, xo):
    """acc + w * x[xo:xo+32] as <32 x float> (multiply and add contracted to one FMA)."""
    xo64 = context.cast(builder, xo, xo_type, types.intp)
    xv = builder.load(_elem_ptr(context, builder, x_type, x, xo64, _VEC), align=4)
    return builder.fadd(acc, builder.fmul(w, xv, flags=_FLAGS), flags=_FLAGS)


def _store_w(context, builder, w, dst_type, dst, do_type, do):
    """dst[do:do+32] = w; the intrinsic's (void) result."""
    do64 = context.cast(builder, do, do_type, types.intp)
    builder.store(w, _elem_ptr(context, builder, dst_type, dst, do64, _VEC), align=4)
    return context.get_dummy_value()


def _declare(builder, name, ret, args):
    mod = builder.module
    try:
        return mod.get_global(name)
    except KeyError:
        return ir.Function(mod, ir.FunctionType(ret, args), name=name)


def _permute_pair(builder, d, lo_idx, hi_idx):
    """<32 x float>: ``vpermps`` of the E2M1 table scaled by d, at two <16 x i32> index vectors."""
    f16 = ir.VectorType(_F32, 16)
    i16 = ir.VectorType(_I32, 16)
    table = builder.fmul(ir.Constant(f16, [float(v) for v in E2M1_DOUBLED]), _splat(builder, d, 16))
    perm = _declare(builder, "llvm.x86.avx512.permvar.sf.512", f16, [f16, i16])
    return _concat(builder, builder.call(perm, [table, lo_idx]), builder.call(perm, [table, hi_idx]))


def _decode_avx512(builder, q, d):
    """<16 x i8> packed nibbles, scale d -> <32 x float> of v*d (vpermps from a scaled table)."""
    i16 = ir.VectorType(_I32, 16)
    idx = builder.zext(q, i16)
    return _permute_pair(builder, d, idx, builder.lshr(idx, ir.Constant(i16, [4] * 16)))


def _decode_ssse3(builder, q, d):
    """<16 x i8> packed nibbles, scale d -> <32 x float> of v*d (pshufb on int8 values)."""
    b16 = ir.VectorType(_I8, 16)
    shuf = _declare(builder, "llvm.x86.ssse3.pshuf.b.128", b16, [b16, b16])
    table = ir.Constant(b16, [v & 0xFF for v in E2M1_DOUBLED])
    mask = ir.Constant(b16, [15] * 16)
    lo = builder.call(shuf, [table, builder.and_(q, mask)])
    hi = builder.call(shuf, [table, builder.and_(builder.lshr(q, ir.Constant(b16, [4] * 16)), mask)])
    v = builder.sitofp(_concat(builder, lo, hi), _VEC)
    return builder.fmul(v, _splat(builder, d, LANES))


def _decode_avx512_xperm(builder, q, d):
    """As :func:`_decode_avx512` for an x in the lane order of :data:`XPERM_LANES`.

    The 16 bytes are broadcast to the four 128-bit lanes and lane ``j`` shifted
    right by ``8 * (j // 4)`` bits (``vpsrlvd``), so its low nibble is that of
    byte ``4 * (j % 4) + j // 4``: a broadcast load and a variable shift instead
    of the cross-lane ``vpmovzxbd`` (Zen 4, one expert matrix from memory: about 1.1x).
    """
    i16 = ir.VectorType(_I32, 16)
    wide = builder.shuffle_vector(q, q, ir.Constant(ir.VectorType(_I32, 64), [i % 16 for i in range(64)]))
    idx = builder.bitcast(wide, i16)
    lo = builder.lshr(idx, ir.Constant(i16, [8 * (j // 4) for j in range(16)]))
    hi = builder.lshr(idx, ir.Constant(i16, [8 * (j // 4) + 4 for j in range(16)]))
    return _permute_pair(builder, d, lo, hi)


# Element of a 32-weight block that lane p of the xperm decoder holds: x must be
# permuted the same way (x_perm[32 b + p] = x[32 b + XPERM_LANES[p]]).
XPERM_LANES = tuple(half + 4 * (j % 4) + j // 4 for half in (0, 16) for j in range(16))

_DECODERS = {"avx512": _decode_avx512, "ssse3": _decode_ssse3, "avx512_xperm": _decode_avx512_xperm}


def _check_block_args(row, o, x, xo):
    return (
        isinstance(row, types.Array) and row.dtype == types.uint8 and row.ndim == 1
        and isinstance(o, types.Integer)
        and isinstance(x, types.Array) and x.dtype == types.float32 and x.ndim == 1
        and isinstance(xo, types.Integer)
    )


def _make_block_fma(isa):
    decode = _DECODERS[isa]

    def block_fma(typingctx, acc, row, o, d, x, xo):
        """acc + decode(row block at byte o, scale d) * x[xo:xo+32]  (one MXFP4 block)."""
        if not (isinstance(acc, F32x32) and _check_block_args(row, o, x, xo) and isinstance(d, types.Float)):
            return None
        sig = f32x32(acc, row, o, d, x, xo)

        def codegen(context, builder, signature, args):
            acc_v, row_v, o_v, d_v, x_v, xo_v = args
            o64 = context.cast(builder, o_v, signature.args[2], types.intp)
            d32 = context.cast(builder, d_v, signature.args[3], types.float32)
            qp = _elem_ptr(context, builder, signature.args[1], row_v,
                           builder.add(o64, ir.Constant(o64.type, 1)), ir.VectorType(_I8, 16))
            q = builder.load(qp, align=1)
            w = decode(builder, q, d32)
            return _plus_w_times_x(context, builder, acc_v, w, signature.args[4], x_v, signature.args[5], xo_v)

        return sig, codegen

    block_fma.__name__ = f"mx_block_fma_{isa}"
    return intrinsic(block_fma)


def _make_block_store(isa):
    decode = _DECODERS[isa]

    def block_store(typingctx, row, o, d, dst, do):
        """dst[do:do+32] = decode(row block at byte o, scale d)."""
        if not (_check_block_args(row, o, dst, do) and isinstance(d, types.Float)):
            return None
        sig = types.none(row, o, d, dst, do)

        def codegen(context, builder, signature, args):
            row_v, o_v, d_v, dst_v, do_v = args
            o64 = context.cast(builder, o_v, signature.args[1], types.intp)
            d32 = context.cast(builder, d_v, signature.args[2], types.float32)
            qp = _elem_ptr(context, builder, signature.args[0], row_v,
                           builder.add(o64, ir.Constant(o64.type, 1)), ir.VectorType(_I8, 16))
            w = decode(builder, builder.load(qp, align=1), d32)
            return _store_w(context, builder, w, signature.args[3], dst_v, signature.args[4], do_v)

        return sig, codegen

    block_store.__name__ = f"mx_block_store_{isa}"
    return intrinsic(block_store)


def _make_block_decode(isa):
    decode = _DECODERS[isa]

    def block_decode(typingctx, row, o, d):
        """decode(row block at byte o, scale d) as a ``f32x32`` (reused for several tokens)."""
        if not (isinstance(row, types.Array) and row.dtype == types.uint8 and row.ndim == 1
                and isinstance(o, types.Integer) and isinstance(d, types.Float)):
            return None
        sig = f32x32(row, o, d)

        def codegen(context, builder, signature, args):
            row_v, o_v, d_v = args
            o64 = context.cast(builder, o_v, signature.args[1], types.intp)
            d32 = context.cast(builder, d_v, signature.args[2], types.float32)
            qp = _elem_ptr(context, builder, signature.args[0], row_v,
                           builder.add(o64, ir.Constant(o64.type, 1)), ir.VectorType(_I8, 16))
            return decode(builder, builder.load(qp, align=1), d32)

        return sig, codegen

    block_decode.__name__ = f"mx_block_decode_{isa}"
    return intrinsic(block_decode)


@intrinsic
def vfma(typingctx, acc, w, x, xo):
    """acc + w * x[xo:xo+32] lane-wise (multiply and add contracted to one FMA)."""
    if not (isinstance(acc, F32x32) and isinstance(w, F32x32) and isinstance(xo, types.Integer)
            and isinstance(x, types.Array) and x.dtype == types.float32 and x.ndim == 1):
        return None

    def codegen(context, builder, signature, args):
        acc_v, w_v, x_v, xo_v = args
        return _plus_w_times_x(context, builder, acc_v, w_v, signature.args[2], x_v, signature.args[3], xo_v)

    return f32x32(acc, w, x, xo), codegen


mx_block_fma_avx512 = _make_block_fma("avx512")
mx_block_fma_ssse3 = _make_block_fma("ssse3")
mx_block_fma_avx512_xperm = _make_block_fma("avx512_xperm")  # x in XPERM_LANES order
mx_block_store_avx512 = _make_block_store("avx512")
mx_block_store_ssse3 = _make_block_store("ssse3")
mx_block_decode_avx512 = _make_block_decode("avx512")


@intrinsic
def vzero(typingctx):
    """A ``f32x32`` of zeros."""
    return f32x32(), lambda context, builder, signature, args: ir.Constant(_VEC, None)


@intrinsic
def vadd(typingctx, a, b):
    """Lane-wise sum of two ``f32x32`` (or two token vectors of one width, below)."""
    if not (isinstance(a, (F32x32, TokenVec)) and a == b):
        return None
    return a(a, b), lambda context, builder, signature, args: builder.fadd(args[0], args[1])


@intrinsic
def vsum(typingctx, a):
    """Sum of the lanes of a ``f32x32`` (or of a token vector) as float32 (pairwise: halves added until one lane)."""
    if not isinstance(a, (F32x32, TokenVec)):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        while v.type.count > 1:
            v = builder.fadd(_half(builder, v, False), _half(builder, v, True))
        return builder.extract_element(v, ir.Constant(_I32, 0))

    return types.float32(a), codegen


@intrinsic
def prefetch(typingctx, ary, index):
    """Hint the CPU to bring the cache line holding ``ary[index]`` into L1 (never faults)."""
    if not (isinstance(ary, types.Array) and isinstance(index, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        ary_v, idx_v = args
        idx = context.cast(builder, idx_v, signature.args[1], types.intp)
        ptr = _elem_ptr(context, builder, signature.args[0], ary_v, idx, _I8)
        fn = _declare(builder, "llvm.prefetch.p0", ir.VoidType(), [ptr.type, _I32, _I32, _I32])
        builder.call(fn, [ptr, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return context.get_dummy_value()

    return types.none(ary, index), codegen



# ------------------------------------------------------------------ Q8_0 / BF16 blocks
# Plain LLVM vector IR, no target intrinsics: int8 -> float is ``sitofp <32 x i8>``
# (vpmovsxbd + vcvtdq2ps on x86), bf16 -> float a 16-bit shift. Each weight is
# formed exactly as the plain kernels form it: ``q * d`` for Q8_0 (an int8 times
# a half-precision scale is exact in float32), then ``acc + w * x`` with
# contraction allowed. Only the order of the float32 summation differs.


def _q8_weights(context, builder, row_t, row_v, o64, d32):
    """<32 x float> of q * d for the Q8_0 block whose scale is at byte o64 of row."""
    qp = _elem_ptr(context, builder, row_t, row_v, builder.add(o64, ir.Constant(o64.type, 2)),
                   ir.VectorType(_I8, LANES))
    q = builder.sitofp(builder.load(qp, align=1), _VEC)
    return builder.fmul(q, d32)


def _half_scale(context, builder, row_t, row_v, o64):
    """<32 x float> splat of the half-precision scale at byte o64 of row.

    Splatting the half before widening lets AVX512-FP16 CPUs use one
    ``vcvtph2psx`` with a broadcast memory operand (F16C CPUs: ``vpbroadcastw`` +
    ``vcvtph2ps``). Needs a CPU with a half-to-float instruction.
    """
    h = builder.load(_elem_ptr(context, builder, row_t, row_v, o64, ir.HalfType()), align=1)
    d16 = builder.fpext(_splat(builder, h, 16), ir.VectorType(_F32, 16))
    return _concat(builder, d16, d16)


def _check_q8_args(row, o, x, xo):
    return _check_block_args(row, o, x, xo)


@intrinsic
def q8_block_fma(typingctx, acc, row, o, d, x, xo):
    """acc + (q * d) * x[xo:xo+32] for the Q8_0 block at byte o of row (int8 q at o+2..o+33).

    ``d`` is the block scale already decoded to float (any CPU).
    """
    if not (isinstance(acc, F32x32) and _check_q8_args(row, o, x, xo) and isinstance(d, types.Float)):
        return None
    sig = f32x32(acc, row, o, d, x, xo)

    def codegen(context, builder, signature, args):
        acc_v, row_v, o_v, d_v, x_v, xo_v = args
        o64 = context.cast(builder, o_v, signature.args[2], types.intp)
        d32 = _splat(builder, context.cast(builder, d_v, signature.args[3], types.float32), LANES)
        w = _q8_weights(context, builder, signature.args[1], row_v, o64, d32)
        return _plus_w_times_x(context, builder, acc_v, w, signature.args[4], x_v, signature.args[5], xo_v)

    return sig, codegen


@intrinsic
def q8_block_fma_h(typingctx, acc, row, o, x, xo):
    """As :func:`q8_block_fma` with the scale read and widened from the block itself (F16C / AVX-512 CPUs)."""
    if not (isinstance(acc, F32x32) and _check_q8_args(row, o, x, xo)):
        return None
    sig = f32x32(acc, row, o, x, xo)

    def codegen(context, builder, signature, args):
        acc_v, row_v, o_v, x_v, xo_v = args
        o64 = context.cast(builder, o_v, signature.args[2], types.intp)
        d32 = _half_scale(context, builder, signature.args[1], row_v, o64)
        w = _q8_weights(context, builder, signature.args[1], row_v, o64, d32)
        return _plus_w_times_x(context, builder, acc_v, w, signature.args[3], x_v, signature.args[4], xo_v)

    return sig, codegen


@intrinsic
def q8_block_store(typingctx, row, o, d, dst, do):
    """dst[do:do+32] = q * d for the Q8_0 block at byte o of row (``d`` the decoded scale)."""
    if not (_check_q8_args(row, o, dst, do) and isinstance(d, types.Float)):
        return None
    sig = types.none(row, o, d, dst, do)

    def codegen(context, builder, signature, args):
        row_v, o_v, d_v, dst_v, do_v = args
        o64 = context.cast(builder, o_v, signature.args[1], types.intp)
        d32 = _splat(builder, context.cast(builder, d_v, signature.args[2], types.float32), LANES)
        w = _q8_weights(context, builder, signature.args[0], row_v, o64, d32)
        return _store_w(context, builder, w, signature.args[3], dst_v, signature.args[4], do_v)

    return sig, codegen


def _check_u16_args(row, o, x, xo):
    return (
        isinstance(row, types.Array) and row.dtype == types.uint16 and row.ndim == 1
        and isinstance(o, types.Integer)
        and isinstance(x, types.Array) and x.dtype == types.float32 and x.ndim == 1
        and isinstance(xo, types.Integer)
    )


def _bf16_weights(context, builder, row_t, row_v, o64):
    i16 = ir.VectorType(ir.IntType(16), LANES)
    i32 = ir.VectorType(_I32, LANES)
    b = builder.load(_elem_ptr(context, builder, row_t, row_v, o64, i16), align=2)
    return builder.bitcast(builder.shl(builder.zext(b, i32), ir.Constant(i32, [16] * LANES)), _VEC)


@intrinsic
def bf16_fma(typingctx, acc, row, o, x, xo):
    """acc + w * x[xo:xo+32] where w are the 32 bfloat16 values row[o:o+32]."""
    if not (isinstance(acc, F32x32) and _check_u16_args(row, o, x, xo)):
        return None
    sig = f32x32(acc, row, o, x, xo)

    def codegen(context, builder, signature, args):
        acc_v, row_v, o_v, x_v, xo_v = args
        o64 = context.cast(builder, o_v, signature.args[2], types.intp)
        w = _bf16_weights(context, builder, signature.args[1], row_v, o64)
        return _plus_w_times_x(context, builder, acc_v, w, signature.args[3], x_v, signature.args[4], xo_v)

    return sig, codegen


@intrinsic
def bf16_store(typingctx, row, o, dst, do):
    """dst[do:do+32] = the 32 bfloat16 values row[o:o+32] as float32."""
    if not _check_u16_args(row, o, dst, do):
        return None
    sig = types.none(row, o, dst, do)

    def codegen(context, builder, signature, args):
        row_v, o_v, dst_v, do_v = args
        o64 = context.cast(builder, o_v, signature.args[1], types.intp)
        w = _bf16_weights(context, builder, signature.args[0], row_v, o64)
        return _store_w(context, builder, w, signature.args[2], dst_v, signature.args[3], do_v)

    return sig, codegen


# ------------------------------------------------------------------ token-lane vectors
# The prefill kernels of gemm_t.py put 16 (or, for a group's last few tokens, 8)
# tokens in the lanes of one vector and broadcast each dequantized weight:
# ``acc + x * w`` is one FMA whose weight operand LLVM folds into a broadcast
# load. Plain LLVM vector IR (``<16 x float>``, ``<8 x float>`` and ``llvm.fma``):
# one zmm / ymm on AVX-512, two ymm / one on AVX2.

TOKEN_LANES = 16


class TokenVec(types.Type):
    """A ``<lanes x float>`` register value: one value per token of a group."""

    def __init__(self, lanes: int):
        self.lanes = lanes
        super().__init__(name=f"f32x{lanes}")


f32x16 = TokenVec(16)
f32x8 = TokenVec(8)


@register_model(TokenVec)
class _TokenVecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(_F32, fe_type.lanes))


def _is_f32_c_array(ary):
    return isinstance(ary, types.Array) and ary.dtype == types.float32 and ary.layout == "C"


def _make_token_ops(vec_type):
    lanes = vec_type.lanes
    llvm_vec = ir.VectorType(_F32, lanes)

    def load(typingctx, ary, index):
        """The floats at flat position ``index`` of a C-contiguous float32 array (no bounds check)."""
        if not (_is_f32_c_array(ary) and isinstance(index, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            idx = context.cast(builder, args[1], signature.args[1], types.intp)
            return builder.load(_elem_ptr(context, builder, signature.args[0], args[0], idx, llvm_vec), align=4)

        return vec_type(ary, index), codegen

    def store(typingctx, ary, index, v):
        """Store a token vector at flat position ``index`` of a C-contiguous float32 array."""
        if not (_is_f32_c_array(ary) and isinstance(index, types.Integer) and v == vec_type):
            return None

        def codegen(context, builder, signature, args):
            idx = context.cast(builder, args[1], signature.args[1], types.intp)
            builder.store(args[2], _elem_ptr(context, builder, signature.args[0], args[0], idx, llvm_vec), align=4)
            return context.get_dummy_value()

        return types.none(ary, index, v), codegen

    def fma(typingctx, acc, x, w):
        """``acc + x * w`` lane-wise, ``w`` a float32 scalar broadcast to every lane (one fused multiply-add)."""
        if not (acc == vec_type and x == vec_type and isinstance(w, types.Float)):
            return None

        def codegen(context, builder, signature, args):
            w32 = context.cast(builder, args[2], signature.args[2], types.float32)
            fn = _declare(builder, f"llvm.fma.v{lanes}f32", llvm_vec, [llvm_vec, llvm_vec, llvm_vec])
            return builder.call(fn, [args[1], _splat(builder, w32, lanes), args[0]])

        return vec_type(acc, x, w), codegen

    for f, name in ((load, "tload"), (store, "tstore"), (fma, "tfma")):
        f.__name__ = f"{name}{lanes if lanes != 16 else ''}"
    return intrinsic(load), intrinsic(store), intrinsic(fma)


tload, tstore, tfma = _make_token_ops(f32x16)
tload8, tstore8, tfma8 = _make_token_ops(f32x8)
