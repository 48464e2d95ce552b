"""`gptoss convert`: tiny gpt-oss checkpoints (HF single file, HF sharded, OpenAI
original layout, bf16 fine-tune) -> GGUF, checked tensor by tensor against the
tiny model's own GGUF, against gguf.quants, and by running the runtime on the
result against transformers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as QT

from checkpoints import (
    CHAT_TEMPLATE,
    tokenizer_ids,
    tokenizer_specials,
    write_hf_checkpoint,
    write_original_checkpoint,
    write_tokenizer_files,
)
from tiny_models import TinySpec, build_tiny_model

from gptoss_cli.convert.convert import convert_checkpoint
from gptoss_cli.gguf_file import GGUFFile, StringArray

GPTOSS = str(Path(sys.executable).with_name("gptoss"))
SPEC = TinySpec(n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=2,
                head_dim=16, vocab=1000, sliding_window=8, seed=42, dense="bf16")  # context 131072
SEQ = 120


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(SPEC, tmp_path_factory.mktemp("convert-tiny"))


@pytest.fixture(scope="module")
def ckpts(tiny, tmp_path_factory):
    """The tiny model as checkpoints: HF single file (with original/ inside), HF in
    3 shards, a bf16 fine-tune; each converted once with --outtype auto."""
    root = tmp_path_factory.mktemp("convert-ckpts")
    folders = {
        "hf": write_hf_checkpoint(tiny, root / "gpt-oss-tiny"),
        "sharded": write_hf_checkpoint(tiny, root / "gpt-oss-tiny-sharded", shards=3),
        "finetune": write_hf_checkpoint(tiny, root / "gpt-oss-tiny-ft", experts="bf16"),
    }
    folders["original"] = write_original_checkpoint(tiny, root / "gpt-oss-tiny" / "original", shards=2)
    out = {}
    for name, folder in folders.items():
        out[name] = convert_checkpoint(folder, root / f"{name}.gguf", progress=False, fsync=False).path
    return folders, out


def _tensors(path):
    with GGUFFile(path) as gf:
        return {n: (i.ggml_type, i.shape, np.array(gf.tensor(n))) for n, i in gf.tensors.items()}


def _metadata(path):
    with GGUFFile(path) as gf:
        return {k: (v.tolist() if isinstance(v, (StringArray, np.ndarray)) else v) for k, v in gf.metadata.items()}


def _run(*args):
    return subprocess.run([GPTOSS, *map(str, args)], capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------- identity


def test_layouts_convert_to_the_same_tensors(tiny, ckpts):
    """HF single file, HF sharded and the original layout give byte-identical
    tensors, equal to the GGUF the tiny model was made from (MXFP4 experts
    repacked byte for byte, gate/up split, fused qkv split)."""
    _, out = ckpts
    want = _tensors(tiny.gguf_path)
    for name in ("hf", "sharded", "original"):
        got = _tensors(out[name])
        assert list(got) == list(want), name
        for t in want:
            assert got[t][0] == want[t][0] and got[t][1] == want[t][1], (name, t)
            assert np.array_equal(got[t][2], want[t][2]), (name, t)


def test_metadata(tiny, ckpts):
    _, out = ckpts
    mds = {k: _metadata(p) for k, p in out.items()}
    cfg = tiny.config
    md = mds["hf"]
    assert md["general.architecture"] == "gpt-oss" and md["general.file_type"] == 38
    expected = {
        "block_count": cfg.n_layers, "context_length": cfg.context_length, "embedding_length": cfg.hidden,
        "feed_forward_length": cfg.expert_ffn, "expert_feed_forward_length": cfg.expert_ffn,
        "expert_count": cfg.n_experts, "expert_used_count": cfg.n_experts_used,
        "attention.head_count": cfg.n_heads, "attention.head_count_kv": cfg.n_kv_heads,
        "attention.key_length": cfg.head_dim, "attention.value_length": cfg.head_dim,
        "attention.sliding_window": cfg.sliding_window, "rope.scaling.type": "yarn",
        "rope.scaling.factor": 32.0, "rope.scaling.original_context_length": 4096,
        "rope.scaling.yarn_beta_fast": 32.0, "rope.scaling.yarn_beta_slow": 1.0, "rope.freq_base": 150000.0,
    }
    for k, v in expected.items():
        assert md[f"gpt-oss.{k}"] == v, k
    assert abs(md["gpt-oss.attention.layer_norm_rms_epsilon"] - 1e-5) < 1e-12
    # the other layouts: the same keys and values but for the name
    for name in ("sharded", "original"):
        a = {k: v for k, v in mds[name].items() if k != "general.name"}
        b = {k: v for k, v in md.items() if k != "general.name"}
        assert a == b, name


def test_tokenizer_arrays(ckpts):
    """tokenizer.json (made by transformers' TikTokenConverter) -> the arrays llama.cpp writes."""
    from o200k import o200k_ranks

    from gptoss_cli.tokenizer_arrays import from_tiktoken_ranks

    _, out = ckpts
    md = _metadata(out["hf"])
    specials = tokenizer_specials(SPEC.vocab)
    ranks = {b: r for b, r in o200k_ranks().items() if r < min(specials)}
    ref = from_tiktoken_ranks(ranks, {v: k for k, v in specials.items()}, vocab_size=SPEC.vocab)
    assert md["tokenizer.ggml.model"] == "gpt2" and md["tokenizer.ggml.pre"] == "gpt-4o"
    assert md["tokenizer.ggml.tokens"] == ref.tokens
    assert md["tokenizer.ggml.token_type"] == ref.token_types
    assert md["tokenizer.ggml.merges"] == ref.merges
    ids = tokenizer_ids(SPEC.vocab)
    assert md["tokenizer.ggml.bos_token_id"] == ids["bos"]
    assert md["tokenizer.ggml.eos_token_id"] == ids["eos"]
    assert md["tokenizer.ggml.padding_token_id"] == ids["pad"]
    assert md["tokenizer.ggml.add_bos_token"] is False and md["tokenizer.ggml.add_eos_token"] is False
    assert md["tokenizer.chat_template"] == CHAT_TEMPLATE


def test_real_o200k_tokenizer_json(tmp_path):
    """The genuine o200k_harmony vocabulary: 201088 tokens, 446189 merges, as in the real GGUF."""
    from o200k import o200k_arrays

    from gptoss_cli.convert.tokenizer_json import read_tokenizer_json

    write_tokenizer_files(tmp_path, 201088)
    tok = read_tokenizer_json(tmp_path, 201088, {"eos_token_id": 200002})
    ref = o200k_arrays()
    assert len(tok.tokens) == 201088 and len(tok.merges) == 446189
    assert tok.tokens == ref.tokens and tok.token_types == ref.token_types and tok.merges == ref.merges
    assert (tok.bos_id, tok.eos_id, tok.padding_id) == (199998, 200002, 199999)
    assert tok.warnings == []


# --------------------------------------------------------------------- the model runs


@pytest.mark.parametrize("which", ["hf", "original", "finetune"])
def test_converted_logits_match_transformers(tiny, ckpts, which):
    from gptoss_cli import load_model

    _, out = ckpts
    ids = np.random.default_rng(9).integers(0, SPEC.vocab, SEQ)
    ref = tiny.reference_logits(ids)
    ours = load_model(out[which], threads=2).logits(ids)
    agree = float(np.mean(ours.argmax(-1) == ref.argmax(-1)))
    rel = float(np.mean(np.abs(ours - ref)) / ref.std())
    print(f"\n{which}: top-1 {agree:.4f}, mean |err| / std {rel:.2e}")
    assert agree >= 0.995
    assert rel <= 0.002


def test_finetune_experts_quantized_like_gguf_quants(tiny, ckpts):
    """bf16 experts -> MXFP4 with --outtype auto: bytes equal gguf.quants of the same values."""
    _, out = ckpts
    got = _tensors(out["finetune"])
    for name, (ty, shape, raw) in got.items():
        if name.endswith("_exps.weight"):
            assert ty == QT.MXFP4
            assert np.array_equal(raw, gguf.quants.quantize(tiny.weights[name], QT.MXFP4)), name
    assert _metadata(out["finetune"])["general.file_type"] == 38


def test_finetune_keeps_experts_with_outtype(tiny, ckpts, tmp_path):
    folders, _ = ckpts
    out = convert_checkpoint(folders["finetune"], tmp_path / "ft-bf16.gguf", "bf16", progress=False, fsync=False).path
    got = _tensors(out)
    for name in ("blk.0.ffn_gate_exps.weight", "blk.1.ffn_up_exps.weight", "blk.1.ffn_down_exps.weight"):
        ty, shape, raw = got[name]
        assert ty == QT.BF16 and shape == tiny.weights[name].shape
        assert np.array_equal(raw, gguf.quants.quantize(tiny.weights[name], QT.BF16).view(np.uint16)), name
    assert _metadata(out)["general.file_type"] == 32  # MOSTLY_BF16: no MXFP4 experts


@pytest.mark.parametrize("outtype,qt,file_type", [("q8_0", QT.Q8_0, 7), ("f16", QT.F16, 38), ("f32", QT.F32, 38)])
def test_outtypes(tiny, ckpts, tmp_path, outtype, qt, file_type):
    folders, out0 = ckpts
    out = convert_checkpoint(folders["sharded"], tmp_path / f"{outtype}.gguf", outtype, progress=False, fsync=False).path
    got, base = _tensors(out), _tensors(out0["hf"])
    for name, (ty, shape, raw) in got.items():
        if base[name][0] == QT.BF16:  # the dense 2-D weights
            assert ty == qt, name
            ref = gguf.quants.quantize(tiny.weights[name], qt)
            assert np.array_equal(raw.view(np.uint8).ravel(), ref.view(np.uint8).ravel()), name
        else:  # MXFP4 experts and F32 small tensors unchanged
            assert ty == base[name][0] and np.array_equal(raw, base[name][2]), name
    assert _metadata(out)["general.file_type"] == file_type


def test_pieces_stream_in_small_chunks(tiny, ckpts, tmp_path, monkeypatch):
    """Writing with tiny pieces (forcing many chunks per tensor) gives the same bytes."""
    from gptoss_cli.convert import recipes

    folders, out0 = ckpts
    monkeypatch.setattr(recipes, "CHUNK_VALUES", 100)
    out = convert_checkpoint(folders["finetune"], tmp_path / "chunks.gguf", progress=False, fsync=False).path
    a, b = _tensors(out), _tensors(out0["finetune"])
    assert all(np.array_equal(a[n][2], b[n][2]) for n in b)


def test_failed_write_leaves_nothing(ckpts, tmp_path, monkeypatch):
    from gptoss_cli.convert import recipes

    folders, _ = ckpts
    target = tmp_path / "out.gguf"
    target.write_bytes(b"old")
    calls = {"n": 0}
    real = recipes.encode_f32

    def boom(x, qt):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk on fire")
        return real(x, qt)

    monkeypatch.setattr(recipes, "encode_f32", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        convert_checkpoint(folders["hf"], target, force=True, progress=False, fsync=False)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.gguf"]


# --------------------------------------------------------------------- the command


def test_cli_convert_and_force(ckpts, tmp_path):
    folders, out0 = ckpts
    out = tmp_path / "cli.gguf"
    p = _run("convert", folders["original"], "-o", out)
    assert p.returncode == 0, p.stderr
    assert "wrote" in p.stderr and "original layout" in p.stderr
    a, b = _tensors(out), _tensors(out0["hf"])
    assert all(np.array_equal(a[n][2], b[n][2]) for n in b)

    before = out.read_bytes()
    p = _run("convert", folders["hf"], "-o", out, "--outtype", "q8_0")
    assert p.returncode == 1 and f"{out}: already exists (use --force to overwrite)" in p.stderr
    assert out.read_bytes() == before
    p = _run("convert", folders["hf"], "-o", out, "--outtype", "q8_0", "--force")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() != before

    p = _run("convert", folders["hf"], "-o", tmp_path / "x.gguf", "--outtype", "q4_0")
    assert p.returncode == 2 and "q4_0" in p.stderr


def _expect_error(p, *fragments):
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gptoss: error: "), p.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def test_cli_errors(ckpts, tmp_path):
    folders, _ = ckpts
    out = tmp_path / "o.gguf"

    _expect_error(_run("convert", tmp_path / "missing", "-o", out), "no such checkpoint folder")

    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_error(_run("convert", empty, "-o", out), "config.json: file not found")

    llama = tmp_path / "llama"
    shutil.copytree(folders["hf"], llama, ignore=shutil.ignore_patterns("original"))
    cfg = json.loads((llama / "config.json").read_text())
    cfg.update(model_type="llama", architectures=["LlamaForCausalLM"])
    (llama / "config.json").write_text(json.dumps(cfg))
    _expect_error(_run("convert", llama, "-o", out), "not a gpt-oss config", "'llama'")

    # a tensor missing from a shard's index and file
    broken = tmp_path / "broken"
    shutil.copytree(folders["sharded"], broken)
    index = json.loads((broken / "model.safetensors.index.json").read_text())
    del index["weight_map"]["model.layers.1.mlp.router.bias"]
    (broken / "model.safetensors.index.json").write_text(json.dumps(index))
    _expect_error(_run("convert", broken, "-o", out), "missing tensor model.layers.1.mlp.router.bias")

    # a shard file missing
    noshard = tmp_path / "noshard"
    shutil.copytree(folders["sharded"], noshard)
    (noshard / "model-00001-of-00003.safetensors").unlink()
    _expect_error(_run("convert", noshard, "-o", out), "model-00001-of-00003.safetensors: file not found")

    # no tokenizer
    notok = tmp_path / "notok"
    shutil.copytree(folders["finetune"], notok)
    (notok / "tokenizer.json").unlink()
    _expect_error(_run("convert", notok, "-o", out), "tokenizer.json: file not found")

    # a tensor of the wrong shape
    bad = tmp_path / "badshape"
    shutil.copytree(folders["finetune"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_local_experts"] = 8
    (bad / "config.json").write_text(json.dumps(cfg))
    _expect_error(_run("convert", bad, "-o", out), "has shape", "expected")

    # output folder missing
    _expect_error(_run("convert", folders["hf"], "-o", tmp_path / "nodir" / "x.gguf"), "no such folder")
    assert not out.exists()
