"""The two precisions (docs/design.md §2.8): the rounding of `fast`, its kernels, and where the choice travels.

`fast` multiplies the MXFP4 and Q8_0 weights by activations rounded to two 8-bit
pieces per 32-value block (gptoss_kernels.pieces); every kernel of the precision,
integer (AVX-512 VNNI) or float, must give the float64 product of the exact
weights and those rounded activations within 1e-5 relative, the contract every
exact kernel meets with the activations themselves. The parity of whole models
in both precisions is in tests/test_model_parity.py; the slow test at the end
holds `fast` to half of llama.cpp's own error on the same files.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT
from gguf import quants as gq

import gptoss_kernels as gk
from gptoss_kernels import ggml_types as gt
from gptoss_kernels import kernel_sets, linear, pieces, simd
from test_kernels_q8_fast import readonly, rel_err
from tiny_models import TinySpec, build_tiny_model

from gptoss_cli import load_model
from gptoss_cli.errors import OptionError

REL_TOL = 1e-5
PATHS = kernel_sets.available_paths()


def weights(rng, type_name: str, shape: tuple[int, ...], cols: int):
    """Stored weights and their float64 values (MXFP4: random nibbles, exponents 110..129)."""
    if type_name == "mxfp4":
        nb = cols // 32
        raw = rng.integers(0, 256, size=shape + (nb, 17), dtype=np.uint8)
        raw[..., 0] = rng.integers(110, 130, size=shape + (nb,))
        raw = raw.reshape(shape + (nb * 17,))
        ref = gq.dequantize(raw.reshape(-1, raw.shape[-1]), QT.MXFP4)
    else:
        f = rng.standard_normal(shape + (cols,)).astype(np.float32) * np.float32(0.05)
        raw = gq.quantize(f.reshape(-1, cols), QT.Q8_0).reshape(shape + (-1,))
        ref = gq.dequantize(raw.reshape(-1, raw.shape[-1]), QT.Q8_0)
    return readonly(raw), ref.astype(np.float64).reshape(shape + (cols,))


def activations(rng, rows: int, cols: int) -> np.ndarray:
    """Activations with an outlier channel, a zero block and a tiny block, as hidden states have."""
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x[:, 3] *= 40
    if cols >= 64:
        x[:, 32:64] = 0
    if cols >= 128:
        x[:, 96:128] *= np.float32(1e-30)
    return x


# ---------------------------------------------------------------- the rounding


def test_rounding_is_a_16_bit_grid_per_block_and_idempotent():
    rng = np.random.default_rng(0)
    x = activations(rng, 3, 2880)
    r = pieces.rounded_rows(x)
    blocks, rblocks = x.reshape(3, -1, 32), r.reshape(3, -1, 32)
    big = np.abs(blocks).max(-1)
    err = np.abs(rblocks - blocks).max(-1)
    assert np.all(err <= big / 32512 + 1e-45)  # s / 512 with max|x| / s > 63.5
    assert np.all(rblocks[:, 1] == 0)
    assert np.array_equal(pieces.rounded_rows(r), r)  # a kernel may round what another rounded
    assert np.array_equal(pieces.rounded_cols(np.ascontiguousarray(x.T)).T, r)
    nz = big > 0
    scale = 2.0 ** np.ceil(np.log2(big[nz] / 127))  # the grid: a power of two / 256 per block
    grid = rblocks[nz] / (scale[..., None] / 256)
    assert np.array_equal(grid, np.round(grid))


def test_a_nan_or_infinity_stays_in_its_block(kernel_path):
    x = np.ones((1, 128), np.float32)
    x[0, 5], x[0, 70] = np.nan, np.inf
    r = pieces.rounded_rows(x)
    assert np.isnan(r[0, 5]) and np.isinf(r[0, 70]) and np.all(np.isfinite(np.delete(r[0], [5, 70])))
    out = np.empty((1, 4), np.float32)
    for type_name, ggml_type in (("q8_0", gt.Q8_0), ("mxfp4", gt.MXFP4)):
        raw, _ = weights(np.random.default_rng(1), type_name, (4,), 128)
        gk.matvec(ggml_type, raw, x[0], out[0], "fast")
        assert np.all(np.isnan(out)), (kernel_path, type_name)


@pytest.mark.parametrize("type_name", ["mxfp4", "q8_0"])
def test_the_split_layouts_hold_the_rounded_values(type_name):
    x = activations(np.random.default_rng(2), 2, 2880)
    r = pieces.rounded_rows(x).astype(np.float64)
    if type_name == "q8_0":
        v = pieces.split_q8_0(x).reshape(2, -1, 256)
        p0 = v[:, :, :64].view(np.int8).reshape(2, -1, 2, 32)
        p1 = v[:, :, 64:128].view(np.int8).reshape(2, -1, 2, 32)
        s = np.ascontiguousarray(v[:, :, 192:]).view(np.float32).reshape(2, -1, 2, 8)[..., :1] * 256
    else:
        v = pieces.split_mxfp4(x).reshape(2, -1, 384)
        halves = [v[:, :, 64 * i : 64 * i + 64].view(np.int8).reshape(2, -1, 4, 16) for i in range(4)]
        p0 = np.concatenate(halves[:2], axis=-1)
        p1 = np.concatenate(halves[2:], axis=-1)
        s = np.ascontiguousarray(v[:, :, 320:]).view(np.float32).reshape(2, -1, 4, 4)[..., :1] * 512
    got = ((256 * p0.astype(np.float64) + p1) * s / 256).reshape(2, -1)[:, : x.shape[1]]
    assert np.array_equal(got, r)


@pytest.mark.parametrize("type_name", ["mxfp4", "q8_0"])
def test_the_16_bit_layouts_hold_the_rounded_values(type_name):
    x = activations(np.random.default_rng(3), 2, 2880)
    r = pieces.rounded_rows(x).astype(np.float64)
    blocks, divisor, split = (2, 512, pieces.split16_mxfp4) if type_name == "mxfp4" else (1, 256, pieces.split16_q8_0)
    v = split(x).reshape(2, -1, 68 * blocks)
    t = np.ascontiguousarray(v[:, :, : 64 * blocks]).view(np.int16).reshape(2, -1, blocks, 32)
    s = np.ascontiguousarray(v[:, :, 64 * blocks :]).view(np.float32).reshape(2, -1, blocks, 1) * divisor
    got = (t.astype(np.float64) * s / 256).reshape(2, -1)[:, : x.shape[1]]
    assert np.array_equal(got, r)


# ---------------------------------------------------------------- the kernels


@pytest.fixture(params=PATHS)
def kernel_path(request):
    old = gk.set_kernel_path(request.param)
    yield request.param
    gk.set_kernel_path(old)


def test_the_fast_sets_round_mxfp4_and_q8_0_only():
    for path in PATHS:
        exact, fast = kernel_sets.for_path(path), kernel_sets.for_path(path, "fast")
        assert (exact.precision, fast.precision) == ("exact", "fast")
        assert kernel_sets.for_path(path, "fast") is fast
        for table in ("expert_matvec", "matmul", "matmul_t", "matmul_few", "grouped_matvec"):
            e, f = getattr(exact, table), getattr(fast, table)
            assert e.keys() == f.keys()
            for t in e:
                assert (f[t] is e[t]) == (t not in kernel_sets.ROUNDED_TYPES)
    with pytest.raises(ValueError, match="unknown precision"):
        kernel_sets.for_path(PATHS[0], "half")


def test_integer_kernels_where_the_cpu_has_vnni_or_avx2():
    features = simd.target_features()
    vnni = all(features.get(f) for f in ("avx512bw", "avx512vnni", "avx512vbmi"))
    for path in PATHS:
        fast = kernel_sets.for_path(path, "fast")
        for ggml_type in (gt.MXFP4, gt.Q8_0):
            uses = not hasattr(fast.expert_matvec[ggml_type], "exact_kernel")
            assert uses == ((vnni and path == "avx512") or (bool(features.get("avx2")) and path == "ssse3"))
            assert uses == (not hasattr(fast.grouped_matvec[ggml_type], "exact_kernel"))
    assert kernel_sets.has_avx2_int_kernels("ssse3", {"avx2": True})
    assert not kernel_sets.has_avx2_int_kernels("ssse3", {"ssse3": True})
    assert not kernel_sets.has_avx2_int_kernels("avx512", {"avx2": True})
    assert not kernel_sets.has_vnni_kernels("avx512", {"avx512f": True, "avx512bw": True})
    assert kernel_sets.has_vnni_kernels("avx512", {"avx512bw": True, "avx512vnni": True, "avx512vbmi": True})
    assert not kernel_sets.has_vnni_kernels("ssse3", {"avx512bw": True, "avx512vnni": True, "avx512vbmi": True})


# widths: one partial step (MXFP4 4-block steps, Q8_0 2-block steps) and none; rows: the last row of a
# matrix reads its partial step masked, the others read on into the next row
SHAPES = [(1, 32), (3, 64), (5, 96), (7, 160), (9, 256), (17, 2880), (6, 4096)]


@pytest.mark.parametrize("type_name", ["mxfp4", "q8_0"])
@pytest.mark.parametrize("rows, cols", SHAPES)
def test_fast_expert_matvec_is_the_product_of_the_rounded_activations(kernel_path, type_name, rows, cols):
    rng = np.random.default_rng(rows * 7 + cols)
    ggml_type = gt.MXFP4 if type_name == "mxfp4" else gt.Q8_0
    raw, w = weights(rng, type_name, (3, rows), cols)
    experts = np.array([2, 0, 2, 1])
    x = activations(rng, 4, cols)
    out = np.full((4, rows), np.nan, np.float32)
    gk.expert_matvec(ggml_type, raw, experts, x, out, "fast")
    xr = pieces.rounded_rows(x).astype(np.float64)
    for i, e in enumerate(experts):
        assert rel_err(out[i], w[e] @ xr[i]) < REL_TOL
    exact = np.empty_like(out)
    gk.expert_matvec(ggml_type, raw, experts, x, exact)
    ref = np.stack([w[e] @ x[i].astype(np.float64) for i, e in enumerate(experts)])
    assert rel_err(exact, ref) < REL_TOL  # and `exact` is still the product of x itself


@pytest.mark.parametrize("type_name", ["mxfp4", "q8_0"])
@pytest.mark.parametrize("tokens", [1, 2, 3, 4, 5, 9, 15, 16, 17, 40])
def test_fast_matmul_is_the_product_of_the_rounded_activations(kernel_path, type_name, tokens):
    rng = np.random.default_rng(tokens)
    ggml_type = gt.MXFP4 if type_name == "mxfp4" else gt.Q8_0
    rows, cols = 37, 2880
    raw, w = weights(rng, type_name, (rows,), cols)
    x = activations(rng, tokens, cols)
    out = np.full((tokens, rows), np.nan, np.float32)
    gk.matmul(ggml_type, raw, x, out, "fast")
    assert rel_err(out, pieces.rounded_rows(x).astype(np.float64) @ w.T) < REL_TOL


@pytest.mark.parametrize("type_name", ["mxfp4", "q8_0"])
def test_fast_matmul_t_rounds_each_token_column(kernel_path, type_name):
    rng = np.random.default_rng(5)
    ggml_type = gt.MXFP4 if type_name == "mxfp4" else gt.Q8_0
    raw, w = weights(rng, type_name, (20,), 160)
    x = activations(rng, 16, 160)
    out_t = np.zeros((32, 16), np.float32)
    linear.matmul_t(ggml_type, raw, np.ascontiguousarray(x.T), out_t, "fast")
    assert rel_err(out_t[:20].T, pieces.rounded_rows(x).astype(np.float64) @ w.T) < REL_TOL


def test_other_types_are_exact_in_fast():
    rng = np.random.default_rng(6)
    f = rng.standard_normal((9, 96)).astype(np.float32)
    raw = readonly((f.view(np.uint32) >> 16).astype(np.uint16))
    x = activations(rng, 1, 96)[0]
    a, b = np.empty(9, np.float32), np.empty(9, np.float32)
    gk.matvec(gt.BF16, raw, x, a, "fast")
    gk.matvec(gt.BF16, raw, x, b, "exact")
    assert np.array_equal(a, b)


# ---------------------------------------------------------------- where the choice travels

SPEC = TinySpec(n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=2,
                head_dim=16, vocab=512, sliding_window=16, context_length=256, seed=11, dense="q8_0")


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_model(SPEC, tmp_path_factory.mktemp("precision")).gguf_path


def test_load_model_takes_the_precision(tiny_path):
    from gptoss_cli.kernel_warmup import kernel_fingerprint

    fast, exact = load_model(tiny_path), load_model(tiny_path, precision="exact")
    assert (fast.precision, exact.precision) == ("fast", "exact")
    assert (fast.model.precision, exact.model.precision) == ("fast", "exact")
    assert fast.fingerprint != exact.fingerprint  # prompt-cache snapshots and compile markers never mix
    assert fast.fingerprint == kernel_fingerprint(fast.weight_types, "fast")
    ids = np.arange(40) % SPEC.vocab
    a, b = fast.logits(ids), exact.logits(ids)
    assert not np.array_equal(a, b) and np.max(np.abs(a - b)) < 1e-2 * np.max(np.abs(b))
    with pytest.raises(OptionError, match="invalid value for precision: 'half'"):
        load_model(tiny_path, precision="half")


def test_the_option_resolves_from_flag_config_and_default():
    from gptoss_cli.options import RUN, SERVE, CHAT, Settings, config_types, resolve

    assert resolve(RUN, Settings(), config={}).precision == "fast"
    assert resolve(CHAT, Settings(precision="EXACT"), config={}).precision == "exact"
    assert resolve(SERVE, Settings(), config={"precision": "exact"}).precision == "exact"
    assert "precision" in config_types(RUN)
    with pytest.raises(OptionError, match="invalid value for precision under"):
        resolve(RUN, Settings(), config={"precision": "bf16"})
    with pytest.raises(OptionError, match="--precision"):
        resolve(RUN, Settings(precision="int8"), config={})


def test_run_and_bench_name_the_precision(tiny_path, capsys):
    from gptoss_cli.bench import bench_gptoss, format_results
    from gptoss_cli.run_output import make_renderer, stats_line

    r = bench_gptoss(tiny_path, pp=8, tg=2, threads=1, reps=1, precision="exact")
    assert r.precision == "exact" and json.loads(format_results([r], "json"))["precision"] == "exact"
    assert "| exact |" in format_results([r], "md")

    class Result:
        prompt_tokens = computed_tokens = 3
        cached_tokens = 0
        compute_s = gen_s = 0.5
        restore_s = 0.0
        prompt_tok_s = gen_tok_s = 6.0
        completion_tokens = 3
        stop_reason = "stop"

        def timings(self, load_s):
            return {"load_s": load_s}

    assert stats_line(Result(), 0.1, None, "fast").endswith("| precision fast | stop: stop")
    renderer = make_renderer("json", None, None, model="m", model_path="m", load_s=0.1, precision="fast")
    assert renderer.timings(Result())["precision"] == "fast"


# ---------------------------------------------------------------- against llama.cpp (slow)

LLAMA_PYTHON = os.environ.get("GPTOSS_LLAMA_PYTHON")

_LLAMA = r"""
import json, sys, numpy as np
from llama_cpp import Llama
ids = json.loads(sys.argv[1])
llm = Llama(model_path=sys.argv[2], n_ctx=512, n_batch=1, logits_all=True, n_threads=2, verbose=False)
llm.eval(ids)
np.save(sys.argv[3], np.array(llm.scores[: len(ids)], dtype=np.float32))
"""

# the parity models' shapes (tests/test_model_parity.py) with the real tokenizer, which llama.cpp requires
LLAMA_SPECS = {
    "l2-e4-k2-gqa2-w16-q8-hd64": dict(n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4,
                                      n_kv_heads=2, head_dim=64, sliding_window=16, seed=4, dense="q8_0"),
    "l4-e16-k4-mha-w32-q8": dict(n_layers=4, n_experts=16, top_k=4, hidden=128, expert_ffn=96, n_heads=8,
                                 n_kv_heads=8, head_dim=16, sliding_window=32, seed=3, dense="q8_0"),
    "l3-e8-k4-gqa4-w512-bf16": dict(n_layers=3, n_experts=8, top_k=4, hidden=96, expert_ffn=64, n_heads=8,
                                    n_kv_heads=2, head_dim=32, sliding_window=512, seed=2, dense="bf16"),
}


@pytest.mark.slow
@pytest.mark.skipif(not LLAMA_PYTHON, reason="set GPTOSS_LLAMA_PYTHON to a Python with llama-cpp-python 0.3.36")
@pytest.mark.parametrize("name", sorted(LLAMA_SPECS))
def test_fast_has_at_most_half_of_llama_cpps_error_on_the_same_file(name, tmp_path):
    from o200k import o200k_arrays

    spec = TinySpec(vocab=201088, context_length=1024, **LLAMA_SPECS[name])
    tm = build_tiny_model(spec, tmp_path, tokenizer=o200k_arrays())
    ids = np.random.default_rng(spec.seed + 100).integers(0, 199998, 200)
    ref = tm.reference_logits(ids)
    p = subprocess.run([LLAMA_PYTHON, "-c", _LLAMA, json.dumps(ids.tolist()), str(tm.gguf_path),
                        str(tmp_path / "llama.npy")], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    runs = {"llama.cpp": np.load(tmp_path / "llama.npy")}
    for precision in ("fast", "exact"):
        runs[precision] = load_model(tm.gguf_path, threads=2, precision=precision).logits(ids)
    scores = {}
    for engine, logits in runs.items():
        agree = float(np.mean(logits.argmax(-1) == ref.argmax(-1)))
        err = float(np.mean(np.abs(logits - ref)) / ref.std())
        scores[engine] = (agree, err)
        print(f"\n{name} {engine}: top-1 vs transformers {agree:.4f}, mean |err| / std {err:.2e}")
    assert scores["fast"][0] >= 0.99 and scores["fast"][1] <= 0.5 * scores["llama.cpp"][1]
    assert scores["exact"][0] >= 0.995 and scores["exact"][1] <= 0.002
