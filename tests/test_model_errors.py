"""load_model refuses unusable files with a specific, readable error, before any kernel runs."""

from __future__ import annotations

import dataclasses
import math
import re
import struct
from pathlib import Path
from types import SimpleNamespace

import gguf
import numpy as np
import pytest

from tiny_models import TinySpec, build_tiny_model

from gptoss_cli import load_model
from gptoss_cli.config import MAX_CONTEXT_LENGTH
from gptoss_cli.convert.gguf_writer import GGUFTensor, gguf_tensors_from_arrays, write_gpt_oss_gguf
from gptoss_cli.errors import InputError, ModelFileError, UnsupportedTensorType

SPEC = TinySpec(n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=2,
                head_dim=16, vocab=256, sliding_window=8, context_length=512, seed=5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(SPEC, tmp_path_factory.mktemp("err"))


def _write(tiny, path: Path, arrays: dict) -> Path:
    tensors = gguf_tensors_from_arrays(tiny.config, arrays, strict=False)
    return write_gpt_oss_gguf(path, tiny.config, tensors)


def test_valid_file_loads(tiny):
    m = load_model(tiny.gguf_path)
    assert m.config.n_layers == 2 and m.config.vocab_size == 256


def test_truncated_file(tiny, tmp_path):
    data = tiny.gguf_path.read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFileError, match="truncated GGUF file"):
        load_model(p)


def test_not_a_gguf(tmp_path):
    p = tmp_path / "model.gguf"
    p.write_text("definitely not a model\n" * 20)
    with pytest.raises(ModelFileError, match="not a GGUF file"):
        load_model(p)


def test_other_architecture_is_named(tmp_path):
    p = tmp_path / "llama.gguf"
    w = gguf.GGUFWriter(str(p), "llama")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ModelFileError, match="architecture is 'llama'"):
        load_model(p)


def test_missing_key(tiny, tmp_path):
    data = tiny.gguf_path.read_bytes()
    key = b"gpt-oss.expert_count"
    assert data.count(key) == 1
    p = tmp_path / "nokey.gguf"
    p.write_bytes(data.replace(key, b"gpt-oss.expert_coun_"))
    with pytest.raises(ModelFileError, match="missing metadata key gpt-oss.expert_count"):
        load_model(p)


def test_missing_tensor(tiny, tmp_path):
    arrays = {k: v for k, v in tiny.weights.items() if k != "blk.1.attn_sinks.weight"}
    p = _write(tiny, tmp_path / "missing.gguf", arrays)
    with pytest.raises(ModelFileError, match="missing tensor blk.1.attn_sinks.weight"):
        load_model(p)


def test_wrong_shape(tiny, tmp_path):
    tensors = gguf_tensors_from_arrays(tiny.config, tiny.weights)
    i = next(i for i, t in enumerate(tensors) if t.name == "blk.0.attn_q.bias")
    tensors[i] = GGUFTensor("blk.0.attn_q.bias", np.zeros(32, dtype=np.float32), gguf.GGMLQuantizationType.F32, (32,))
    p = write_gpt_oss_gguf(tmp_path / "shape.gguf", tiny.config, tensors)
    with pytest.raises(ModelFileError, match=r"blk.0.attn_q.bias has shape \[32\], expected \[64\]"):
        load_model(p)


def test_unsupported_type_is_named(tiny, tmp_path):
    arrays = dict(tiny.weights)
    q = arrays["blk.0.attn_q.weight"]
    raw = gguf.quants.quantize(q.astype(np.float32), gguf.GGMLQuantizationType.Q4_0)
    arrays["blk.0.attn_q.weight"] = GGUFTensor("blk.0.attn_q.weight", raw, gguf.GGMLQuantizationType.Q4_0, q.shape)
    p = _write(tiny, tmp_path / "q4.gguf", arrays)
    with pytest.raises(UnsupportedTensorType, match="blk.0.attn_q.weight has type Q4_0"):
        load_model(p)


def test_impossible_options(tiny):
    with pytest.raises(InputError, match="threads"):
        load_model(tiny.gguf_path, threads=0)
    with pytest.raises(InputError, match="context size"):
        load_model(tiny.gguf_path, context=0)


def test_context_overflow_and_bad_ids(tiny):
    m = load_model(tiny.gguf_path, context=16)
    with pytest.raises(InputError, match="exceed the context size 16"):
        m.forward(list(range(17)), m.new_cache())
    with pytest.raises(InputError, match="out of range"):
        m.forward([256], m.new_cache())


# --- impossible values (issue 20): refused at load, by key or tensor name ---


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("rms_eps", 0.0, "layer_norm_rms_epsilon must be a positive finite number, got 0.0"),
        ("rms_eps", math.inf, "layer_norm_rms_epsilon must be a positive finite number, got inf"),
        ("rope_base", 1.0, "freq_base must be a finite number above 1, got 1.0"),
        ("rope_base", math.nan, "freq_base must be a finite number above 1, got nan"),
        ("rope_scaling_factor", -2.0, "rope.scaling.factor must be a positive finite number"),
        ("yarn_beta_fast", math.nan, "yarn_beta_fast must be a positive finite number, got nan"),
        ("yarn_beta_slow", 0.0, "yarn_beta_slow must be a positive finite number, got 0.0"),
        ("rope_original_context", 0, "original_context_length must be positive"),
        ("context_length", 2**32 - 1, "context_length 4294967295 is larger than gptoss supports"),
    ],
)
def test_config_refuses_impossible_constants(field, value, message):
    cfg = dataclasses.replace(SPEC.model_config(), **{field: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        cfg.validate()


def test_context_bound_leaves_room_above_gpt_oss():
    assert MAX_CONTEXT_LENGTH >= 8 * 131072
    dataclasses.replace(SPEC.model_config(), context_length=MAX_CONTEXT_LENGTH).validate()


def _with_value(data: bytes, key: str, vtype: gguf.GGUFValueType, value) -> bytes:
    """The file with a scalar key's type and value replaced (same size, so nothing after it moves)."""
    raw = key.encode()
    pos = data.index(struct.pack("<Q", len(raw)) + raw) + 8 + len(raw)
    fmt = {gguf.GGUFValueType.UINT32: "<I", gguf.GGUFValueType.FLOAT32: "<f", gguf.GGUFValueType.INT32: "<i"}[vtype]
    return data[:pos] + struct.pack("<I", vtype) + struct.pack(fmt, value) + data[pos + 8 :]


@pytest.mark.parametrize(
    "key, vtype, value, message",
    [
        ("gpt-oss.context_length", gguf.GGUFValueType.FLOAT32, math.nan,
         "context_length must be an integer, got float nan"),
        ("gpt-oss.rope.freq_base", gguf.GGUFValueType.UINT32, 150000, "freq_base must be a float, got int 150000"),
        ("gpt-oss.attention.value_length", gguf.GGUFValueType.FLOAT32, 16.0, "value_length must be an integer"),
        ("gpt-oss.rope.freq_base", gguf.GGUFValueType.FLOAT32, math.inf, "freq_base must be a finite number above 1"),
        ("gpt-oss.context_length", gguf.GGUFValueType.UINT32, 2**32 - 1, "context_length 4294967295 is larger"),
    ],
)
def test_metadata_type_and_value_refused_by_key(tiny, tmp_path, key, vtype, value, message):
    p = tmp_path / "bad.gguf"
    p.write_bytes(_with_value(tiny.gguf_path.read_bytes(), key, vtype, value))
    with pytest.raises(ModelFileError, match=re.escape(message)):
        load_model(p)


@pytest.mark.parametrize("key", ["bos_id", "eos_id", "padding_id"])
def test_token_ids_outside_the_vocabulary(tiny, tmp_path, key):
    tok = SimpleNamespace(tokens=[f"t{i}" for i in range(SPEC.vocab)], token_types=[1] * SPEC.vocab,
                          bos_id=1, eos_id=2, padding_id=3, model="gpt2", pre="gpt-4o")
    setattr(tok, key, SPEC.vocab)
    tensors = gguf_tensors_from_arrays(tiny.config, tiny.weights, strict=False)
    p = write_gpt_oss_gguf(tmp_path / "ids.gguf", tiny.config, tensors, tokenizer=tok)
    gguf_key = {"bos_id": "bos_token_id", "eos_id": "eos_token_id", "padding_id": "padding_token_id"}[key]
    with pytest.raises(ModelFileError, match=f"tokenizer.ggml.{gguf_key} must be a token id in 0..255, got int 256"):
        load_model(p)


def test_token_list_of_another_length(tiny, tmp_path):
    extra = [("tokenizer.ggml.tokens", ["a", "b"], gguf.GGUFValueType.ARRAY)]
    tensors = gguf_tensors_from_arrays(tiny.config, tiny.weights, strict=False)
    p = write_gpt_oss_gguf(tmp_path / "toks.gguf", tiny.config, tensors, extra_metadata=extra)
    with pytest.raises(ModelFileError, match="tokenizer.ggml.tokens must be 256 strings .* got an array of 2"):
        load_model(p)


@pytest.mark.parametrize("name", ["blk.1.attn_norm.weight", "blk.0.attn_sinks.weight", "output_norm.weight"])
def test_non_finite_small_tensor_is_named(tiny, tmp_path, name):
    arrays = dict(tiny.weights)
    bad = arrays[name].copy()
    bad[1] = np.nan
    arrays[name] = bad
    p = _write(tiny, tmp_path / "nan.gguf", arrays)
    with pytest.raises(ModelFileError, match=f"tensor {re.escape(name)} holds NaN or infinite values"):
        load_model(p)


def test_layers_beyond_block_count(tiny, tmp_path):
    p = tmp_path / "blocks.gguf"
    p.write_bytes(_with_value(tiny.gguf_path.read_bytes(), "gpt-oss.block_count", gguf.GGUFValueType.UINT32, 1))
    with pytest.raises(ModelFileError, match="tensor blk.1.* belongs to layer 1, but gpt-oss.block_count is 1"):
        load_model(p)
