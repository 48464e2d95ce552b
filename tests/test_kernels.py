"""Tests for gptoss_kernels against independent references.

* Dequantization must equal ``gguf.quants.dequantize`` bit for bit.
* Products, norms, rope, attention, router and activation are compared with
  straightforward NumPy float64 computations (never with another kernel).
  "Relative error" below is ``max|got - ref| / max|ref|`` over the whole output.
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf import quants as gq

from gptoss_kernels import (
    apply_rope,
    attention,
    dequantize,
    expert_matvec,
    matmul,
    matvec,
    rmsnorm,
    router_topk,
    swiglu,
)
from gptoss_kernels import ggml_types as gt

TYPES = {"F32": (gt.F32, QT.F32), "F16": (gt.F16, QT.F16), "BF16": (gt.BF16, QT.BF16),
         "Q8_0": (gt.Q8_0, QT.Q8_0), "MXFP4": (gt.MXFP4, QT.MXFP4)}
REL_TOL = 1e-5


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def realistic(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Weights whose magnitude varies by row/block over several decades, with outliers."""
    base = rng.standard_normal(shape).astype(np.float32)
    row_scale = 10.0 ** rng.uniform(-4, 1.5, size=shape[:-1] + (1,))
    out = (base * row_scale).astype(np.float32)
    flat = out.reshape(-1)
    flat[rng.integers(0, flat.size, size=max(1, flat.size // 200))] *= 40.0
    return out


def quantized(name: str, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw storage for our kernels, gguf's float32 dequantization of it)."""
    qt = TYPES[name][1]
    raw = gq.quantize(data, qt)
    ref = gq.dequantize(raw, qt)
    if name == "F16":
        raw = raw.view(np.uint16)
    return raw, ref


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only copy, like a view into a memory-mapped file."""
    return np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape)


# ------------------------------------------------------------------ dequantization


@pytest.mark.parametrize("name", list(TYPES))
def test_dequantize_matches_gguf_on_quantized_data(name):
    rng = np.random.default_rng(1)
    data = realistic(rng, (3, 21, 96))  # 3-D, like stacked experts
    raw, ref = quantized(name, data)
    got = dequantize(TYPES[name][0], raw, 96)
    assert same_bits(got, ref)
    assert got.flags.writeable and got.flags.c_contiguous


def test_dequantize_f16_every_finite_bit_pattern():
    bits = np.arange(65536, dtype=np.uint16)
    bits = bits[np.isfinite(bits.view(np.float16)) | np.isinf(bits.view(np.float16))]  # no NaNs
    bits = np.resize(bits, (bits.size // 64 + 1) * 64).reshape(-1, 64)
    ref = gq.dequantize(bits.view(np.float16), QT.F16)
    assert same_bits(dequantize(gt.F16, bits, 64), ref)


def test_dequantize_bf16_edge_values():
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 65536, size=(200, 64), dtype=np.uint16)
    special = np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x007F, 0x0080, 0x7F7F, 0xFF7F,
                        0x7F80, 0xFF80, 0x3F80, 0xBF80], dtype=np.uint16)
    bits[0, : special.size] = special
    exp = (bits >> 7) & 0xFF
    bits[(exp == 0xFF) & ((bits & 0x7F) != 0)] = 0x3F80  # drop NaNs
    ref = gq.dequantize(bits.view(np.uint8), QT.BF16)
    assert same_bits(dequantize(gt.BF16, bits, 64), ref)


def test_dequantize_q8_0_hand_made_blocks():
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, size=(64, 8, 34), dtype=np.uint8)
    scales = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, -65504.0, 6e-8, -6e-8, 6.1e-5, 3.5e-3],
                      dtype=np.float16)
    s = rng.choice(scales, size=(64, 8))
    s[0, :] = scales[:8]
    blocks[:, :, :2] = s.view(np.uint8).reshape(64, 8, 2)
    blocks[0, 0, 2:] = np.arange(-128, 128, 8).astype(np.int8).view(np.uint8)  # includes -128
    raw = blocks.reshape(64, 8 * 34)
    ref = gq.dequantize(raw, QT.Q8_0)
    got = dequantize(gt.Q8_0, raw, 256)
    assert same_bits(got, ref)
    assert np.signbit(got[0, 32:64]).any()  # negative zeros from a -0.0 scale survive


def test_dequantize_mxfp4_every_byte_and_exponent():
    # One block per exponent 0..255; the 16 data bytes cycle through all 256 values,
    # so every nibble value meets every exponent in both nibble positions.
    exps = np.arange(256, dtype=np.uint8)
    data = (np.arange(256 * 16, dtype=np.int64).reshape(256, 16) * 7 % 256).astype(np.uint8)
    blocks = np.concatenate([exps[:, None], data], axis=1)  # [256, 17]
    raw = blocks.reshape(64, 4 * 17)  # 64 rows of 4 blocks
    with np.errstate(over="ignore"):  # 12 * 2^127 overflows to inf, in gguf as here
        ref = gq.dequantize(raw, QT.MXFP4)
    got = dequantize(gt.MXFP4, raw, 128)
    assert same_bits(got, ref)
    assert not np.isnan(got).any()  # exponent 255 is 2^127 here, not NaN
    # nibble 8 is +0 in ggml's table, not -0
    one = np.zeros((1, 17), np.uint8)
    one[0, 0], one[0, 1:] = 127, 0x88
    assert not np.signbit(dequantize(gt.MXFP4, one, 32)).any()


def test_dequantize_rejects_bad_input():
    with pytest.raises(ValueError):
        dequantize(2, np.zeros((1, 18), np.uint8), 32)  # Q4_0 is not supported
    with pytest.raises(ValueError):
        dequantize(gt.Q8_0, np.zeros((1, 33), np.uint8), 32)
    with pytest.raises(ValueError):
        dequantize(gt.MXFP4, np.zeros((1, 17), np.uint8), 33)


# ------------------------------------------------------------------ weight products


def make_weights(name: str, rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(read-only storage, float64 dequantized reference) for a weight of `shape` floats."""
    raw, ref = quantized(name, realistic(rng, shape))
    return readonly(raw), ref.astype(np.float64)


def shapes_for(name: str) -> list[tuple[int, int]]:
    # rows not a multiple of the row chunk (8) or tile (16); cols with an odd block
    # count, one past a 512-column chunk, and for float types not a multiple of 64
    shapes = [(45, 160), (19, 608)]
    if gt.block_size(TYPES[name][0]) == 1:
        shapes.append((7, 100))
    return shapes


@pytest.mark.parametrize("name", list(TYPES))
def test_matvec(name):
    rng = np.random.default_rng(10)
    for rows, cols in shapes_for(name):
        w, wref = make_weights(name, rng, (rows, cols))
        x = rng.standard_normal(cols).astype(np.float32)
        out = np.full(rows, np.nan, np.float32)
        matvec(TYPES[name][0], w, x, out)
        assert rel_err(out, wref @ x.astype(np.float64)) < REL_TOL


def test_matvec_mxfp4_all_nibbles_hand_made():
    rng = np.random.default_rng(11)
    rows, cols = 37, 320
    raw = rng.integers(0, 256, size=(rows, cols // 32, 17), dtype=np.uint8)
    raw[:, :, 0] = rng.integers(100, 140, size=(rows, cols // 32))
    raw = raw.reshape(rows, -1)
    wref = gq.dequantize(raw, QT.MXFP4).astype(np.float64)
    x = rng.standard_normal(cols).astype(np.float32)
    out = np.empty(rows, np.float32)
    matvec(gt.MXFP4, raw, x, out)
    assert rel_err(out, wref @ x.astype(np.float64)) < REL_TOL


@pytest.mark.parametrize("name", list(TYPES))
def test_expert_matvec(name):
    rng = np.random.default_rng(20)
    rows, cols = 45, 160
    w3, wref = make_weights(name, rng, (5, rows, cols))
    experts = np.array([3, 0, 3, 4], dtype=np.int64)  # a repeated expert too
    x = rng.standard_normal((4, cols)).astype(np.float32)
    out = np.empty((4, rows), np.float32)
    expert_matvec(TYPES[name][0], w3, experts, x, out)
    ref = np.einsum("krc,kc->kr", wref[experts], x.astype(np.float64))
    assert rel_err(out, ref) < REL_TOL
    with pytest.raises(ValueError):
        expert_matvec(TYPES[name][0], w3, np.array([0, 1, 2, 5]), x, out)


@pytest.mark.parametrize("name", list(TYPES))
@pytest.mark.parametrize("T", [1, 37])
def test_matmul(name, T):
    rng = np.random.default_rng(30 + T)
    for rows, cols in shapes_for(name):
        w, wref = make_weights(name, rng, (rows, cols))
        x = rng.standard_normal((T, cols)).astype(np.float32)
        out = np.full((T, rows), np.nan, np.float32)
        matmul(TYPES[name][0], w, x, out)
        assert rel_err(out, x.astype(np.float64) @ wref.T) < REL_TOL


@pytest.mark.parametrize("name", ["Q8_0", "MXFP4"])
def test_matmul_on_expert_slice(name):
    rng = np.random.default_rng(40)
    w3, wref = make_weights(name, rng, (3, 21, 96))
    x = rng.standard_normal((6, 96)).astype(np.float32)
    out = np.empty((6, 21), np.float32)
    matmul(TYPES[name][0], w3[2], x, out)
    assert rel_err(out, x.astype(np.float64) @ wref[2].T) < REL_TOL


def test_products_reject_bad_shapes():
    w = np.zeros((4, 34), np.uint8)
    with pytest.raises(ValueError):
        matvec(gt.Q8_0, w, np.zeros(64, np.float32), np.zeros(4, np.float32))  # cols mismatch
    with pytest.raises(ValueError):
        matvec(gt.Q8_0, w, np.zeros(32, np.float32), np.zeros(5, np.float32))  # out shape
    with pytest.raises(ValueError):
        matmul(gt.Q8_0, w, np.zeros((2, 32), np.float32), np.zeros((2, 4), np.float64))
    with pytest.raises(ValueError):
        matvec(gt.Q8_0, np.zeros((4, 68), np.uint8)[:, :34], np.zeros(32, np.float32), np.zeros(4, np.float32))


# ------------------------------------------------------------------ rmsnorm, rope


@pytest.mark.parametrize("T", [1, 3, 9])
def test_rmsnorm(T):
    rng = np.random.default_rng(50 + T)
    d = 2880
    x = (rng.standard_normal((T, d)) * rng.uniform(0.01, 100, (T, 1))).astype(np.float32)
    w = rng.standard_normal(d).astype(np.float32)
    x64 = x.astype(np.float64)
    ref = x64 / np.sqrt(np.mean(x64 * x64, axis=1, keepdims=True) + 1e-5) * w
    out = np.empty_like(x)
    rmsnorm(x, w, 1e-5, out)
    assert np.max(np.abs(out - ref) / (np.abs(ref) + 1e-30)) < 1e-6  # per element
    rmsnorm(x, w, 1e-5, x)  # in place
    assert np.array_equal(x, out)


def test_rmsnorm_vector_and_eps():
    x = np.full(64, 1e-4, np.float32)
    w = np.ones(64, np.float32)
    out = np.empty_like(x)
    rmsnorm(x, w, 1e-5, out)
    assert np.allclose(out, 1e-4 / np.sqrt(1e-8 + 1e-5), rtol=1e-6)


def test_apply_rope():
    rng = np.random.default_rng(60)
    T, H, D = 5, 3, 64
    x = rng.standard_normal((T, H, D)).astype(np.float32)
    ang = rng.uniform(0, 100, (T, D // 2))
    cos, sin = (np.cos(ang) * 1.35).astype(np.float32), (np.sin(ang) * 1.35).astype(np.float32)
    x64 = x.astype(np.float64)
    a, b = x64[..., : D // 2], x64[..., D // 2 :]
    c, s = cos[:, None, :].astype(np.float64), sin[:, None, :].astype(np.float64)
    ref = np.concatenate([a * c - b * s, b * c + a * s], axis=-1)
    apply_rope(x, cos, sin)
    assert np.max(np.abs(x - ref)) < 1e-6 * np.max(np.abs(ref))


# ------------------------------------------------------------------ attention


def attention_ref(q, k_all, v_all, start, window, sinks, scale):
    """float64 reference over the full key/value history indexed by absolute position."""
    T, Hq, D = q.shape
    Hkv = k_all.shape[1]
    out = np.zeros((T, Hq, D))
    for t in range(T):
        p = start + t
        lo = max(0, p - window + 1) if window > 0 else 0
        for h in range(Hq):
            kv = h // (Hq // Hkv)
            k = k_all[lo : p + 1, kv].astype(np.float64)
            v = v_all[lo : p + 1, kv].astype(np.float64)
            s = k @ q[t, h].astype(np.float64) * scale
            m = max(s.max(), float(sinks[h]))
            e = np.exp(s - m)
            out[t, h] = e @ v / (e.sum() + np.exp(float(sinks[h]) - m))
    return out


@pytest.mark.parametrize(
    "T, start, window, S, Hq, Hkv, sink_scale",
    [
        (7, 0, 0, 7, 4, 4, 1.0),  # full, fresh, GQA 1
        (6, 11, 0, 40, 8, 2, 1.0),  # full, cached prefix (slot == position), GQA 4
        (13, 0, 4, 4, 4, 2, 1.0),  # window shorter than the block
        (5, 21, 8, 8, 6, 3, 1.0),  # ring cache: S == window, start > 0
        (12, 21, 8, 8, 4, 1, 1.0),  # ring, block longer than the window
        (4, 9, 0, 16, 4, 2, 12.0),  # large sinks soak up the mass
        (4, 9, 5, 5, 4, 2, -12.0),  # very small sinks
        (1, 300, 0, 400, 2, 1, 1.0),  # decode over a long cache
        (3, 40, 16, 16, 16, 2, 1.0),  # gpt-oss's GQA ratio 8, ring wrap
    ],
)
def test_attention(T, start, window, S, Hq, Hkv, sink_scale):
    rng = np.random.default_rng(T * 1000 + start)
    D = 64
    n = start + T
    k_all = rng.standard_normal((n, Hkv, D)).astype(np.float32)
    v_all = rng.standard_normal((n, Hkv, D)).astype(np.float32)
    q = (rng.standard_normal((T, Hq, D)) * 2).astype(np.float32)
    sinks = (rng.standard_normal(Hq) * sink_scale).astype(np.float32)
    scale = 0.125
    # the cache holds each earlier position j in slot j % S; other slots hold junk
    k_cache = rng.standard_normal((Hkv, S, D)).astype(np.float32) * 100  # head-major
    v_cache = rng.standard_normal((Hkv, S, D)).astype(np.float32) * 100
    for j in range(max(0, start - S), start):
        k_cache[:, j % S], v_cache[:, j % S] = k_all[j], v_all[j]
    out = np.empty_like(q)
    attention(q, k_all[start:], v_all[start:], k_cache, v_cache, start, window, sinks, scale, out)
    ref = attention_ref(q, k_all, v_all, start, window, sinks, scale)
    assert rel_err(out, ref) < REL_TOL


def test_attention_rejects_small_cache():
    q = np.zeros((1, 2, 8), np.float32)
    kv = np.zeros((1, 1, 8), np.float32)
    cache = np.zeros((1, 3, 8), np.float32)
    with pytest.raises(ValueError):
        attention(q, kv, kv, cache, cache, 10, 0, np.zeros(2, np.float32), 1.0, np.empty_like(q))


# ------------------------------------------------------------------ MoE helpers


def test_router_topk():
    rng = np.random.default_rng(70)
    logits = rng.standard_normal((9, 32)).astype(np.float32) * 3
    logits[0] = np.round(logits[0])  # many ties: the lower index must win
    logits[1, [5, 9, 20, 30]] = 7.0
    idx, w = router_topk(logits, 4)
    ref_idx = np.argsort(-logits.astype(np.float64), axis=1, kind="stable")[:, :4]
    assert idx.dtype == np.int64 and w.dtype == np.float32
    assert np.array_equal(idx, ref_idx)
    assert list(idx[1]) == [5, 9, 20, 30]
    top = np.take_along_axis(logits.astype(np.float64), ref_idx, axis=1)
    e = np.exp(top - top.max(axis=1, keepdims=True))
    assert np.max(np.abs(w - e / e.sum(axis=1, keepdims=True))) < 1e-7


@pytest.mark.parametrize("shape", [(4, 100), (300, 256), (50,)])
def test_swiglu(shape):
    rng = np.random.default_rng(80)
    gate = (rng.standard_normal(shape) * 6).astype(np.float32)
    up = (rng.standard_normal(shape) * 6).astype(np.float32)
    limit, alpha = 7.0, 1.702
    g = np.minimum(gate.astype(np.float64), limit)
    ref = g / (1 + np.exp(-alpha * g)) * (np.clip(up.astype(np.float64), -limit, limit) + 1)
    out = np.empty_like(gate)
    swiglu(gate, up, limit, alpha, out)
    assert np.max(np.abs(out - ref) / np.maximum(np.abs(ref), 1e-3)) < 1e-6
    assert (gate > limit).any() and (np.abs(up) > limit).any()  # the clamps were exercised


def test_exp64_within_two_ulp_of_libm():
    """exp64 (SwiGLU's vectorizable exponential) against NumPy's exp, and its clamps."""
    from numba import njit

    from gptoss_kernels.exp64 import exp64

    @njit
    def run(a, out):
        for j in range(a.shape[0]):
            out[j] = exp64(a[j])

    rng = np.random.default_rng(81)
    x = np.concatenate([np.linspace(-708.0, 709.0, 200_001), rng.uniform(-20, 20, 100_000), [0.0, -0.0, 1e-300]])
    got = np.empty_like(x)
    run(x, got)
    ref = np.exp(x)
    assert np.max(np.abs(got - ref) / np.spacing(ref)) <= 2.0
    edge = np.array([709.0, 800.0, np.inf, -708.0, -800.0, -np.inf, np.nan])
    out = np.empty_like(edge)
    run(edge, out)  # beyond the range: the value at its end, a normal float64
    assert np.all(out[1:3] == out[0]) and np.all(out[4:6] == out[3]) and np.isnan(out[6])
    assert np.isfinite(out[0]) and out[3] > 2.2e-308


# ------------------------------------------------------------------ head-lane vector exp


def test_head_lane_exp_matches_exp():
    """hexp (attention's softmax) stays within a few float32 ulp of exp over x <= 0."""
    from numba import njit

    from gptoss_kernels import head_lanes as hl
    from gptoss_kernels.simd import tload8, tstore8

    @njit
    def vexp(x, out):
        for i in range(0, x.shape[0], 8):
            tstore8(out, i, hl.hexp(tload8(x, i)))

    x = np.concatenate([-np.geomspace(1e-8, 87.0, 40000), np.zeros(8), -np.linspace(0, 20, 4000)]).astype(np.float32)
    x = x[: x.size // 8 * 8]
    out = np.empty_like(x)
    vexp(x, out)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - ref) / ref) < 4e-7
    assert np.all(out[x == 0] == 1.0)
    tiny = np.full(8, -200.0, np.float32)
    vexp(tiny, out[:8])
    assert np.all((out[:8] >= 0) & (out[:8] < 1e-37))
