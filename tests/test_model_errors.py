"""load_model refuses unusable files with a specific, readable error, before any kernel runs."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from tiny_models import TinySpec, build_tiny_model

from gptoss_cli import load_model
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
        m.feed(list(range(17)))
    with pytest.raises(InputError, match="out of range"):
        m.feed([256])
