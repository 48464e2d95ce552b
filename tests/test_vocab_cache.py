"""The tokenizer's vocabulary kept on disk (gptoss_cli.vocab_cache): what comes back is
what the file gives, and anything damaged or foreign is ignored."""

from __future__ import annotations

import os

import pytest

from gptoss_cli import vocab_cache
from gptoss_cli.tokenizer import Tokenizer, vocab_parts
from gptoss_cli.tokenizer_arrays import read_tokenizer_arrays


@pytest.fixture(scope="module")
def parts(o200k_gguf):
    return vocab_parts(read_tokenizer_arrays(o200k_gguf, with_merges=False))


def test_round_trip_gives_the_same_tokenizer(parts, o200k_tokenizer, tmp_path):
    vocab_cache.save(tmp_path, "k1", parts)
    back = vocab_cache.load(tmp_path, "k1")
    assert back == parts
    tok = Tokenizer(back)
    text = "Hello, wörld! 12345 <|start|> \u4f60\u597d  \n\n\tdone"
    assert tok.encode(text) == o200k_tokenizer.encode(text)
    assert tok.encode(text, allow_special=True) == o200k_tokenizer.encode(text, allow_special=True)
    assert tok.vocab_size == o200k_tokenizer.vocab_size and tok.eos_id == o200k_tokenizer.eos_id
    assert [p.name for p in tmp_path.iterdir()] == ["k1.vocab"]  # no temporary left behind


def test_foreign_or_damaged_entries_are_ignored(parts, tmp_path, monkeypatch):
    assert vocab_cache.load(tmp_path, "none") is None
    vocab_cache.save(tmp_path, "k", parts)
    entry = vocab_cache.entry_path(tmp_path, "k")
    os.replace(entry, vocab_cache.entry_path(tmp_path, "other"))
    assert vocab_cache.load(tmp_path, "other") is None  # saved under another key
    vocab_cache.save(tmp_path, "k", parts)
    monkeypatch.setattr(vocab_cache, "FORMAT", vocab_cache.FORMAT + 1)
    assert vocab_cache.load(tmp_path, "k") is None  # another format
    monkeypatch.undo()
    data = entry.read_bytes()
    for damaged in (data[: len(data) // 2], b"", b"not marshal at all", data[:-1]):
        entry.write_bytes(damaged)
        assert vocab_cache.load(tmp_path, "k") is None


def test_unwritable_directory_is_skipped(parts, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    vocab_cache.save(blocker / "sub", "k", parts)  # a file where the directory should be: no error
    assert vocab_cache.load(blocker / "sub", "k") is None


def test_open_model_reads_the_vocabulary_from_the_cache(tiny_harmony_gguf, tmp_path, monkeypatch):
    from gptoss_cli import tokenizer
    from gptoss_cli.generate import open_model

    first = open_model(tiny_harmony_gguf, threads=1, context=64, prompt_cache=tmp_path)
    assert len(list(tmp_path.glob("*.vocab"))) == 1

    def refuse(arrays):
        raise AssertionError("the vocabulary was built from the file again")

    monkeypatch.setattr(tokenizer, "vocab_parts", refuse)
    second = open_model(tiny_harmony_gguf, threads=1, context=64, prompt_cache=tmp_path)
    text = "a short text, with <|end|> in it"
    assert second.tokenizer.encode(text, allow_special=True) == first.tokenizer.encode(text, allow_special=True)
    with pytest.raises(AssertionError):
        open_model(tiny_harmony_gguf, threads=1, context=64)  # without a cache it builds from the file
    first.close()
    second.close()
