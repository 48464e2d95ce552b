"""Quantization kernels (bit-exact with gguf.quants) and `gptoss quantize`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT

from tiny_models import TinySpec, build_tiny_model

from gptoss_cli.gguf_file import GGUFFile, StringArray
from gptoss_kernels import quantize as kq

GPTOSS = str(Path(sys.executable).with_name("gptoss"))


# --------------------------------------------------------------------- kernels


def _awkward(rows: int, cols: int, seed: int) -> np.ndarray:
    """Rows of very different scales plus the edge cases: zeros, ties, subnormals,
    powers of two, values just below powers of two, infinities."""
    rng = np.random.default_rng(seed)
    scale = rng.choice(np.float32([1e-30, 1e-6, 1e-3, 0.02, 1, 7, 300, 6e4, 1e20]), size=(rows, 1))
    x = (rng.standard_normal((rows, cols)) * scale).astype(np.float32)
    x[0] = 0
    x[1, :32] = 0
    x[1, 32:] = np.float32(1e-42)  # subnormal
    x[2] = np.float32(2.0) ** rng.integers(-60, 60, cols).astype(np.float32)
    x[3] = np.nextafter(x[2], np.float32(0))  # just below powers of two
    x[4] = rng.integers(-8, 9, cols).astype(np.float32) * np.float32(0.25)  # many exact ties
    x[5, ::7] = np.inf
    x[6, ::5] = -np.inf
    x[7] = -x[4]
    return x


@pytest.mark.parametrize("qt", [QT.Q8_0, QT.MXFP4, QT.BF16])
def test_kernels_bit_identical_to_gguf_quants(qt):
    x = _awkward(257, 96, seed=int(qt))
    ours = {QT.Q8_0: kq.quantize_q8_0, QT.MXFP4: kq.quantize_mxfp4, QT.BF16: kq.f32_to_bf16}[qt](x)
    with np.errstate(all="ignore"):
        ref = gguf.quants.quantize(x, qt)
    assert np.array_equal(ours.view(np.uint8).reshape(ref.shape), ref.view(np.uint8).reshape(ref.shape))


@pytest.mark.parametrize("qt", [QT.Q8_0, QT.MXFP4])
def test_kernels_keep_leading_axes(qt):
    x = np.random.default_rng(3).standard_normal((3, 5, 64)).astype(np.float32)
    f = kq.quantize_q8_0 if qt == QT.Q8_0 else kq.quantize_mxfp4
    assert np.array_equal(f(x), gguf.quants.quantize(x, qt))


def test_mxfp4_scale_exponent_at_every_power_of_two():
    # block maxima just below, at and above 2^k for every float32 exponent: the
    # E8M0 byte depends on float32 log2 rounding exactly as NumPy does it
    k = np.arange(-126, 128, dtype=np.float64)
    m = np.array([1 - 2.0**-24, 1 - 2.0**-23, 1 - 3 * 2.0**-24, 1.0, 1 + 2.0**-23, 1.5], dtype=np.float64)
    v = (2.0 ** k[:, None] * m[None, :]).ravel()
    v = v[np.isfinite(v.astype(np.float32))].astype(np.float32)
    x = np.zeros((v.size, 32), np.float32)
    x[:, 3] = v
    x[:, 20] = -v / 3
    with np.errstate(all="ignore"):
        assert np.array_equal(kq.quantize_mxfp4(x), gguf.quants.quantize(x, QT.MXFP4))


def test_f16_scale_conversion_matches_numpy():
    rng = np.random.default_rng(5)
    bits = np.concatenate([
        rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32),
        np.arange(0x33000000 - 64, 0x33000000 + 64, dtype=np.uint32),  # around half's smallest subnormal
        np.arange(0x387FE000, 0x38802000, 16, dtype=np.uint32),  # subnormal / normal boundary
        np.arange(0x477FE000, 0x47800100, 16, dtype=np.uint32),  # around 65504 / overflow
    ])
    f = bits.view(np.float32)

    from numba import njit

    @njit(cache=False)
    def conv(v, out):
        for i in range(v.size):
            out[i] = kq.f32_to_f16_bits(v[i])

    out = np.empty(f.size, np.int64)
    conv(f, out)
    with np.errstate(all="ignore"):
        ref = f.astype(np.float16).view(np.uint16)
    finite = np.isfinite(f)
    assert np.array_equal(out[finite].astype(np.uint16), ref[finite])


def _checkpoint_nibbles_reference(blocks: np.ndarray, scales: np.ndarray, rows: slice) -> np.ndarray:
    """Plain NumPy: unpack checkpoint nibbles (2j low, 2j+1 high) to values 0..15,
    repack as GGUF (j low, j+16 high) behind the scale byte."""
    b, s = blocks[rows], scales[rows]
    e = np.empty((*b.shape[:-1], 32), np.uint8)
    e[..., 0::2] = b & 0x0F
    e[..., 1::2] = b >> 4
    packed = e[..., :16] | (e[..., 16:] << 4)
    out = np.concatenate([s[..., None], packed], axis=-1)
    return out.reshape(out.shape[0], -1)


@pytest.mark.parametrize("row0,step", [(0, 1), (0, 2), (1, 2)])
def test_repack_mxfp4_moves_bytes(row0, step):
    rng = np.random.default_rng(row0 + 10 * step)
    blocks = rng.integers(0, 256, (14, 6, 16), dtype=np.uint8)  # every byte value appears
    scales = rng.integers(0, 256, (14, 6), dtype=np.uint8)
    got = kq.repack_mxfp4(blocks, scales, row0, step)
    assert np.array_equal(got, _checkpoint_nibbles_reference(blocks, scales, slice(row0, None, step)))
    # and the values: dequantizing the checkpoint the OCP way equals gguf.quants of ours
    lut = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], np.float32)
    b, s = blocks[row0::step], scales[row0::step]
    vals = np.empty((*b.shape[:-1], 32), np.float32)
    vals[..., 0::2] = lut[b & 0x0F]
    vals[..., 1::2] = lut[b >> 4]
    with np.errstate(over="ignore"):
        vals *= np.ldexp(np.float32(1), s.astype(np.int32) - 127)[..., None]
    with np.errstate(all="ignore"):
        deq = gguf.quants.dequantize(got, QT.MXFP4).reshape(vals.shape)
    ok = np.isfinite(vals) & (s[..., None] < 254)  # ggml's half-scale table stops short of the top exponents
    assert np.array_equal(deq[ok], vals[ok])


# --------------------------------------------------------------------- gptoss quantize


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    spec = TinySpec(n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=2,
                    head_dim=16, vocab=512, sliding_window=16, context_length=1024, seed=21, dense="bf16")
    from o200k import o200k_ranks
    from gptoss_cli.tokenizer_arrays import from_tiktoken_ranks

    ranks = {b: r for b, r in o200k_ranks().items() if r < 500}
    tok = from_tiktoken_ranks(ranks, {"<|startoftext|>": 500, "<|return|>": 502}, vocab_size=512,
                              bos_id=500, eos_id=502, padding_id=None)
    return build_tiny_model(spec, tmp_path_factory.mktemp("quantize"), tokenizer=tok)


def _all(path):
    with GGUFFile(path) as gf:
        tensors = {n: (i.ggml_type, i.shape, np.array(gf.tensor(n))) for n, i in gf.tensors.items()}
        md = {k: (v.tolist() if isinstance(v, (StringArray, np.ndarray)) else v) for k, v in gf.metadata.items()}
    return tensors, md


def _run(*args):
    return subprocess.run([GPTOSS, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("qtype", ["q8_0", "f16", "f32", "bf16"])
def test_quantize_types_and_bytes(tiny, tmp_path, qtype):
    from gptoss_cli.convert.quantize import quantize_gguf

    out = tmp_path / f"q-{qtype}.gguf"
    r = quantize_gguf(tiny.gguf_path, out, qtype, progress=False, fsync=False)
    src_t, src_md = _all(tiny.gguf_path)
    t, md = _all(out)
    assert list(t) == list(src_t)
    want = {"q8_0": QT.Q8_0, "f16": QT.F16, "f32": QT.F32, "bf16": QT.BF16}[qtype]
    dense = [n for n in t if n in ("token_embd.weight", "output.weight") or
             any(n.endswith(s) for s in ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight"))]
    assert len(dense) == 2 + 4 * tiny.config.n_layers
    for name, (ty, shape, raw) in t.items():
        if name in dense:
            assert ty == want, name
            with np.errstate(all="ignore"):
                ref = gguf.quants.quantize(tiny.weights[name], want)
            assert np.array_equal(raw.view(np.uint8).ravel(), ref.view(np.uint8).ravel()), name
        elif name.endswith("_exps.weight"):
            assert ty == QT.MXFP4 and np.array_equal(raw, src_t[name][2]), name  # kept byte for byte
        else:
            assert ty == QT.F32 and np.array_equal(raw, src_t[name][2]), name
    # every key copied; only the file type may change (experts stay MXFP4 -> 38)
    assert md["general.file_type"] == 38
    assert {k: v for k, v in md.items() if k != "general.file_type"} == \
           {k: v for k, v in src_md.items() if k != "general.file_type"}
    assert r.kept_mxfp4 == 3 * tiny.config.n_layers
    assert r.n_changed == (0 if qtype == "bf16" else len(dense))


def test_quantize_q8_0_logits_within_tolerance(tiny, tmp_path):
    """Q8_0 dense weights against the BF16 model's transformers logits.

    Measured (300 tokens) on this and five other tiny random models: mean |err|
    1.5e-2 to 2.3e-2 of the reference logits' std, top-1 agreement 0.93 to 0.97
    (the BF16 files themselves: about 1e-6 and 1.0). Tiny random models have
    flat logits, so top-1 flips easily. Tolerance: top-1 >= 0.90, mean |err|
    <= 0.04 * std."""
    from gptoss_cli import load_model
    from gptoss_cli.convert.quantize import quantize_gguf

    out = tmp_path / "q8.gguf"
    quantize_gguf(tiny.gguf_path, out, "q8_0", progress=False, fsync=False)
    ids = np.random.default_rng(7).integers(0, tiny.config.vocab_size, 300)
    ref = tiny.reference_logits(ids)
    ours = load_model(out, threads=2).logits(ids)
    agree = float(np.mean(ours.argmax(-1) == ref.argmax(-1)))
    rel = float(np.mean(np.abs(ours - ref)) / ref.std())
    print(f"\nq8_0 vs transformers (bf16 weights): top-1 {agree:.4f}, mean |err| / std {rel:.2e}")
    assert agree >= 0.90
    assert rel <= 0.04


def test_quantize_experts_to_mxfp4(tiny, tmp_path):
    """A file with BF16 experts (e.g. a fine-tune converted with --outtype bf16) -> MXFP4 experts."""
    from gptoss_cli.convert.gguf_writer import GGUFTensor, encode_tensor, tensor_type_for, write_gpt_oss_gguf
    from gptoss_cli.convert.quantize import quantize_gguf

    tensors = []
    for name, x in tiny.weights.items():
        qt = QT.BF16 if name.endswith("_exps.weight") else tensor_type_for(name, x.ndim, "bf16")
        tensors.append(GGUFTensor(name, encode_tensor(x, qt), qt, x.shape))
    src = write_gpt_oss_gguf(tmp_path / "bf16-experts.gguf", tiny.config, tensors, file_type=32, fsync=False)
    out = tmp_path / "mx.gguf"
    r = quantize_gguf(src, out, "mxfp4", progress=False, fsync=False)
    t, md = _all(out)
    s, _ = _all(src)
    for name, (ty, shape, raw) in t.items():
        if name.endswith("_exps.weight"):
            assert ty == QT.MXFP4
            assert np.array_equal(raw, gguf.quants.quantize(tiny.weights[name], QT.MXFP4)), name
        else:
            assert ty == s[name][0] and np.array_equal(raw, s[name][2]), name
    assert md["general.file_type"] == 38 and r.n_changed == 3 * tiny.config.n_layers


def test_quantize_cli_and_errors(tiny, tmp_path):
    out = tmp_path / "cli.gguf"
    p = _run("quantize", tiny.gguf_path, out, "q8_0")
    assert p.returncode == 0, p.stderr
    assert "already MXFP4" in p.stderr and "wrote" in p.stderr and out.is_file()

    p = _run("quantize", tiny.gguf_path, out, "q8_0")  # exists
    assert p.returncode == 1 and "already exists (use --force to overwrite)" in p.stderr
    assert _run("quantize", tiny.gguf_path, out, "f16", "--force").returncode == 0

    p = _run("quantize", tmp_path / "nope.gguf", tmp_path / "x.gguf", "q8_0")
    assert p.returncode == 1 and "file not found" in p.stderr

    p = _run("quantize", tiny.gguf_path, tmp_path / "x.gguf", "q4_0")
    assert p.returncode == 2 and "q4_0" in p.stderr

    p = _run("quantize", tiny.gguf_path, tiny.gguf_path, "q8_0", "--force")
    assert p.returncode == 1 and "different file" in p.stderr

    w = gguf.GGUFWriter(str(tmp_path / "llama.gguf"), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    p = _run("quantize", tmp_path / "llama.gguf", tmp_path / "y.gguf", "q8_0")
    assert p.returncode == 1 and "gptoss runs only 'gpt-oss'" in p.stderr
    for p in (p,):
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "y.gguf").exists() and not list(tmp_path.glob(".*.part"))


def test_output_and_embedding_type_overrides(tiny, tmp_path):
    """--output-tensor-type / --token-embedding-type, as llama-quantize has them; the runtime reads the result."""
    from gptoss_cli import load_model

    out = tmp_path / "mixed.gguf"
    p = _run("quantize", tiny.gguf_path, out, "q8_0", "--output-tensor-type", "mxfp4", "--token-embedding-type", "f16")
    assert p.returncode == 0, p.stderr
    t, md = _all(out)
    assert t["output.weight"][0] == QT.MXFP4 and t["token_embd.weight"][0] == QT.F16
    assert t["blk.0.attn_q.weight"][0] == QT.Q8_0 and md["general.file_type"] == 38
    want = gguf.quants.quantize(tiny.weights["output.weight"], QT.MXFP4)
    assert np.array_equal(t["output.weight"][2].view(np.uint8).ravel(), want.view(np.uint8).ravel())
    ids = np.arange(40) % tiny.config.vocab_size
    ref = tiny.reference_logits(ids)
    ours = load_model(out, threads=2).logits(ids)
    assert np.all(np.isfinite(ours)) and float(np.mean(ours.argmax(-1) == ref.argmax(-1))) >= 0.5

    p = _run("quantize", tiny.gguf_path, tmp_path / "z.gguf", "q8_0", "--output-tensor-type", "q4_k")
    assert p.returncode == 2 and "q4_k" in p.stderr and not (tmp_path / "z.gguf").exists()
