"""Shared pytest fixtures. Each block is self-contained; append new blocks below."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# --- the bare name `kernels` ------------------------------------------------------
# Our kernels/ directory is installed as `gptoss_kernels`. The bare name belongs to
# Hugging Face's `kernels` package, which transformers >= 5.25 depends on and
# imports. `python -m pytest` puts the repository root first on sys.path, where
# kernels/ would shadow it and break `import transformers`; drop that entry.
_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _ROOT]


# --- tokenizer and Harmony (tests/o200k.py) ---------------------------------------
# The real o200k_harmony tokenizer, offline: a tokenizer-only GGUF written once
# per session, our Tokenizer / HarmonyEncoding over it, and the two oracles
# (tiktoken built from the bpe-openai wheel's ranks, openai-harmony offline).


@pytest.fixture(scope="session")
def o200k_gguf(tmp_path_factory):
    """Path of a GGUF holding only the o200k_harmony tokenizer keys (as llama.cpp writes them)."""
    from o200k import write_tokenizer_gguf

    path = tmp_path_factory.mktemp("o200k") / "o200k-tokenizer.gguf"
    write_tokenizer_gguf(str(path))
    return path


@pytest.fixture(scope="session")
def o200k_tokenizer(o200k_gguf):
    from gptoss_cli.tokenizer import Tokenizer

    return Tokenizer.from_gguf(o200k_gguf)


@pytest.fixture(scope="session")
def harmony_encoding(o200k_tokenizer):
    from gptoss_cli.harmony import HarmonyEncoding

    return HarmonyEncoding(o200k_tokenizer)


@pytest.fixture(scope="session")
def tiktoken_oracle():
    from o200k import tiktoken_oracle

    return tiktoken_oracle()


@pytest.fixture(scope="session")
def harmony_oracle():
    from o200k import harmony_encoding

    return harmony_encoding()


# --- end tokenizer and Harmony ------------------------------------------------------


# --- tiny gpt-oss model with the real tokenizer (run / chat CLI tests) -------------------
# Random weights (so garbage text), the genuine o200k_harmony vocabulary, written once
# per session without building the torch reference (no parity checks need it here).

TINY_HARMONY_CONTEXT = 2048


@pytest.fixture(scope="session")
def tiny_harmony_gguf(tmp_path_factory):
    """Path of a tiny random gpt-oss GGUF (2 layers, vocab 201088) with the real tokenizer."""
    from o200k import o200k_arrays
    from tiny_models import TinySpec, _float_weights

    from gptoss_cli.convert.gguf_writer import GGUFTensor, encode_tensor, tensor_type_for, write_gpt_oss_gguf

    spec = TinySpec(n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=2,
                    head_dim=16, vocab=201088, sliding_window=8, context_length=TINY_HARMONY_CONTEXT, seed=11)
    cfg = spec.model_config()
    tensors = []
    for name, x in _float_weights(spec, cfg).items():
        qt = tensor_type_for(name, x.ndim, spec.dense)
        tensors.append(GGUFTensor(name, encode_tensor(x, qt), qt, x.shape))
    path = tmp_path_factory.mktemp("tiny_harmony") / "tiny-harmony.gguf"
    write_gpt_oss_gguf(path, cfg, tensors, tokenizer=o200k_arrays(), name="tiny-harmony", fsync=False)
    return path


# --- end tiny gpt-oss model with the real tokenizer ---------------------------------------


# --- SIMD kernel paths (tests/test_kernels_q8_fast.py, tests/test_kernels_gemm_t.py) -------


def _fast_kernel_paths() -> list[str]:
    from gptoss_kernels import simd

    return [p for p in simd.supported_isas(simd.target_features()) if p != "portable"]


@pytest.fixture(params=_fast_kernel_paths() or ["none"])
def path(request):
    """Each SIMD kernel path this CPU runs, installed for every weight type in turn."""
    import gptoss_kernels as gk

    if request.param == "none":
        pytest.skip("no SIMD path on this CPU")
    old = gk.set_kernel_path(request.param)
    yield request.param
    gk.set_kernel_path(old)


# --- end SIMD kernel paths ------------------------------------------------------------
