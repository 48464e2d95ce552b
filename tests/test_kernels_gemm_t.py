"""Tests for the token-lane prefill kernels (gptoss_kernels.gemm_t) behind ``matmul`` and ``matmul_t``.

Every SIMD path this CPU can run is compared with a float64 product of
``gguf.quants.dequantize``. Token counts cover each block the kernels use
(32-, 16- and 8-token groups and their combinations, and 1..7 padded to 8),
row counts that are not a multiple of the 16-row tile, and widths above the
2944-column tile, so the second column chunk is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf import quants as gq

import gptoss_kernels as gk
from gptoss_kernels import ggml_types as gt
from gptoss_kernels import linear, simd

REL_TOL = 1e-5
FAST = [p for p in simd.supported_isas(simd.target_features()) if p != "portable"]
TOKENS = [1, 2, 5, 8, 9, 16, 17, 24, 31, 32, 33, 48, 56, 70]


def weights(rng, qtype, rows, cols):
    """(storage, exact dequantized float64 values) of random weights of one ggml type."""
    f = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.05)
    if qtype == gt.BF16:
        raw = (f.view(np.uint32) >> 16).astype(np.uint16)
        return raw, (raw.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    q = {gt.MXFP4: QT.MXFP4, gt.Q8_0: QT.Q8_0}[qtype]
    raw = gq.quantize(f, q)
    return raw, gq.dequantize(raw, q).astype(np.float64)


def rel_err(got, ref):
    return float(np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("qtype", [gt.MXFP4, gt.Q8_0, gt.BF16])
@pytest.mark.parametrize("rows,cols", [(40, 96), (16, 3072)])
def test_matmul_matches_dequantized_product(path, qtype, rows, cols):
    assert gt.MXFP4 in linear.active_kernels().matmul_t and qtype in linear.active_kernels().matmul_t
    rng = np.random.default_rng(rows + cols + qtype)
    raw, ref_w = weights(rng, qtype, rows, cols)
    for t in TOKENS:
        x = rng.standard_normal((t, cols)).astype(np.float32)
        out = np.full((t, rows), np.nan, dtype=np.float32)
        gk.matmul(qtype, raw, x, out)
        assert rel_err(out, x.astype(np.float64) @ ref_w.T) < REL_TOL, (path, qtype, t)


@pytest.mark.parametrize("qtype", [gt.MXFP4, gt.Q8_0, gt.F32])
def test_matmul_t_accumulates_in_the_transposed_layout(qtype):
    """matmul_t adds W @ XT into the padded out_t on every path (F32 and portable: through matmul)."""
    rng = np.random.default_rng(7)
    rows, cols, n = 24, 64, 16
    if qtype == gt.F32:
        raw = rng.standard_normal((rows, cols)).astype(np.float32)
        ref_w = raw.astype(np.float64)
    else:
        raw, ref_w = weights(rng, qtype, rows, cols)
    xt = rng.standard_normal((cols, n)).astype(np.float32)
    start = rng.standard_normal((32, n)).astype(np.float32)
    for p in ["portable", *FAST]:
        old = gk.set_kernel_path(p)
        try:
            out_t = start.copy()
            linear.matmul_t(qtype, raw, xt, out_t)
        finally:
            gk.set_kernel_path(old)
        assert rel_err(out_t[:rows], start[:rows] + ref_w @ xt.astype(np.float64)) < REL_TOL, p


def test_matmul_t_rejects_bad_layouts():
    raw, _ = weights(np.random.default_rng(0), gt.Q8_0, 16, 64)
    with pytest.raises(ValueError, match="multiple of 8"):
        linear.matmul_t(gt.Q8_0, raw, np.zeros((64, 12), np.float32), np.zeros((16, 12), np.float32))
    with pytest.raises(ValueError, match="out_t"):
        linear.matmul_t(gt.Q8_0, raw, np.zeros((64, 16), np.float32), np.zeros((15, 16), np.float32))


def test_token_columns():
    assert [linear.token_columns(t) for t in (1, 8, 9, 16, 17)] == [8, 8, 16, 16, 24]


@pytest.mark.skipif(not FAST, reason="no SIMD path on this CPU")
def test_register_blocks_of_both_paths_sum_in_the_same_order():
    """The ``ssse3`` path's narrow blocks (4 rows x 16 tokens, column slices) and the AVX-512 blocks
    give the same bits: each output is the same sequential chain of FMAs over k.

    Both are plain LLVM vectors, so both run on any x86 CPU with a SIMD path (Q8_0's decoder is
    shared); widths above the 2944-column tile and the 256-column slice cover the partial ones.
    """
    from gptoss_kernels import gemm_t

    rng = np.random.default_rng(11)
    for rows, cols in [(40, 96), (16, 3072)]:
        raw, _ = weights(rng, gt.Q8_0, rows, cols)
        for n in (8, 16, 24, 32, 48, 56, 72):
            xt = rng.standard_normal((cols, n)).astype(np.float32)
            start = rng.standard_normal((linear._round16(rows), n)).astype(np.float32)
            outs = []
            for p in ("avx512", "ssse3"):
                out_t = start.copy()
                gemm_t.MATMUL_T_Q8_0[p](raw, xt, out_t)
                outs.append(out_t[:rows])
            assert np.array_equal(outs[0], outs[1]), (rows, cols, n)
