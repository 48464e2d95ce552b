"""Shared pytest fixtures. Each block is self-contained; append new blocks below."""

from __future__ import annotations

import pytest


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
