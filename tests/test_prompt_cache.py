"""Prompt-prefix snapshots on disk (gptoss_cli.prompt_cache): a new process that starts
from one gets exactly the tokens and logits it would have computed."""

from __future__ import annotations

import numpy as np
import pytest

from gptoss_cli import prompt_cache as pcache
from gptoss_cli.loader import load_model
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
    assert back is not None and len(back) == len(layers)
    for (k, v), (bk, bv) in zip(layers, back):  # bit for bit
        assert bk.dtype == k.dtype and bk.shape == k.shape and bk.tobytes() == k.tobytes()
        assert bv.dtype == v.dtype and bv.shape == v.shape and bv.tobytes() == v.tobytes()
    assert pc.load([5, 6]) is None  # another prefix
    assert PromptCache(tmp_path / "c", "model-b").load(tokens) is None  # another model
    assert [p.name for p in (tmp_path / "c").iterdir()] == [pc._path(tokens).name]  # no temporary left behind


TOKENS = [1, 2, 3]


def _write_entry(pc: PromptCache, arrays_of, *, digest: bytes | None = None, drop=(), **extra):
    """An entry as save writes it, with its digest recomputed over `arrays_of` (layers) unless given, and
    members dropped or replaced: a damaged file that is still well formed."""
    tokens = np.asarray(TOKENS, dtype=np.int64)
    arrays = {
        "format": np.asarray(pcache.FORMAT),
        "key": np.asarray(pc.key),
        "tokens": tokens,
        "layers": np.asarray(len(arrays_of)),
        "digest": np.frombuffer(digest or pcache._digest(pc.key, tokens, arrays_of), dtype=np.uint8),
    }
    for i, (k, v) in enumerate(arrays_of):
        arrays[f"k{i}"], arrays[f"v{i}"] = k, v
    arrays.update(extra)
    for name in drop:
        del arrays[name]
    pc.dir.mkdir(parents=True, exist_ok=True)
    with open(pc._path(TOKENS), "wb") as f:
        np.savez(f, **arrays)


def _flip_byte_in_k0(path):
    """Flip one byte near the end of layer 0's keys (past the .npy header) in the file itself."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = z.getinfo("k0.npy")
    data = bytearray(path.read_bytes())
    at = info.header_offset
    name_len = int.from_bytes(data[at + 26: at + 28], "little")  # the local file header's lengths
    extra_len = int.from_bytes(data[at + 28: at + 30], "little")
    data[at + 30 + name_len + extra_len + info.compress_size - 8] ^= 0x40
    path.write_bytes(bytes(data))


def _nan_layers():
    layers = _layers()
    layers[1][0][0, 1, 2] = np.nan
    return layers


def _damages():
    """name -> how to damage a good entry of _layers() at TOKENS."""
    good = _layers()
    k0, v0 = good[0]
    return {
        "header": lambda pc, path: path.write_bytes(b"\0" * 8 + path.read_bytes()[8:]),
        "truncated": lambda pc, path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
        "empty": lambda pc, path: path.write_bytes(b""),
        "flipped byte": lambda pc, path: _flip_byte_in_k0(path),
        "changed value, old digest": lambda pc, path: _write_entry(
            pc, [(k0 + np.float32(1e-3), v0), good[1]], digest=pcache._digest(pc.key, np.asarray(TOKENS), good)),
        "wrong digest": lambda pc, path: _write_entry(pc, good, digest=b"\x01" * 32),
        "digest missing a byte": lambda pc, path: _write_entry(pc, good, digest=b"\x01" * 31),
        "NaN, digest recomputed": lambda pc, path: _write_entry(pc, _nan_layers()),
        "infinity, digest recomputed": lambda pc, path: _write_entry(
            pc, [(np.full_like(k0, np.inf), v0), good[1]]),
        "k and v of other shapes": lambda pc, path: _write_entry(pc, [(k0, v0[:, :2]), good[1]]),
        "no rows": lambda pc, path: _write_entry(pc, [(k0[:, :0], v0[:, :0]), good[1]]),
        "two dimensions": lambda pc, path: _write_entry(pc, [(k0[0], v0[0]), good[1]]),
        "v of other heads": lambda pc, path: _write_entry(pc, [good[0], (k0, v0[:1])]),
        "float64": lambda pc, path: _write_entry(pc, [(k0.astype(np.float64), v0.astype(np.float64)), good[1]]),
        "no layers": lambda pc, path: _write_entry(pc, []),
        "a layer missing": lambda pc, path: _write_entry(pc, good, drop=("v1",)),
        "digest missing": lambda pc, path: _write_entry(pc, good, drop=("digest",)),
        "format missing": lambda pc, path: _write_entry(pc, good, drop=("format",)),
        "an extra array": lambda pc, path: _write_entry(pc, good, extra=np.zeros(3)),
        "layer count huge": lambda pc, path: _write_entry(pc, good, layers=np.asarray(10**9)),
        "another key inside": lambda pc, path: _write_entry(pc, good, key=np.asarray("other-model")),
        "other tokens inside": lambda pc, path: _write_entry(pc, good, tokens=np.asarray([1, 2, 4], np.int64)),
        "tokens of another dtype": lambda pc, path: _write_entry(pc, good, tokens=np.asarray(TOKENS, np.int32)),
    }


@pytest.mark.parametrize("damage", list(_damages()))
def test_damaged_entry_is_rejected_removed_and_rebuilt(tmp_path, damage):
    notes: list[str] = []
    pc = PromptCache(tmp_path, "m", notice=notes.append)
    assert pc.save(TOKENS, _layers())
    path = pc._path(TOKENS)
    _damages()[damage](pc, path)
    assert pc.load(TOKENS) is None
    assert not path.exists() and not pc.has(TOKENS)  # removed, so the next save writes it again
    assert len(notes) == 1 and str(path) in notes[0] and "damaged" in notes[0] and "recomputing" in notes[0]
    assert pc.load(TOKENS) is None and len(notes) == 1  # told once
    assert pc.save(TOKENS, _layers())
    back = pc.load(TOKENS)
    assert back is not None and all(a.tobytes() == b.tobytes() for ab, cd in zip(back, _layers())
                                    for a, b in zip(ab, cd))
    assert len(notes) == 1


def test_entry_of_the_previous_format_is_stale(tmp_path):
    """What the previous version wrote (format 1, no digest) is replaced quietly, not trusted."""
    notes: list[str] = []
    pc = PromptCache(tmp_path, "m", notice=notes.append)
    layers = _layers()
    arrays = {"format": np.asarray(1), "key": np.asarray("m"), "tokens": np.asarray(TOKENS, np.int64),
              "layers": np.asarray(2)}
    for i, (k, v) in enumerate(layers):
        arrays[f"k{i}"], arrays[f"v{i}"] = k, v
    with open(pc._path(TOKENS), "wb") as f:
        np.savez(f, **arrays)
    assert pc.load(TOKENS) is None and not pc.has(TOKENS) and notes == []
    assert pc.save(TOKENS, layers) and pc.load(TOKENS) is not None


def test_what_load_would_refuse_is_not_saved(tmp_path):
    pc = PromptCache(tmp_path, "m")
    k0, v0 = _layers()[0]
    assert not pc.save(TOKENS, _nan_layers())
    assert not pc.save(TOKENS, [(k0.astype(np.float16), v0.astype(np.float16))])
    assert not pc.save(TOKENS, [(k0[:, :0], v0[:, :0])])  # no rows
    assert not pc.save(TOKENS, [(k0, v0[:, :, :2])])  # k and v differ
    assert not pc.save(TOKENS, [])
    assert list(tmp_path.iterdir()) == []


def test_discard(tmp_path):
    pc = PromptCache(tmp_path, "m")
    pc.save(TOKENS, _layers())
    pc.discard(TOKENS)
    assert not pc.has(TOKENS)
    pc.discard(TOKENS)  # nothing there: no error


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
        lm = load_model(tiny_harmony_gguf, threads=1, context=512, prompt_cache=tmp_path if cache else False)
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


def test_a_damaged_snapshot_is_not_restored(harmony_encoding, tiny_harmony_gguf, tmp_path):
    """NaN in a well-formed entry whose digest was recomputed: the next process recomputes those
    tokens (starting from the shorter snapshot) and gives the tokens of a run without any cache."""
    from gptoss_cli.prompt import build_conversation

    greedy = SamplingParams(temperature=0)
    lm0 = load_model(tiny_harmony_gguf, threads=1, context=512, prompt_cache=False)
    plain = lm0.generator()
    prompt = plain.render(build_conversation("Hello there"))
    want = plain.generate(prompt, greedy, max_tokens=8).run().tokens
    lm1 = load_model(tiny_harmony_gguf, threads=1, context=512, prompt_cache=tmp_path)
    lm1.generator().generate(prompt, greedy, max_tokens=8).run()
    pc = lm1.prompt_cache
    layers = pc.load(prompt[:-1])
    layers[0][0][0, -1, 0] = np.nan
    tokens = np.asarray(prompt[:-1], dtype=np.int64)
    arrays = {"format": np.asarray(pcache.FORMAT), "key": np.asarray(pc.key), "tokens": tokens,
              "layers": np.asarray(len(layers)),
              "digest": np.frombuffer(pcache._digest(pc.key, tokens, layers), dtype=np.uint8)}
    for i, (k, v) in enumerate(layers):
        arrays[f"k{i}"], arrays[f"v{i}"] = k, v
    with open(pc._path(prompt[:-1]), "wb") as f:
        np.savez(f, **arrays)

    lm2 = load_model(tiny_harmony_gguf, threads=1, context=512, prompt_cache=tmp_path)
    gen = lm2.generator()
    g = gen.generate(prompt, greedy, max_tokens=8)
    assert next(iter(g)).cached_tokens == save_points(prompt, gen.tokenizer.token_id("<|end|>"))[0]
    assert g.run().tokens == want
    assert pc.load(prompt[:-1]) is not None  # saved again, good this time
    for lm in (lm0, lm1, lm2):
        lm.close()


def test_snapshot_must_fit_the_cache(tiny_harmony_gguf):
    """A snapshot from a cache of another shape (a smaller context, a ring of other size) is refused."""
    m = load_model(tiny_harmony_gguf, threads=1, context=64)
    cache = m.new_cache()
    m.forward([1, 2, 3, 4, 5], cache)
    snap = cache.snapshot()
    cache.reset()
    cache.load_snapshot(5, snap)
    assert cache.n_past == 5
    with pytest.raises(ValueError):
        cache.load_snapshot(6, snap)  # full layers hold 5 rows, not 6
    with pytest.raises(ValueError):
        m.new_cache(4).load_snapshot(5, snap)  # more tokens than its context
    m.close()


def test_snapshot_too_big_is_not_copied(tiny_harmony_gguf):
    m = load_model(tiny_harmony_gguf, threads=1, context=64)
    cache = m.new_cache()
    m.forward([1, 2, 3], cache)
    full = cache.snapshot()
    size = sum(k.nbytes + v.nbytes for k, v in full)
    assert cache.snapshot(max_bytes=size) is not None
    assert cache.snapshot(max_bytes=size - 1) is None
    m.close()


def test_later_chat_turns_do_not_write_snapshots(harmony_encoding, tiny_harmony_gguf, tmp_path):
    """A turn that continues the cache in memory saves nothing new (only fresh starts do)."""
    from gptoss_cli.prompt import build_conversation

    enc = harmony_encoding
    greedy = SamplingParams(temperature=0)
    lm = load_model(tiny_harmony_gguf, threads=1, context=512, prompt_cache=tmp_path)
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
