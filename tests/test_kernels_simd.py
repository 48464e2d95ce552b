"""Tests for the shuffle-decoding MXFP4 kernels (gptoss_kernels.simd / mxfp4_fast).

Every fast path this CPU can run is compared with the plain path and with a
float64 product of ``gguf.quants.dequantize``; the tile decoder must equal
gguf bit for bit. The dispatch tests fail if a CPU with AVX-512 or SSSE3 ends
up on the plain loops without being asked to (``GPTOSS_KERNELS``).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from types import MappingProxyType

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf import quants as gq
from numba import njit

import gptoss_kernels as gk
from gptoss_kernels import ggml_types as gt
from gptoss_kernels import kernel_sets, linear, mxfp4_fast, simd
from gptoss_kernels.matvec import expert_matvec_mxfp4 as plain_expert_matvec

REL_TOL = 1e-5
FEATURES = simd.target_features()
FAST = [p for p in simd.supported_isas(FEATURES) if p != "portable"]
needs_fast = pytest.mark.skipif(not FAST, reason="no SIMD MXFP4 path on this CPU")


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(ref)))


def readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    a.flags.writeable = False
    return a


def random_mxfp4(rng, shape, cols, exps=(100, 140)):
    """Random nibbles and block exponents in [exps[0], exps[1]); raw storage."""
    nb = cols // 32
    raw = rng.integers(0, 256, size=tuple(shape) + (nb, 17), dtype=np.uint8)
    raw[..., 0] = rng.integers(exps[0], exps[1], size=tuple(shape) + (nb,))
    return raw.reshape(tuple(shape) + (nb * 17,))


def deq64(raw: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return gq.dequantize(raw, QT.MXFP4).astype(np.float64)


# `path` (each SIMD path in turn, installed in the public dispatcher) is in conftest.py.


def _mx_paths() -> list[str]:
    out = []
    for p in FAST:
        out += [f"avx512-{r}" for r in mxfp4_fast.EXPERT_MATVEC_AVX512] if p == "avx512" else [p]
    return out or ["none"]


@pytest.fixture(params=_mx_paths())
def mx_path(request, monkeypatch):
    """Each SIMD path, and on AVX-512 each row order of the MXFP4 expert matvec, whatever this CPU picks."""
    if request.param == "none":
        pytest.skip("no SIMD path on this CPU")
    p, _, rows = request.param.partition("-")
    old = gk.set_kernel_path(p)
    if rows:
        kernels = linear.active_kernels()
        em = MappingProxyType({**kernels.expert_matvec, gt.MXFP4: mxfp4_fast.EXPERT_MATVEC_AVX512[rows]})
        monkeypatch.setattr(linear, "_active", dataclasses.replace(kernels, expert_matvec=em))
    yield request.param
    monkeypatch.undo()
    gk.set_kernel_path(old)


# ------------------------------------------------------------------ dispatch


def test_choose_isa_from_features():
    avx512 = {"avx512f": True, "avx2": True, "ssse3": True}
    avx2 = {"avx2": True, "ssse3": True}
    assert simd.choose_isa(avx512) == "avx512"
    assert simd.choose_isa(avx512, "auto") == "avx512"
    assert simd.choose_isa(avx2) == "ssse3"
    assert simd.choose_isa({}) == "portable"  # other CPUs (and non-x86)
    assert simd.choose_isa(avx512, "portable") == "portable"
    assert simd.choose_isa(avx512, "ssse3") == "ssse3"
    assert simd.choose_isa(avx2, "avx512") == "ssse3"  # never a path the CPU cannot run
    assert simd.choose_isa({}, "avx512") == "portable"
    assert simd.choose_isa(avx2, "bogus") == "ssse3"


def test_dispatcher_selects_fast_path_on_this_cpu():
    expected = simd.choose_isa(FEATURES, os.environ.get(simd.ENV_VAR))
    assert simd.KERNEL_ISA == expected
    assert gk.kernel_path() == expected
    if not os.environ.get(simd.ENV_VAR) and FAST:
        # this CPU has a SIMD path: being on the plain loops would be a silent fallback
        assert gk.kernel_path() == FAST[0] != "portable"
        assert linear.active_kernels().expert_matvec[gt.MXFP4] is mxfp4_fast.EXPERT_MATVEC[FAST[0]]
        assert linear.active_kernels().matmul[gt.MXFP4] is mxfp4_fast.MATMUL[FAST[0]]
    if FEATURES.get("avx512f") and not os.environ.get(simd.ENV_VAR):
        assert gk.kernel_path() == "avx512"


@needs_fast
def test_fast_kernels_contain_the_shuffle():
    """The compiled row dot really uses the table instruction (not a scalar fallback)."""
    row = readonly(random_mxfp4(np.random.default_rng(0), (1,), 96)[0])
    x = readonly(np.ones(96, np.float32))
    mnemonic = {"avx512": "vperm", "ssse3": "pshufb"}
    for p in FAST:
        fn = njit(getattr(mxfp4_fast, f"dot_mxfp4_{p}").py_func)  # uncached: cached code has no asm
        fn(row, x)
        asm = "\n".join(fn.inspect_asm().values())
        assert mnemonic[p] in asm, p


@needs_fast
@pytest.mark.parametrize("request_", ["portable", "ssse3"])
def test_env_var_forces_a_path(request_):
    code = "import gptoss_kernels as gk; print(gk.kernel_path())"
    env = dict(os.environ, **{simd.ENV_VAR: request_})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == simd.choose_isa(FEATURES, request_)


def test_set_kernel_path_rejects_unavailable():
    with pytest.raises(ValueError):
        gk.set_kernel_path("neon")
    if not FEATURES.get("avx512f"):
        with pytest.raises(ValueError):
            gk.set_kernel_path("avx512")
    old = gk.set_kernel_path("portable")
    try:
        assert gk.kernel_path() == "portable"
        assert linear.active_kernels().expert_matvec[gt.MXFP4] is plain_expert_matvec
    finally:
        gk.set_kernel_path(old)
    assert gk.kernel_path() == old


def test_set_kernel_path_swaps_whole_immutable_sets():
    """Each path is one read-only set; switching swaps the active set and never edits one."""
    before = linear.active_kernels()
    old = gk.set_kernel_path("portable")
    try:
        portable = linear.active_kernels()
        assert portable.path == "portable" and not portable.matmul_t and not portable.matmul_few
        with pytest.raises(TypeError):
            portable.expert_matvec[gt.MXFP4] = None
    finally:
        gk.set_kernel_path(old)
    assert linear.active_kernels() is before
    for p in FAST:
        assert set(kernel_sets.for_path(p).matmul_t) == {gt.MXFP4, gt.Q8_0, gt.BF16}


# ------------------------------------------------------------------ decoding, exactly


@needs_fast
def test_tile_decoder_bit_exact_every_byte_and_exponent():
    exps = np.arange(256, dtype=np.uint8)
    data = (np.arange(256 * 16, dtype=np.int64).reshape(256, 16) * 7 % 256).astype(np.uint8)
    raw = readonly(np.concatenate([exps[:, None], data], axis=1).reshape(64, 4 * 17))
    with np.errstate(over="ignore"):
        ref = gq.dequantize(raw, QT.MXFP4)
    for p in FAST:
        got = np.full((64, 128), np.nan, np.float32)
        for r in range(64):
            mxfp4_fast.DEQ_ROW[p](raw[r], 0, 128, got[r])
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), p
        part = np.full((64, 64), np.nan, np.float32)  # a column range (k0 > 0)
        for r in range(64):
            mxfp4_fast.DEQ_ROW[p](raw[r], 64, 64, part[r])
        assert np.array_equal(part.view(np.uint32), ref[:, 64:].view(np.uint32)), p


def test_matvec_reads_every_weight_exactly(mx_path):
    """expert_matvec with one-hot inputs returns each decoded weight (exponents 0..252)."""
    exps = np.arange(253, dtype=np.uint8)
    data = (np.arange(253 * 16, dtype=np.int64).reshape(253, 16) * 11 % 256).astype(np.uint8)
    blocks = np.concatenate([exps, exps[:3]])  # 256 blocks: 64 rows x 4
    data = np.concatenate([data, data[:3]])
    raw = readonly(np.concatenate([blocks[:, None], data], axis=1).reshape(1, 64, 4 * 17))
    ref = gq.dequantize(raw[0], QT.MXFP4)  # [64, 128]
    eye = readonly(np.eye(128, dtype=np.float32))
    out = np.empty((128, 64), np.float32)
    gk.expert_matvec(gt.MXFP4, raw, np.zeros(128, np.int64), eye, out)
    assert np.array_equal(out.T, ref)


def test_infinite_weights_match_plain_path(mx_path):
    """Exponents 253..255 overflow some weights to inf; inf/NaN outputs agree with the plain loops."""
    rng = np.random.default_rng(5)
    rows, cols = 24, 96
    raw = random_mxfp4(rng, (rows,), cols).reshape(rows, 3, 17)
    raw[:, 1, 0] = rng.integers(253, 256, size=rows)
    raw[:8, 1, 1:] &= 0x77  # rows 0..7: only positive nibbles there -> +inf
    raw[8:16, 1, 1:] = 0x00  # rows 8..15: zeros at the big exponent -> finite
    raw = readonly(raw.reshape(1, rows, -1))
    x = readonly(np.abs(rng.standard_normal((1, cols))).astype(np.float32) + 0.1)
    e = np.zeros(1, np.int64)
    got = np.empty((1, rows), np.float32)
    ref = np.empty((1, rows), np.float32)
    gk.expert_matvec(gt.MXFP4, raw, e, x, got)
    plain_expert_matvec(raw, readonly(e), x, ref)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.array_equal(np.isposinf(got), np.isposinf(ref))
    assert np.isposinf(got[0, :8]).all() and np.isfinite(got[0, 8:16]).all()
    fin = np.isfinite(ref)
    assert np.max(np.abs(got[fin] - ref[fin]) / np.max(np.abs(ref[fin]))) < REL_TOL


# ------------------------------------------------------------------ products


@pytest.mark.parametrize("rows, cols", [(1, 32), (7, 96), (45, 160), (19, 608), (33, 2880)])
def test_matvec_odd_shapes(mx_path, rows, cols):
    rng = np.random.default_rng(rows * 1000 + cols)
    raw = readonly(random_mxfp4(rng, (rows,), cols))
    x = rng.standard_normal(cols).astype(np.float32)
    ref = deq64(raw) @ x.astype(np.float64)
    out = np.full(rows, np.nan, np.float32)
    gk.matvec(gt.MXFP4, raw, x, out)
    assert rel_err(out, ref) < REL_TOL
    plain = np.empty((1, rows), np.float32)
    plain_expert_matvec(raw[None], readonly(np.zeros(1, np.int64)), readonly(x[None]), plain)
    assert rel_err(out, plain[0].astype(np.float64)) < REL_TOL


def test_matvec_realistic_weights_from_gguf(mx_path):
    rng = np.random.default_rng(8)
    rows, cols = 37, 320
    w = rng.standard_normal((rows, cols)).astype(np.float32) * 10.0 ** rng.uniform(-4, 1.5, (rows, 1))
    raw = readonly(gq.quantize(w.astype(np.float32), QT.MXFP4))
    x = rng.standard_normal(cols).astype(np.float32)
    out = np.empty(rows, np.float32)
    gk.matvec(gt.MXFP4, raw, x, out)
    assert rel_err(out, deq64(raw) @ x.astype(np.float64)) < REL_TOL


def test_matvec_extreme_exponents(mx_path):
    """Subnormal block scales (exponents 0..3) next to large ones (up to 230)."""
    rng = np.random.default_rng(9)
    rows, cols = 21, 320
    raw = random_mxfp4(rng, (rows,), cols).reshape(rows, 10, 17)
    raw[:, :, 0] = rng.choice(np.array([0, 1, 2, 3, 126, 127, 128, 200, 230], np.uint8), size=(rows, 10))
    raw[0, :, 0] = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]  # one row of subnormal scales only
    raw = readonly(raw.reshape(rows, -1))
    x = rng.standard_normal(cols).astype(np.float32)
    ref = deq64(raw) @ x.astype(np.float64)
    out = np.empty(rows, np.float32)
    gk.matvec(gt.MXFP4, raw, x, out)
    assert rel_err(out, ref) < REL_TOL
    plain = np.empty((1, rows), np.float32)
    plain_expert_matvec(raw[None], readonly(np.zeros(1, np.int64)), readonly(x[None]), plain)
    assert rel_err(out[:1], plain[0, :1].astype(np.float64)) < 1e-4  # the subnormal row, alone
    assert out[0] != 0.0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("rows, cols", [(45, 160), (9, 2880)])
def test_expert_matvec_k_experts(mx_path, k, rows, cols):
    rng = np.random.default_rng(100 * k + rows)
    n_exp = 5
    raw = readonly(random_mxfp4(rng, (n_exp, rows), cols, exps=(110, 135)))
    experts = rng.integers(0, n_exp, size=k)
    if k == 4:
        experts[3] = experts[1]  # a repeated expert
    x = rng.standard_normal((k, cols)).astype(np.float32)
    out = np.full((k, rows), np.nan, np.float32)
    gk.expert_matvec(gt.MXFP4, raw, experts, x, out)
    wref = deq64(raw.reshape(n_exp * rows, -1)).reshape(n_exp, rows, cols)
    ref = np.einsum("krc,kc->kr", wref[experts], x.astype(np.float64))
    assert rel_err(out, ref) < REL_TOL
    plain = np.empty((k, rows), np.float32)
    plain_expert_matvec(raw, readonly(experts.astype(np.int64)), readonly(x), plain)
    assert rel_err(out, plain.astype(np.float64)) < REL_TOL


@pytest.mark.parametrize("T", [1, 5, 37])
@pytest.mark.parametrize("rows, cols", [(7, 96), (45, 608), (17, 2880)])
def test_matmul_equals_plain_bitwise(path, T, rows, cols):
    """The tile decoder is exact, so the row-dot prefill kernel equals the plain one bit for bit.

    (``gk.matmul`` itself now runs the token-lane kernels of gemm_t.py, whose
    summation order differs; it is held to the float64 reference.)
    """
    from gptoss_kernels import mxfp4_fast
    from gptoss_kernels.matmul import matmul_mxfp4 as plain_matmul

    rng = np.random.default_rng(T * 7 + rows)
    raw = readonly(random_mxfp4(rng, (rows,), cols))
    X = rng.standard_normal((T, cols)).astype(np.float32)
    out = np.full((T, rows), np.nan, np.float32)
    gk.matmul(gt.MXFP4, raw, X, out)
    assert rel_err(out, X.astype(np.float64) @ deq64(raw).T) < REL_TOL
    fast = np.empty((T, rows), np.float32)
    mxfp4_fast.MATMUL[path](raw, readonly(X), fast)
    plain = np.empty((T, rows), np.float32)
    plain_matmul(raw, readonly(X), plain)
    assert np.array_equal(fast.view(np.uint32), plain.view(np.uint32))


# ------------------------------------------------------------------ Numba cache


@needs_fast
def test_fast_kernels_load_from_numba_cache(tmp_path):
    """Functions built on the intrinsics are cached: a second process compiles nothing."""
    code = textwrap.dedent(f"""
        import numpy as np
        import gptoss_kernels as gk
        from gptoss_kernels import ggml_types as gt, gemm_t, mxfp4_fast
        gk.set_kernel_path({FAST[0]!r})
        w = np.zeros((8, 17), np.uint8)
        w[:, 0] = 127
        out = np.empty(8, np.float32)
        gk.matvec(gt.MXFP4, w, np.ones(32, np.float32), out)
        gk.matmul(gt.MXFP4, w, np.ones((16, 32), np.float32), np.empty((16, 8), np.float32))  # 16 tokens: gemm_t
        fns = [mxfp4_fast.EXPERT_MATVEC[{FAST[0]!r}], gemm_t.MATMUL_T_MXFP4[{FAST[0]!r}]]
        if {FAST[0]!r} == "avx512":  # 8 tokens: the few-token kernel
            from gptoss_kernels import mxfp4_few
            gk.matmul(gt.MXFP4, w, np.ones((8, 32), np.float32), np.empty((8, 8), np.float32))
            fns.append(mxfp4_few.matmul_few_mxfp4_avx512)
        print(sum(sum(f.stats.cache_hits.values()) for f in fns),
              sum(sum(f.stats.cache_misses.values()) for f in fns))
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop(simd.ENV_VAR, None)

    def run():
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        return [int(v) for v in out.stdout.split()]

    n = 3 if FAST[0] == "avx512" else 2
    hits, misses = run()
    assert misses == n and hits == 0
    hits, misses = run()
    assert hits == n and misses == 0


def test_avx512_row_order_by_cpu():
    assert mxfp4_fast.avx512_row_order("znver4") == "xperm"
    assert mxfp4_fast.avx512_row_order("sapphirerapids") == "pairs"
    assert mxfp4_fast.avx512_row_order("") == "pairs"
    assert sorted(simd.XPERM_LANES) == list(range(32))


@pytest.mark.skipif(not FEATURES.get("avx512f"), reason="no AVX-512")
def test_xperm_rows_is_the_decoder_lane_order():
    x = readonly(np.arange(2 * 64, dtype=np.float32).reshape(2, 64))
    xp = np.empty_like(x)
    mxfp4_fast.xperm_rows(x, xp)
    lanes = np.array(simd.XPERM_LANES)
    assert np.array_equal(xp, np.concatenate([lanes, 32 + lanes])[None, :] + 64 * np.arange(2)[:, None])
