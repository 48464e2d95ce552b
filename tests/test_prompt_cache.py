"""Prompt-prefix snapshots on disk (gptoss_cli.prompt_cache): a new process that starts
from one gets exactly the tokens and logits it would have computed."""

from __future__ import annotations

import numpy as np

from gptoss_cli import prompt_cache as pcache
from gptoss_cli.generate import open_model
from gptoss_cli.prompt_cache import PromptCache, save_points
from gptoss_cli.sampling import SamplingParams


def _layers(seed: int = 0, n: int = 3):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((2, n, 4)).astype(np.float32), rng.standard_normal((2, n, 4)).astype(np.float32))
            for _ in range(2)]


def test_save_load_round_trip_and_mismatches(tmp_path):
    pc = PromptCache(tmp_path / "c", "model-a")
    tokens = [5, 6, 7]
    assert pc.load(tokens) is None and not pc.has(tokens)
    layers = _layers()
    assert pc.save(tokens, layers)
    back = pc.load(tokens)
    assert back is not None and all(np.array_equal(a, b) and np.array_equal(c, d) for (a, c), (b, d) in zip(back, layers))
    assert pc.load([5, 6]) is None  # another prefix
    assert PromptCache(tmp_path / "c", "model-b").load(tokens) is None  # another model
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.endswith(".tmp")]  # no temporary left behind


def test_damaged_entry_is_ignored_and_removed(tmp_path):
    pc = PromptCache(tmp_path, "m")
    pc.save([1, 2], _layers())
    (entry,) = tmp_path.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:100])
    assert pc.load([1, 2]) is None
    assert not entry.exists()


def test_limits(tmp_path, monkeypatch):
    pc = PromptCache(tmp_path, "m")
    monkeypatch.setattr(pcache, "MAX_ENTRY_BYTES", 100)
    assert not pc.save([1], _layers())  # too big: not written
    monkeypatch.setattr(pcache, "MAX_ENTRY_BYTES", 1 << 20)
    monkeypatch.setattr(pcache, "MAX_ENTRIES", 3)
    for i in range(5):
        assert pc.save([i], _layers(i))
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_save_points():
    END = 9
    assert save_points([1, 2, END, 3, 4, END, 5, 6], END) == [3, 7]  # after the system message; all but the last
    assert save_points([1, 2, 3], END) == [2]
    assert save_points([1], END) == []
    assert save_points([1, END, 2, END], END) == [2, 3]


def test_a_new_process_starts_from_the_snapshot(harmony_encoding, tiny_harmony_gguf, tmp_path):
    """Second 'process' (a fresh model): the system message and then the whole prompt come from
    disk, and the tokens equal those of a run without any cache."""
    from gptoss_cli.prompt import build_conversation

    greedy = SamplingParams(temperature=0)

    def fresh(cache: bool):
        lm = open_model(tiny_harmony_gguf, threads=1, context=512, prompt_cache=tmp_path if cache else False)
        return lm, lm.generator()

    lm0, plain = fresh(False)
    prompt = plain.render(build_conversation("Hello there"))
    want = plain.generate(prompt, greedy, max_tokens=12).run()

    lm1, first = fresh(True)
    g1 = first.generate(prompt, greedy, max_tokens=12)
    assert next(iter(g1)).cached_tokens == 0
    assert g1.run().tokens == want.tokens
    assert len(list(tmp_path.glob("*.npz"))) == 2  # after the system message, and all but the last token

    lm2, second = fresh(True)
    g2 = second.generate(prompt, greedy, max_tokens=12)
    assert next(iter(g2)).cached_tokens == len(prompt) - 1
    assert g2.run().tokens == want.tokens

    other = second.render(build_conversation("Something else entirely"))
    lm3, third = fresh(True)
    g3 = third.generate(other, greedy, max_tokens=12)
    system_end = save_points(other, third.tokenizer.token_id("<|end|>"))[0]
    assert next(iter(g3)).cached_tokens == system_end  # the shared system message
    assert g3.run().tokens == plain.generate(other, greedy, max_tokens=12).run().tokens
    for lm in (lm0, lm1, lm2, lm3):
        lm.close()


def test_snapshot_must_fit_the_cache(tiny_harmony_gguf):
    """A snapshot from a cache of another shape (a smaller context, a ring of other size) is refused."""
    import pytest

    from gptoss_cli import load_model

    m = load_model(tiny_harmony_gguf, threads=1, context=64)
    m.feed([1, 2, 3, 4, 5])
    snap = m.cache_snapshot()
    m.reset()
    m.load_cache_snapshot(5, snap)
    assert m.n_past == 5
    with pytest.raises(ValueError):
        m.load_cache_snapshot(6, snap)  # full layers hold 5 rows, not 6
    small = load_model(tiny_harmony_gguf, threads=1, context=4)
    with pytest.raises(ValueError):
        small.load_cache_snapshot(5, snap)  # more tokens than its context
    m.close()
    small.close()


def test_snapshot_too_big_is_not_copied(tiny_harmony_gguf):
    from gptoss_cli import load_model

    m = load_model(tiny_harmony_gguf, threads=1, context=64)
    m.feed([1, 2, 3])
    full = m.cache_snapshot()
    size = sum(k.nbytes + v.nbytes for k, v in full)
    assert m.cache_snapshot(max_bytes=size) is not None
    assert m.cache_snapshot(max_bytes=size - 1) is None
    m.close()


def test_later_chat_turns_do_not_write_snapshots(harmony_encoding, tiny_harmony_gguf, tmp_path):
    """A turn that continues the cache in memory saves nothing new (only fresh starts do)."""
    from gptoss_cli.prompt import build_conversation

    enc = harmony_encoding
    greedy = SamplingParams(temperature=0)
    lm = open_model(tiny_harmony_gguf, threads=1, context=512, prompt_cache=tmp_path)
    gen = lm.generator()
    p1 = gen.render(build_conversation("Hi"))
    gen.generate(p1, greedy, max_tokens=4).run()
    saved = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert len(saved) == 2
    p2 = p1 + enc.encode("<|channel|>final<|message|>Hello<|end|><|start|>user<|message|>Again<|end|>"
                         "<|start|>assistant", allow_special=True)
    g2 = gen.generate(p2, greedy, max_tokens=4)
    assert next(iter(g2)).cached_tokens == len(p1)
    g2.run()
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == saved
    lm.close()
