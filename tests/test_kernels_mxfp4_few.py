"""Tests for the few-token MXFP4 product (gptoss_kernels.mxfp4_few) behind ``matmul``.

The kernel is compared with a float64 product of ``gguf.quants.dequantize``
for every token count it handles (1..15: four-token passes and tails of 1, 2
and 3) and row counts that leave a task an odd last row; the dispatch test
checks that ``matmul`` uses it on the AVX-512 path and only below the
threshold.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf import quants as gq

import gptoss_kernels as gk
from gptoss_kernels import ggml_types as gt
from gptoss_kernels import linear, simd

REL_TOL = 1e-5
needs_avx512 = pytest.mark.skipif("avx512" not in simd.supported_isas(simd.target_features()),
                                  reason="the few-token kernel is AVX-512 only")


def mxfp4_weights(rng, rows, cols):
    f = rng.standard_normal((rows, cols)).astype(np.float32) * np.float32(0.05)
    raw = gq.quantize(f, QT.MXFP4)
    return raw, gq.dequantize(raw, QT.MXFP4).astype(np.float64)


@needs_avx512
@pytest.mark.parametrize("rows,cols", [(37, 96), (16, 2880), (9, 32)])
def test_matmul_few_matches_dequantized_product(rows, cols):
    from gptoss_kernels.mxfp4_few import matmul_few_mxfp4_avx512

    rng = np.random.default_rng(rows * cols)
    raw, ref_w = mxfp4_weights(rng, rows, cols)
    for t in range(1, linear.MATMUL_FEW_MAX_TOKENS):
        x = rng.standard_normal((t, cols)).astype(np.float32)
        out = np.full((t, rows), np.nan, dtype=np.float32)
        matmul_few_mxfp4_avx512(raw, x, out)
        ref = x.astype(np.float64) @ ref_w.T
        err = float(np.max(np.abs(out - ref)) / np.max(np.abs(ref)))
        assert err < REL_TOL, (rows, cols, t, err)


@needs_avx512
def test_matmul_uses_the_few_token_kernel_below_the_threshold(monkeypatch):
    old = gk.set_kernel_path("avx512")
    try:
        calls = []
        kernels = linear.active_kernels()
        real = kernels.matmul_few[gt.MXFP4]
        spy = {gt.MXFP4: lambda w, x, out: calls.append(x.shape[0]) or real(w, x, out)}
        monkeypatch.setattr(linear, "_active", dataclasses.replace(kernels, matmul_few=spy))
        raw, _ = mxfp4_weights(np.random.default_rng(1), 16, 64)
        for t in (1, 7, linear.MATMUL_FEW_MAX_TOKENS - 1, linear.MATMUL_FEW_MAX_TOKENS):
            gk.matmul(gt.MXFP4, raw, np.ones((t, 64), np.float32), np.empty((t, 16), np.float32))
        assert calls == [1, 7, linear.MATMUL_FEW_MAX_TOKENS - 1]
    finally:
        monkeypatch.undo()
        gk.set_kernel_path(old)
    gk.set_kernel_path("portable")
    try:
        assert gt.MXFP4 not in linear.active_kernels().matmul_few
    finally:
        gk.set_kernel_path(old)
