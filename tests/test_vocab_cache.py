"""The tokenizer's vocabulary kept on disk (gptoss_cli.vocab_cache): what comes back is
what the file gives, and anything damaged, foreign or inconsistent is deleted, rebuilt and
never reaches the tokenizer."""

from __future__ import annotations

import dataclasses
import marshal
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


def _values(p):
    return tuple(getattr(p, f.name) for f in dataclasses.fields(p))


def _write(tmp_path, key, values, *, saved_key=None):
    """An entry as save writes it (header, digest recomputed) holding `values`: well formed, maybe wrong."""
    payload = marshal.dumps(values)
    vocab_cache.entry_path(tmp_path, key).write_bytes(vocab_cache._header(saved_key or key, payload) + payload)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _header_len(data: bytes) -> int:
    return len(vocab_cache._MAGIC) + len(b"\n".join(data[len(vocab_cache._MAGIC):].split(b"\n", 3)[:3])) + 1


def _damages(parts):
    """name -> (how to damage a good entry of `parts` under key "k", whether it is merely stale)."""
    ranks_without_a = {b: i for b, i in parts.ranks.items() if b != b"A"}
    a_id = parts.ranks[b"A"]

    def replaced(**changes):
        return _values(dataclasses.replace(parts, **changes))

    first_special = min(parts.special.values())
    return {
        "magic": (lambda d, e: e.write_bytes(b"X" + e.read_bytes()[1:]), False),
        "empty": (lambda d, e: e.write_bytes(b""), False),
        "not ours at all": (lambda d, e: e.write_bytes(b"not a vocabulary\n"), False),
        "header cut short": (lambda d, e: e.write_bytes(e.read_bytes()[: len(vocab_cache._MAGIC) + 3]), False),
        "truncated": (lambda d, e: e.write_bytes(e.read_bytes()[:-1000]), False),
        "flipped byte in the data": (lambda d, e: e.write_bytes(_flip(e.read_bytes(), e.stat().st_size // 2)), False),
        "flipped byte in the digest": (lambda d, e: e.write_bytes(_flip(e.read_bytes(), _header_len(e.read_bytes()) - 5)),
                                       False),
        "another key inside": (lambda d, e: _write(d, "k", _values(parts), saved_key="other"), False),
        "no token for a byte": (lambda d, e: _write(d, "k", replaced(ranks=ranks_without_a,
                                                                      unused=parts.unused | {a_id})), False),
        "an id twice": (lambda d, e: _write(d, "k", replaced(
            ranks={**parts.ranks, b"\xff\xfe\xfd": first_special})), False),
        "a hole in the ids": (lambda d, e: _write(d, "k", replaced(vocab_size=parts.vocab_size + 1)), False),
        "too few ids": (lambda d, e: _write(d, "k", replaced(vocab_size=parts.vocab_size - 1)), False),
        "a negative id": (lambda d, e: _write(d, "k", replaced(
            special={s: -1 if i == first_special else i for s, i in parts.special.items()})), False),
        "ranks as a list": (lambda d, e: _write(d, "k", replaced(ranks=list(parts.ranks.items()))), False),
        "unused as a set": (lambda d, e: _write(d, "k", replaced(unused=set(parts.unused))), False),
        "a str among the ranks": (lambda d, e: _write(d, "k", replaced(ranks={**parts.ranks, "x": parts.vocab_size},
                                                                           vocab_size=parts.vocab_size + 1)), False),
        "a float id": (lambda d, e: _write(d, "k", replaced(special={**parts.special, "<|end|>": 0.5})), False),
        "bos as a string": (lambda d, e: _write(d, "k", replaced(bos_id="1")), False),
        "unknown pre-tokenizer": (lambda d, e: _write(d, "k", replaced(pre="llama3")), False),
        "one part missing": (lambda d, e: _write(d, "k", _values(parts)[:-1]), False),
        "not a tuple": (lambda d, e: _write(d, "k", 12345), False),
        "another Python": (lambda d, e: e.write_bytes(e.read_bytes().replace(
            vocab_cache._tag().encode(), b"2|2.7|2", 1)), True),
        "the previous version's entry": (lambda d, e: e.write_bytes(
            marshal.dumps(("1|" + vocab_cache._tag().split("|", 1)[1], "k", _values(parts)))), True),
    }


DAMAGES = [
    "magic", "empty", "not ours at all", "header cut short", "truncated", "flipped byte in the data",
    "flipped byte in the digest", "another key inside", "no token for a byte", "an id twice", "a hole in the ids",
    "too few ids", "a negative id", "ranks as a list", "unused as a set", "a str among the ranks", "a float id",
    "bos as a string", "unknown pre-tokenizer", "one part missing", "not a tuple", "another Python",
    "the previous version's entry",
]


@pytest.fixture(scope="module")
def damages(parts):
    return _damages(parts)


@pytest.mark.parametrize("damage", DAMAGES)
def test_bad_entry_is_rejected_removed_and_rebuilt(parts, damages, tmp_path, damage):
    damage_it, stale = damages[damage]
    notes: list[str] = []
    vocab_cache.save(tmp_path, "k", parts)
    entry = vocab_cache.entry_path(tmp_path, "k")
    damage_it(tmp_path, entry)
    assert vocab_cache.load(tmp_path, "k", notice=notes.append) is None
    assert not entry.exists()
    if stale:
        assert notes == []  # another version's entry is no damage
    else:
        assert len(notes) == 1 and str(entry) in notes[0] and "damaged" in notes[0]
    assert vocab_cache.load(tmp_path, "k", notice=notes.append) is None and len(notes) <= 1  # told once
    vocab_cache.save(tmp_path, "k", parts)
    assert vocab_cache.load(tmp_path, "k", notice=notes.append) == parts and len(notes) <= 1


def test_damage_cases_are_all_tested(damages):
    assert sorted(damages) == sorted(DAMAGES)


def test_a_missing_byte_would_make_the_tokenizer_panic(parts):
    """Why load checks the parts: tiktoken panics (a BaseException) on such a vocabulary."""
    bad = dataclasses.replace(parts, ranks={b: i for b, i in parts.ranks.items() if b != b"A"},
                              unused=parts.unused | {parts.ranks[b"A"]})
    assert vocab_cache.parts_problem(bad) == "no token for the byte 0x41"
    with pytest.raises(BaseException, match="no entry found"):
        Tokenizer(bad).encode("A")


def test_every_check_accepts_the_real_vocabulary(parts):
    assert vocab_cache.parts_problem(parts) is None


def test_what_load_would_refuse_is_not_saved(parts, tmp_path):
    vocab_cache.save(tmp_path, "k", dataclasses.replace(parts, vocab_size=parts.vocab_size + 1))
    assert list(tmp_path.iterdir()) == []


def test_foreign_entries_are_ignored(parts, tmp_path, monkeypatch):
    assert vocab_cache.load(tmp_path, "none") is None
    vocab_cache.save(tmp_path, "k", parts)
    monkeypatch.setattr(vocab_cache, "FORMAT", vocab_cache.FORMAT + 1)
    assert vocab_cache.load(tmp_path, "k") is None  # another format
    assert list(tmp_path.iterdir()) == []


def test_oldest_entries_are_removed(parts, tmp_path, monkeypatch):
    monkeypatch.setattr(vocab_cache, "MAX_ENTRIES", 2)
    for i, key in enumerate(("a", "b", "c")):
        vocab_cache.save(tmp_path, key, parts)
        os.utime(vocab_cache.entry_path(tmp_path, key), (1000 + i, 1000 + i))
    vocab_cache.save(tmp_path, "d", parts)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.vocab", "d.vocab"]


def test_unwritable_directory_is_skipped(parts, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    vocab_cache.save(blocker / "sub", "k", parts)  # a file where the directory should be: no error
    assert vocab_cache.load(blocker / "sub", "k") is None


def test_a_model_reads_the_vocabulary_from_the_cache(tiny_harmony_gguf, tmp_path, monkeypatch):
    from gptoss_cli import tokenizer
    from gptoss_cli.loader import load_model

    first = load_model(tiny_harmony_gguf, threads=1, context=64, prompt_cache=tmp_path)
    text = "a short text, with <|end|> in it"
    want = first.tokenizer.encode(text, allow_special=True)
    assert len(list(tmp_path.glob("*.vocab"))) == 1

    def refuse(arrays):
        raise AssertionError("the vocabulary was built from the file again")

    monkeypatch.setattr(tokenizer, "vocab_parts", refuse)
    second = load_model(tiny_harmony_gguf, threads=1, context=64, prompt_cache=tmp_path)
    assert second.tokenizer.encode(text, allow_special=True) == want
    third = load_model(tiny_harmony_gguf, threads=1, context=64)
    with pytest.raises(AssertionError):
        third.tokenizer  # noqa: B018 - without a cache it builds from the file
    for lm in (first, second, third):
        lm.close()


def test_a_damaged_vocabulary_is_rebuilt_by_the_model(tiny_harmony_gguf, tmp_path):
    """A well-formed entry without the byte 'A' (digest recomputed) would panic in tiktoken: the
    model's tokenizer reads the file instead, and the entry is good again afterwards."""
    from gptoss_cli.loader import load_model

    first = load_model(tiny_harmony_gguf, threads=1, context=64, prompt_cache=tmp_path)
    text = "A short text"
    want = first.tokenizer.encode(text)
    (entry,) = tmp_path.glob("*.vocab")
    good = vocab_cache.load(tmp_path, entry.stem)
    bad = dataclasses.replace(good, ranks={b: i for b, i in good.ranks.items() if b != b"A"},
                              unused=good.unused | {good.ranks[b"A"]})
    _write(tmp_path, entry.stem, _values(bad))
    second = load_model(tiny_harmony_gguf, threads=1, context=64, prompt_cache=tmp_path)
    assert second.tokenizer.encode(text) == want
    assert vocab_cache.load(tmp_path, entry.stem) == good
    first.close()
    second.close()
