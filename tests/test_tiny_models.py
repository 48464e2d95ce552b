"""The GGUF writer and the tiny-model factory: files valid and faithful."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFReader
from gguf import GGUFValueType as VT

from gptoss_cli.convert.gguf_writer import (
    GGUFTensor,
    expected_tensor_shapes,
    gguf_tensors_from_arrays,
    quantize_mxfp4,
    quantize_q8_0,
    to_bf16_bits,
    write_gpt_oss_gguf,
)
from tiny_models import TinySpec, build_tiny_model, numpy_reference_logits

DENSE = {"bf16": QT.BF16, "q8_0": QT.Q8_0, "f16": QT.F16, "f32": QT.F32}
IDS = [int(i) for i in np.random.default_rng(7).integers(0, 1000, 48)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    cache: dict = {}

    def get(dense: str = "bf16", **kw):
        key = (dense, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = build_tiny_model(TinySpec(dense=dense, **kw), root / f"{dense}-{len(cache)}")
        return cache[key]

    return get


def _field(reader: GGUFReader, key: str):
    f = reader.fields[key]
    return f.contents(), f.types


def _dense_names(n_layers: int) -> set[str]:
    names = {"token_embd.weight", "output.weight"}
    for i in range(n_layers):
        names |= {f"blk.{i}.attn_{t}.weight" for t in ("q", "k", "v", "output")}
    return names


# ---------------------------------------------------------------------------
# Metadata, names, types, shapes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dense", list(DENSE))
def test_metadata_keys_values_and_types(tiny, dense):
    tm = tiny(dense)
    cfg = tm.config
    r = GGUFReader(tm.gguf_path)
    a = "gpt-oss."
    want = {
        "general.architecture": ("gpt-oss", VT.STRING),
        "general.type": ("model", VT.STRING),
        "general.name": ("tiny-gpt-oss", VT.STRING),
        "general.file_type": (38, VT.UINT32),
        "general.quantization_version": (2, VT.UINT32),
        a + "block_count": (cfg.n_layers, VT.UINT32),
        a + "context_length": (cfg.context_length, VT.UINT32),
        a + "embedding_length": (cfg.hidden, VT.UINT32),
        a + "feed_forward_length": (cfg.expert_ffn, VT.UINT32),
        a + "expert_feed_forward_length": (cfg.expert_ffn, VT.UINT32),
        a + "expert_count": (cfg.n_experts, VT.UINT32),
        a + "expert_used_count": (cfg.n_experts_used, VT.UINT32),
        a + "attention.head_count": (cfg.n_heads, VT.UINT32),
        a + "attention.head_count_kv": (cfg.n_kv_heads, VT.UINT32),
        a + "attention.key_length": (cfg.head_dim, VT.UINT32),
        a + "attention.value_length": (cfg.head_dim, VT.UINT32),
        a + "attention.sliding_window": (cfg.sliding_window, VT.UINT32),
        a + "attention.layer_norm_rms_epsilon": (np.float32(1e-5), VT.FLOAT32),
        a + "rope.freq_base": (150000.0, VT.FLOAT32),
        a + "rope.scaling.type": ("yarn", VT.STRING),
        a + "rope.scaling.factor": (32.0, VT.FLOAT32),
        a + "rope.scaling.original_context_length": (4096, VT.UINT32),
        a + "rope.scaling.yarn_beta_fast": (32.0, VT.FLOAT32),
        a + "rope.scaling.yarn_beta_slow": (1.0, VT.FLOAT32),
    }
    keys = {k for k in r.fields if not k.startswith("GGUF.")}
    assert keys == set(want) | {"general.size_label"}
    for key, (value, vtype) in want.items():
        got, types = _field(r, key)
        assert types == [vtype], key
        if vtype == VT.FLOAT32:
            assert np.float32(got) == np.float32(value), key
        else:
            assert got == value, key
    assert not any(k.startswith("tokenizer.") for k in r.fields)
    assert r.alignment == 32


@pytest.mark.parametrize("dense", list(DENSE))
def test_tensor_names_types_and_shapes(tiny, dense):
    tm = tiny(dense)
    cfg = tm.config
    r = GGUFReader(tm.gguf_path)
    shapes = expected_tensor_shapes(cfg)
    assert [t.name for t in r.tensors] == list(shapes)
    assert len(shapes) == 3 + 19 * cfg.n_layers
    dense_names = _dense_names(cfg.n_layers)
    for t in r.tensors:
        if t.name.endswith("_exps.weight"):
            want = QT.MXFP4
        elif t.name in dense_names:
            want = DENSE[dense]
        else:  # norms, biases (expert biases included), sinks, router
            want = QT.F32
        assert t.tensor_type == want, t.name
        # the reader reports ggml's ne (fastest axis first)
        assert tuple(int(d) for d in reversed(t.shape)) == shapes[t.name], t.name
        assert t.n_elements == math.prod(shapes[t.name])
        block, size = gguf.GGML_QUANT_SIZES[want]
        assert t.n_bytes == t.n_elements // block * size
        assert t.data_offset % 32 == 0


def _torch_param_as_gguf(model, cfg, name: str) -> np.ndarray:
    """The torch model's parameter for a GGUF tensor name, in GGUF layout."""
    sd = model.state_dict()

    def p(k):
        return sd[k].detach().numpy()

    if name == "token_embd.weight":
        return p("model.embed_tokens.weight")
    if name == "output_norm.weight":
        return p("model.norm.weight")
    if name == "output.weight":
        return p("lm_head.weight")
    _, i, rest = name.split(".", 2)
    q = f"model.layers.{i}."
    simple = {
        "attn_norm.weight": "input_layernorm.weight",
        "post_attention_norm.weight": "post_attention_layernorm.weight",
        "attn_sinks.weight": "self_attn.sinks",
        "ffn_gate_inp.weight": "mlp.router.weight",
        "ffn_gate_inp.bias": "mlp.router.bias",
        "ffn_down_exps.bias": "mlp.experts.down_proj_bias",
    }
    for g, t in (("attn_q", "q_proj"), ("attn_k", "k_proj"), ("attn_v", "v_proj"), ("attn_output", "o_proj")):
        simple[g + ".weight"] = f"self_attn.{t}.weight"
        simple[g + ".bias"] = f"self_attn.{t}.bias"
    if rest in simple:
        return p(q + simple[rest])
    gate_up = p(q + "mlp.experts.gate_up_proj")  # [E, H, 2F]
    gate_up_b = p(q + "mlp.experts.gate_up_proj_bias")  # [E, 2F]
    return {
        "ffn_gate_exps.weight": lambda: gate_up[:, :, 0::2].transpose(0, 2, 1),
        "ffn_up_exps.weight": lambda: gate_up[:, :, 1::2].transpose(0, 2, 1),
        "ffn_gate_exps.bias": lambda: gate_up_b[:, 0::2],
        "ffn_up_exps.bias": lambda: gate_up_b[:, 1::2],
        "ffn_down_exps.weight": lambda: p(q + "mlp.experts.down_proj").transpose(0, 2, 1),
    }[rest]()


@pytest.mark.parametrize("dense", list(DENSE))
def test_dequantized_file_equals_torch_parameters(tiny, dense):
    tm = tiny(dense)
    r = GGUFReader(tm.gguf_path)
    for t in r.tensors:
        shape = tuple(int(d) for d in reversed(t.shape))
        values = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape)
        torch_values = _torch_param_as_gguf(tm.torch_model, tm.config, t.name)
        assert torch_values.dtype == np.float32
        np.testing.assert_array_equal(values, torch_values, err_msg=t.name)
        np.testing.assert_array_equal(values, tm.weights[t.name], err_msg=t.name)
    # the dense weights really went through their type's rounding
    emb = tm.weights["token_embd.weight"]
    if dense == "bf16":
        assert np.all((emb.view(np.uint32) & 0xFFFF) == 0)
    elif dense == "f16":
        np.testing.assert_array_equal(emb.astype(np.float16).astype(np.float32), emb)
    elif dense == "q8_0":
        assert len(np.unique(emb[0, :32])) <= 255


def test_mxfp4_layout_matches_design(tiny):
    """Decode one expert tensor from the format description alone (docs/design.md §4.4)."""
    tm = tiny("bf16")
    r = GGUFReader(tm.gguf_path)
    t = next(t for t in r.tensors if t.name == "blk.1.ffn_down_exps.weight")
    raw = np.asarray(t.data, dtype=np.uint8).reshape(-1, 17)
    table = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], dtype=np.float64)
    e, qs = raw[:, 0].astype(np.int64), raw[:, 1:]
    nib = np.concatenate([qs & 0x0F, qs >> 4], axis=1)  # element j low, j+16 high
    vals = table[nib & 7] * np.where(nib & 8, -1.0, 1.0) * np.exp2(e - 127)[:, None]
    want = tm.weights["blk.1.ffn_down_exps.weight"].reshape(-1, 32)
    np.testing.assert_array_equal(vals.astype(np.float32), want)


# ---------------------------------------------------------------------------
# The torch model is the model of docs/design.md §2, and the weights matter
# ---------------------------------------------------------------------------


def test_transformers_matches_design_section_2(tiny):
    tm = tiny("q8_0")
    got = tm.reference_logits(IDS)
    assert got.shape == (len(IDS), tm.config.vocab_size) and got.dtype == np.float32
    ref = numpy_reference_logits(tm.config, tm.weights, IDS)
    np.testing.assert_allclose(got, ref, atol=2e-4, rtol=0)
    # the sliding window (8 < 48 tokens) and the sinks both change the result
    wide = numpy_reference_logits(
        type(tm.config)(**{**tm.config.__dict__, "sliding_window": 4096}), tm.weights, IDS
    )
    assert np.abs(wide - ref).max() > 0.05
    no_sinks = dict(tm.weights)
    for i in range(tm.config.n_layers):
        no_sinks[f"blk.{i}.attn_sinks.weight"] = np.full_like(no_sinks[f"blk.{i}.attn_sinks.weight"], -1e4)
    assert np.abs(numpy_reference_logits(tm.config, no_sinks, IDS) - ref).max() > 0.05
    # positions are 0..n-1 with no offset: a prefix gives the same logits
    np.testing.assert_allclose(tm.reference_logits(IDS[:10]), got[:10], atol=1e-4, rtol=0)


@pytest.mark.parametrize("dense", ["bf16", "q8_0"])
def test_clamp_and_routing_actually_happen(tiny, dense):
    tm = tiny(dense)
    s = tm.moe_stats(IDS)
    cfg = tm.config
    for layer in range(cfg.n_layers):
        # a visible fraction of routed gate/up values are beyond +-7
        assert 0.02 <= s["clamp_frac"][layer] <= 0.4, s
        # the top-k set changes from token to token and every expert is used
        assert s["distinct_sets"][layer] >= len(IDS) // 3, s
        assert s["experts_used"][layer] == cfg.n_experts, s
        assert s["router_std"][layer] > 1.5, s
    logits = tm.reference_logits(IDS)
    assert np.all(np.isfinite(logits))
    assert 0.5 < logits.std() < 20
    assert len(set(logits.argmax(-1).tolist())) > len(IDS) // 4


def test_seed_is_deterministic(tmp_path):
    a = build_tiny_model(TinySpec(n_layers=1, vocab=256, seed=5), tmp_path / "a")
    b = build_tiny_model(TinySpec(n_layers=1, vocab=256, seed=5), tmp_path / "b")
    assert a.gguf_path.read_bytes() == b.gguf_path.read_bytes()
    c = build_tiny_model(TinySpec(n_layers=1, vocab=256, seed=6), tmp_path / "c")
    assert a.gguf_path.read_bytes() != c.gguf_path.read_bytes()


# ---------------------------------------------------------------------------
# Encoders
# ---------------------------------------------------------------------------


def test_bf16_rounding_is_nearest_even():
    import torch

    rng = np.random.default_rng(0)
    x = rng.standard_normal(4096).astype(np.float32) * 10.0 ** rng.integers(-8, 8, 4096)
    # exact ties: dropped low 16 bits exactly 0x8000, kept bits of both parities
    kept = np.arange(128, dtype=np.uint32)
    ties = (((0x3F80 | kept) << 16) | 0x8000).view(np.float32)
    x = np.concatenate([x, ties, -ties, np.array([0.0, -0.0, np.inf, -np.inf, 3.0e38], dtype=np.float32)])
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(to_bf16_bits(x), want)
    nan = to_bf16_bits(np.array([np.nan], dtype=np.float32))
    assert (nan[0] & 0x7F80) == 0x7F80 and (nan[0] & 0x7F) != 0


def test_quantizers_round_trip():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 64)).astype(np.float32)
    q = quantize_q8_0(x)
    assert q.dtype == np.uint8 and q.shape == (3, 5, 68)
    np.testing.assert_allclose(gguf.quants.dequantize(q, QT.Q8_0), x, atol=np.abs(x).max() / 127)
    m = quantize_mxfp4(x)
    assert m.dtype == np.uint8 and m.shape == (3, 5, 34)
    back = gguf.quants.dequantize(m, QT.MXFP4)
    assert np.array_equal(quantize_mxfp4(back), m)  # representable values are fixed points


# ---------------------------------------------------------------------------
# Writer behaviour
# ---------------------------------------------------------------------------


def _small_cfg():
    return TinySpec(n_layers=1, n_experts=4, top_k=2, hidden=32, expert_ffn=32, n_heads=2,
                    n_kv_heads=1, head_dim=32, vocab=64).model_config()


def _float_arrays(cfg, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in expected_tensor_shapes(cfg).items()}


def test_tokenizer_keys(tmp_path):
    cfg = _small_cfg()
    tok = SimpleNamespace(
        tokens=[f"t{i}" for i in range(60)] + ["<|startoftext|>", "<|endoftext|>", "<|return|>", "Ġ"],
        token_types=np.array([1] * 60 + [3, 3, 3, 1], dtype=np.int32),
        merges=["t 1", "Ġ t"],
        bos_id=60, eos_id=62, padding_id=61, model="gpt2", pre="gpt-4o",
    )
    path = tmp_path / "tok.gguf"
    write_gpt_oss_gguf(path, cfg, gguf_tensors_from_arrays(cfg, _float_arrays(cfg)), tokenizer=tok)
    r = GGUFReader(path)
    assert _field(r, "tokenizer.ggml.model") == ("gpt2", [VT.STRING])
    assert _field(r, "tokenizer.ggml.pre") == ("gpt-4o", [VT.STRING])
    assert _field(r, "tokenizer.ggml.tokens") == (tok.tokens, [VT.ARRAY, VT.STRING])
    assert _field(r, "tokenizer.ggml.token_type") == (tok.token_types.tolist(), [VT.ARRAY, VT.INT32])
    assert _field(r, "tokenizer.ggml.merges") == (tok.merges, [VT.ARRAY, VT.STRING])
    assert _field(r, "tokenizer.ggml.bos_token_id") == (60, [VT.UINT32])
    assert _field(r, "tokenizer.ggml.eos_token_id") == (62, [VT.UINT32])
    assert _field(r, "tokenizer.ggml.padding_token_id") == (61, [VT.UINT32])
    short = SimpleNamespace(**{**tok.__dict__, "tokens": tok.tokens[:-1], "token_types": tok.token_types[:-1]})
    with pytest.raises(ValueError, match="vocabulary"):
        write_gpt_oss_gguf(tmp_path / "bad.gguf", cfg, gguf_tensors_from_arrays(cfg, _float_arrays(cfg)), tokenizer=short)
    assert not (tmp_path / "bad.gguf").exists()


def test_arrays_mapping_encodes_lazily_and_checks_names(tmp_path):
    cfg = _small_cfg()
    arrays = _float_arrays(cfg)
    calls = []
    arrays["output.weight"] = (lambda x=arrays["output.weight"]: calls.append(1) or x)
    tensors = gguf_tensors_from_arrays(cfg, arrays, dense="q8_0")
    assert calls == []  # nothing made before the write
    write_gpt_oss_gguf(tmp_path / "m.gguf", cfg, tensors, file_type=7, yarn_betas=False)
    assert calls == [1]
    r = GGUFReader(tmp_path / "m.gguf")
    assert _field(r, "general.file_type")[0] == 7
    assert "gpt-oss.rope.scaling.yarn_beta_fast" not in r.fields
    out = next(t for t in r.tensors if t.name == "output.weight")
    assert out.tensor_type == QT.Q8_0
    with pytest.raises(ValueError, match="missing"):
        gguf_tensors_from_arrays(cfg, {k: v for k, v in arrays.items() if k != "blk.0.attn_q.bias"})
    bad = dict(arrays)
    bad["blk.0.attn_q.bias"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="shape"):
        gguf_tensors_from_arrays(cfg, bad)


def _leftovers(folder):
    return sorted(os.listdir(folder))


def test_write_is_atomic_when_the_tensor_iterable_raises(tmp_path):
    cfg = _small_cfg()
    good = gguf_tensors_from_arrays(cfg, _float_arrays(cfg))

    def gen():
        yield from good[:5]
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        write_gpt_oss_gguf(tmp_path / "m.gguf", cfg, gen())
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("how", ["raises", "wrong_size", "interrupt"])
def test_write_is_atomic_when_data_fails_mid_write(tmp_path, how):
    cfg = _small_cfg()
    tensors = gguf_tensors_from_arrays(cfg, _float_arrays(cfg))
    victim = tensors[len(tensors) // 2]
    made = []

    def bad():
        made.append(victim.name)
        if how == "raises":
            raise OSError("disk on fire")
        if how == "interrupt":
            raise KeyboardInterrupt
        return np.zeros(3, dtype=np.float32)

    tensors[len(tensors) // 2] = GGUFTensor(victim.name, bad, victim.ggml_type, victim.shape)
    path = tmp_path / "m.gguf"
    path.write_bytes(b"previous file")
    err = {"raises": OSError, "wrong_size": ValueError, "interrupt": KeyboardInterrupt}[how]
    with pytest.raises(err):
        write_gpt_oss_gguf(path, cfg, tensors)
    assert made == [victim.name]  # it failed after earlier tensors were written
    assert _leftovers(tmp_path) == ["m.gguf"]
    assert path.read_bytes() == b"previous file"


def test_write_replaces_existing_file_and_rejects_bad_input(tmp_path):
    cfg = _small_cfg()
    path = tmp_path / "m.gguf"
    path.write_bytes(b"old")
    write_gpt_oss_gguf(path, cfg, gguf_tensors_from_arrays(cfg, _float_arrays(cfg)))
    assert path.read_bytes()[:4] == b"GGUF"
    assert _leftovers(tmp_path) == ["m.gguf"]
    t = gguf_tensors_from_arrays(cfg, _float_arrays(cfg))
    with pytest.raises(ValueError, match="duplicate"):
        write_gpt_oss_gguf(tmp_path / "d.gguf", cfg, t + t[:1])
    with pytest.raises(ValueError, match="block size"):
        write_gpt_oss_gguf(tmp_path / "d.gguf", cfg, [GGUFTensor("x", np.zeros(40, np.uint8), QT.Q8_0, (40,))])
    assert _leftovers(tmp_path) == ["m.gguf"]
