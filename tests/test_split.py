"""Split GGUF models (llama.cpp's gguf-split layout): written by quantize and convert, opened from
any shard with the same logits as the unsplit file, and every bad shard set refused by name."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tiny_models import TinySpec, build_tiny_model

from gptoss_cli import load_model
from gptoss_cli.errors import ModelFileError
from gptoss_cli.gguf_split import SplitGGUF, open_model_file, shard_paths, split_name

SPEC = TinySpec(n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=1,
                head_dim=16, vocab=512, sliding_window=16, context_length=256, seed=7, dense="q8_0")


def _quantize(src: Path, out: Path, *extra: str) -> None:
    from gptoss_cli.convert.quantize import quantize_command

    quantize_command(str(src), str(out), "q8_0", force=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny model re-encoded by quantize twice: one file, and split into 3+ shards."""
    root = tmp_path_factory.mktemp("split")
    tiny = build_tiny_model(SPEC, root / "src")
    from gptoss_cli.convert.quantize import quantize_command

    whole = root / "whole.gguf"
    quantize_command(str(tiny.gguf_path), str(whole), "q8_0", force=True)
    split_dir = root / "split"
    split_dir.mkdir()
    first = quantize_command(str(tiny.gguf_path), str(split_dir / "tiny.gguf"), "q8_0", force=True,
                             split_max_size=60_000)
    shards = sorted(split_dir.glob("tiny-*-of-*.gguf"))
    return whole, shards


def test_split_output_is_named_and_keyed_like_llama_cpp(files):
    whole, shards = files
    assert len(shards) >= 3
    n = len(shards)
    assert [split_name(s) for s in shards] == [("tiny", k, n) for k in range(1, n + 1)]
    import gguf

    r = gguf.GGUFReader(str(shards[1]))
    keys = {f.name: f.parts[f.data[0]][0] for f in r.fields.values() if f.name.startswith("split.")}
    assert keys["split.no"] == 1 and keys["split.count"] == n
    total = sum(len(gguf.GGUFReader(str(s)).tensors) for s in shards)
    assert keys["split.tensors.count"] == total == len(gguf.GGUFReader(str(whole)).tensors)
    assert not list(shards[0].parent.glob("*.part"))  # temporaries renamed or removed


@pytest.mark.parametrize("which", [0, 1, -1])
def test_any_shard_opens_the_whole_model_with_the_same_logits(files, which):
    whole, shards = files
    ids = np.random.default_rng(0).integers(0, SPEC.vocab, 40)
    want = load_model(whole, threads=1).logits(ids)
    lm = load_model(shards[which], threads=1)
    assert isinstance(lm.gguf, SplitGGUF) and lm.path == shards[0]
    assert np.array_equal(lm.logits(ids), want)
    # zero copy: every weight is a view of one shard's map
    w = lm.model.w
    assert any(np.shares_memory(w.layers[0].wq.data, m) for m in lm.gguf.data_maps)


def _copy(shards: list[Path], dest: Path) -> list[Path]:
    dest.mkdir()
    return [Path(shutil.copy(s, dest / s.name)) for s in shards]


def test_a_missing_shard_is_named(files, tmp_path):
    _, shards = files
    copies = _copy(shards, tmp_path / "m")
    copies[1].unlink()
    with pytest.raises(ModelFileError, match=f"{copies[1].name}: shard 2 of {len(shards)} is missing"):
        open_model_file(copies[0])


def test_renumbered_shards_are_refused(files, tmp_path):
    _, shards = files
    copies = _copy(shards, tmp_path / "r")
    a, b = copies[0], copies[1]
    tmp = a.with_name("swap")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    with pytest.raises(ModelFileError, match="is named shard 1 of .* but holds shard 2"):
        open_model_file(copies[-1])


def test_a_shard_of_another_split_is_refused(files, tmp_path):
    """Shard 2 of the same model split another way, put in place of ours: named as ours, keyed as theirs."""
    from gptoss_cli.convert.quantize import quantize_command

    whole, shards = files
    other = tmp_path / "other"
    other.mkdir()
    quantize_command(str(whole), str(other / "tiny.gguf"), "q8_0", force=True, split_max_size=30_000)
    theirs = sorted(other.glob("tiny-*-of-*.gguf"))
    assert len(theirs) != len(shards)
    copies = _copy(shards, tmp_path / "o")
    shutil.copy(theirs[1], copies[1])
    with pytest.raises(ModelFileError, match=f"{copies[1].name}: this shard says the model has {len(theirs)} shards"):
        open_model_file(copies[0])


def test_a_shard_under_another_name_is_refused(files, tmp_path):
    _, shards = files
    odd = tmp_path / "model.gguf"
    shutil.copy(shards[0], odd)
    with pytest.raises(ModelFileError, match="does not end in -0000K-of-"):
        open_model_file(odd)


def test_shard_paths_from_any_shard():
    got = shard_paths("/m/gpt-oss-120b-mxfp4-00002-of-00003.gguf")
    assert [p.name for p in got] == [f"gpt-oss-120b-mxfp4-0000{k}-of-00003.gguf" for k in (1, 2, 3)]
    assert shard_paths("/m/plain.gguf") == [Path("/m/plain.gguf")]


def test_pull_then_run_a_split_model(tiny_harmony_gguf, tmp_path, monkeypatch):
    """The published 120b's path end to end on a tiny stand-in: a 3-shard model in models.toml,
    `gptoss pull NAME` fetches every shard from a local server, `gptoss run -m NAME` runs it."""
    import os

    from test_pull import GPTOSS, LocalServer
    from gptoss_cli.convert.quantize import quantize_command

    src = tmp_path / "src"
    src.mkdir()
    quantize_command(str(tiny_harmony_gguf), str(src / "tiny-split.gguf"), "q8_0", force=True,
                     split_max_size=5_000_000)
    shards = sorted(src.glob("tiny-split-*-of-*.gguf"))
    assert len(shards) == 3
    srv = LocalServer()
    srv.files = {"/" + s.name: s.read_bytes() for s in shards}
    import threading

    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        toml = tmp_path / "models.toml"
        toml.write_text(f'[models.tiny-split]\naliases = ["ts"]\nsource = "{srv.url(shards[0].name)}"\nsplit = 3\n')
        env = dict(os.environ, GPTOSS_HOME=str(tmp_path / "home"), GPTOSS_MODELS_TOML=str(toml))
        for var in ("GPTOSS_OFFLINE", "HF_TOKEN"):
            env.pop(var, None)
        p = subprocess.run([GPTOSS, "pull", "ts"], capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 0, p.stderr
        got = sorted((tmp_path / "home" / "models").glob("tiny-split-*.gguf"))
        assert [g.read_bytes() for g in got] == [s.read_bytes() for s in shards]
        p = subprocess.run([GPTOSS, "run", "-m", "ts", "-t", "1", "-n", "3", "--temperature", "0", "--json", "hi"],
                           capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0, p.stderr
        import json

        out = json.loads(p.stdout)
        assert out["usage"]["completion_tokens"] == 3
    finally:
        srv.release.set()
        srv.shutdown()
        srv.server_close()
        t.join(5)


def test_quantize_reads_a_split_input_whole(files, tmp_path):
    """quantize given any shard of a split model re-encodes every shard's tensors into one file."""
    from gptoss_cli.convert.quantize import quantize_gguf

    whole, shards = files
    out = quantize_gguf(shards[1], tmp_path / "merged.gguf", "q8_0", force=True, progress=False, fsync=False)
    ids = np.random.default_rng(3).integers(0, SPEC.vocab, 20)
    assert out.n_tensors == len(open_model_file(whole).tensors)
    assert np.array_equal(load_model(out.path, threads=1).logits(ids), load_model(whole, threads=1).logits(ids))
