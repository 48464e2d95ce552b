"""Tests for the explicit-vector Q8_0 and BF16 decode kernels (gptoss_kernels.q8_fast).

Each fast path this CPU can run is installed in the public dispatcher and
compared with a float64 product of ``gguf.quants.dequantize`` and with the
plain loops of matvec.py. Shapes cover widths that are not a multiple of the
unrolled step (Q8_0: 4 blocks; BF16: 128 elements) and, for BF16, widths that
are not a multiple of 32, so every tail is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf import quants as gq

import gptoss_kernels as gk
from gptoss_kernels import ggml_types as gt
from gptoss_kernels import q8_fast, simd
from gptoss_kernels.matvec import expert_matvec_bf16 as plain_bf16
from gptoss_kernels.matvec import expert_matvec_q8_0 as plain_q8_0

REL_TOL = 1e-5
FAST = [p for p in simd.supported_isas(simd.target_features()) if p != "portable"]


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def q8_weights(rng, shape, cols):
    """Q8_0 storage of random float weights, and their exact dequantized float64 values."""
    f = rng.standard_normal(tuple(shape) + (cols,)).astype(np.float32) * np.float32(0.05)
    raw = gq.quantize(f.reshape(-1, cols), QT.Q8_0).reshape(tuple(shape) + (-1,))
    ref = gq.dequantize(raw.reshape(-1, raw.shape[-1]), QT.Q8_0).astype(np.float64)
    return readonly(raw), ref.reshape(tuple(shape) + (cols,))


def bf16_weights(rng, shape, cols):
    f = rng.standard_normal(tuple(shape) + (cols,)).astype(np.float32) * np.float32(0.05)
    raw = (f.view(np.uint32) >> 16).astype(np.uint16)
    ref = (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return readonly(raw), ref


def test_dispatcher_uses_the_fast_kernels():
    if not FAST:
        pytest.skip("no SIMD path on this CPU")
    from gptoss_kernels import linear

    assert gk.kernel_path() in FAST
    assert linear.active_kernels().expert_matvec[gt.Q8_0] is q8_fast.EXPERT_MATVEC_Q8_0[gk.kernel_path()]
    assert linear.active_kernels().expert_matvec[gt.BF16] is q8_fast.EXPERT_MATVEC_BF16[gk.kernel_path()]
    old = gk.set_kernel_path("portable")
    try:
        assert linear.active_kernels().expert_matvec[gt.Q8_0] is plain_q8_0
        assert linear.active_kernels().expert_matvec[gt.BF16] is plain_bf16
    finally:
        gk.set_kernel_path(old)


@pytest.mark.parametrize("rows, cols", [(1, 32), (7, 96), (45, 160), (33, 608), (9, 2880)])
def test_q8_0_matvec(path, rows, cols):
    rng = np.random.default_rng(rows * 31 + cols)
    raw, w = q8_weights(rng, (rows,), cols)
    x = rng.standard_normal(cols).astype(np.float32)
    out = np.full(rows, np.nan, np.float32)
    gk.matvec(gt.Q8_0, raw, x, out)
    assert rel_err(out, w @ x.astype(np.float64)) < REL_TOL


@pytest.mark.parametrize("rows, cols", [(1, 32), (5, 48), (7, 96), (45, 200), (33, 608), (9, 2880)])
def test_bf16_matvec(path, rows, cols):
    rng = np.random.default_rng(rows * 17 + cols)
    raw, w = bf16_weights(rng, (rows,), cols)
    x = rng.standard_normal(cols).astype(np.float32)
    out = np.full(rows, np.nan, np.float32)
    gk.matvec(gt.BF16, raw, x, out)
    assert rel_err(out, w @ x.astype(np.float64)) < REL_TOL


@pytest.mark.parametrize("type_name", ["q8_0", "bf16"])
@pytest.mark.parametrize("k", [1, 4])
def test_expert_matvec_matches_reference_and_plain(path, type_name, k):
    rng = np.random.default_rng(k)
    n_exp, rows, cols = 5, 37, 416
    make, ggml_type, plain = {
        "q8_0": (q8_weights, gt.Q8_0, plain_q8_0),
        "bf16": (bf16_weights, gt.BF16, plain_bf16),
    }[type_name]
    raw, w = make(rng, (n_exp, rows), cols)
    experts = rng.integers(0, n_exp, size=k)
    if k == 4:
        experts[3] = experts[0]  # a repeated expert
    x = rng.standard_normal((k, cols)).astype(np.float32)
    out = np.full((k, rows), np.nan, np.float32)
    gk.expert_matvec(ggml_type, raw, experts, x, out)
    ref = np.einsum("krc,kc->kr", w[experts], x.astype(np.float64))
    assert rel_err(out, ref) < REL_TOL
    want = np.empty((k, rows), np.float32)
    plain(raw, readonly(experts.astype(np.int64)), readonly(x), want)
    assert rel_err(out, want.astype(np.float64)) < REL_TOL


def test_q8_0_special_scales(path):
    """Zero, subnormal and large half-precision scales decode as gguf does."""
    cols = 256
    raw = np.zeros((4, cols // 32 * 34), np.uint8)
    blocks = raw.reshape(4, -1, 34)
    blocks[..., 2:] = np.random.default_rng(0).integers(0, 256, size=blocks[..., 2:].shape, dtype=np.uint8)
    scales = np.array([0.0, 6.0e-8, 1.0e-5, 6.0e4], np.float16)
    blocks[..., :2] = np.repeat(scales[:, None], blocks.shape[1], axis=1)[..., None].view(np.uint8)
    raw = readonly(raw)
    w = gq.dequantize(raw, QT.Q8_0).astype(np.float64)
    x = np.linspace(-1, 1, cols, dtype=np.float32)
    out = np.empty(4, np.float32)
    gk.matvec(gt.Q8_0, raw, x, out)
    ref = w @ x.astype(np.float64)
    assert out[0] == 0.0
    np.testing.assert_allclose(out[1:], ref[1:], rtol=1e-5)
