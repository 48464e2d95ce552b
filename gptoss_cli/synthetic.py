"""Real-shape gpt-oss GGUF files with random weights, for speed and memory measurements.

The bytes are generated directly in each type's storage form (random MXFP4
nibbles with realistic exponents, random Q8_0 blocks with small scales), so a
20b-shaped file is written tensor by tensor without quantizing anything and
without holding more than one tensor in memory.

A file of gpt-oss's vocabulary size carries the real o200k_harmony tokenizer,
copied from the bundled demo model, so prompts tokenize as they would with the
real model and `gptoss run` on the file measures a real start-up (prompt
lengths included). Other sizes get a stand-in tokenizer of the right size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .convert.gguf_writer import GGUFTensor, expected_tensor_shapes, tensor_type_for, write_gpt_oss_gguf

from gptoss_kernels import ggml_types

SHAPES: dict[str, ModelConfig] = {
    "20b": ModelConfig(
        n_layers=24, n_experts=32, n_experts_used=4, hidden=2880, expert_ffn=2880,
        n_heads=64, n_kv_heads=8, head_dim=64, vocab_size=201088,
    ),
    # A small model of the same structure, for tests and quick checks.
    "mini": ModelConfig(
        n_layers=2, n_experts=8, n_experts_used=4, hidden=256, expert_ffn=256,
        n_heads=8, n_kv_heads=2, head_dim=64, vocab_size=2048,
    ),
    "120b": ModelConfig(
        n_layers=36, n_experts=128, n_experts_used=4, hidden=2880, expert_ffn=2880,
        n_heads=64, n_kv_heads=8, head_dim=64, vocab_size=201088,
    ),
}


def shape_config(shape: str, layers: int | None = None) -> ModelConfig:
    """The config of a named shape, optionally cut to fewer layers."""
    from dataclasses import replace

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    cfg = SHAPES[shape]
    return replace(cfg, n_layers=layers) if layers else cfg


def _random_storage(rng: np.random.Generator, ggml_type: int, shape: tuple[int, ...], std: float) -> np.ndarray:
    *outer, cols = shape
    rows = int(np.prod(outer, dtype=np.int64)) if outer else 1
    if ggml_type == ggml_types.F32:
        return (rng.standard_normal(shape, dtype=np.float32) * std).astype(np.float32)
    if ggml_type == ggml_types.MXFP4:
        blocks = rng.integers(0, 256, size=(rows, cols // 32, 17), dtype=np.uint8)
        # E8M0 exponents around 2^-7..2^-5: elements up to 6 * 2^-5, like trained experts.
        blocks[:, :, 0] = rng.integers(120, 123, size=(rows, cols // 32), dtype=np.uint8)
        return blocks.reshape(*outer, cols // 32 * 17)
    if ggml_type == ggml_types.Q8_0:
        blocks = np.empty((rows, cols // 32, 34), dtype=np.uint8)
        scale = np.full((rows, cols // 32), std / 64, dtype=np.float16)
        blocks[:, :, :2] = scale.view(np.uint8).reshape(rows, cols // 32, 2)
        blocks[:, :, 2:] = rng.integers(-127, 128, size=(rows, cols // 32, 32), dtype=np.int8).view(np.uint8)
        return blocks.reshape(*outer, cols // 32 * 34)
    values = rng.standard_normal(shape, dtype=np.float32) * std
    if ggml_type == ggml_types.F16:
        return values.astype(np.float16)
    if ggml_type == ggml_types.BF16:
        return (values.view(np.uint32) >> 16).astype(np.uint16)
    raise ValueError(f"no synthetic data for type {ggml_types.type_name(ggml_type)}")


def synthetic_tokenizer(vocab_size: int):
    """A stand-in tokenizer of the right size: the 256 byte tokens, unique filler
    tokens, and o200k_harmony's special tokens at their real ids (so llama.cpp,
    which insists on a vocabulary, loads the file too). It tokenizes text byte by
    byte; it is for speed measurements, not for reading the output."""
    from .tokenizer_arrays import (
        TOKEN_TYPE_CONTROL,
        TOKEN_TYPE_NORMAL,
        TokenizerArrays,
        o200k_harmony_special_tokens,
        token_bytes_to_string,
    )

    first_special = min(199998, vocab_size)
    tokens = [token_bytes_to_string(bytes([b])) for b in range(min(256, first_special))]
    # One real merge (two spaces), since llama.cpp requires a merges list.
    tokens.append(token_bytes_to_string(b"  "))
    tokens += [f"<synthetic_{i}>" for i in range(len(tokens), first_special)]
    types = [TOKEN_TYPE_NORMAL] * len(tokens)
    specials = sorted(o200k_harmony_special_tokens(vocab_size, first_special).items(), key=lambda kv: kv[1])
    tokens += [name for name, _ in specials]
    types += [TOKEN_TYPE_CONTROL] * len(specials)
    return TokenizerArrays(
        tokens=tokens, token_types=types, merges=[" ".join([token_bytes_to_string(b" ")] * 2)], bos_id=199998 if vocab_size > 199998 else None,
        eos_id=200002 if vocab_size > 200002 else None, padding_id=199999 if vocab_size > 199999 else None,
    )


def shape_tokenizer(vocab_size: int):
    """The tokenizer a synthetic file of this vocabulary size carries: the real
    o200k_harmony one (from the bundled demo model) for gpt-oss's 201088 tokens,
    else :func:`synthetic_tokenizer`."""
    from .model_names import builtin_default_model
    from .tokenizer_arrays import O200K_VOCAB_SIZE, read_tokenizer_arrays

    demo = builtin_default_model()
    if vocab_size == O200K_VOCAB_SIZE and demo is not None:
        real = read_tokenizer_arrays(demo)
        if real.vocab_size == vocab_size:
            return real
    return synthetic_tokenizer(vocab_size)


def write_synthetic_gguf(
    path: str | os.PathLike[str], cfg: ModelConfig, dense: str = "q8_0", seed: int = 0, split_max_size: int = 0
) -> Path:
    """Write a random-weight GGUF of the given shape (ggml-org's layout: MXFP4 experts, `dense` 2-D weights),
    split into shards when split_max_size > 0; returns the (first shard's) path."""
    tensors = []
    for i, (name, shape) in enumerate(expected_tensor_shapes(cfg).items()):
        qt = int(tensor_type_for(name, len(shape), dense))
        std = 1.0 if "norm" in name else 0.02

        def make(qt=qt, shape=shape, std=std, i=i) -> np.ndarray:
            return _random_storage(np.random.default_rng([seed, i]), qt, shape, std)

        tensors.append(GGUFTensor(name, make, qt, shape))
    return write_gpt_oss_gguf(
        path, cfg, tensors, tokenizer=shape_tokenizer(cfg.vocab_size), name="gpt-oss synthetic", fsync=False,
        split_max_size=split_max_size,
    )
