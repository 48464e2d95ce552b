"""gptoss bench through the real executable, on a tiny model and on a small synthetic one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_models import TinySpec, build_tiny_model

from gptoss_cli.bench import BenchResult, format_results

GPTOSS = str(Path(sys.executable).with_name("gptoss"))
KEYS = {"pp_tok_s", "tg_tok_s", "load_s", "peak_rss_mb", "threads", "model_size_mb", "pp_tok_s_sd", "tg_tok_s_sd"}


def _bench(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, GPTOSS_HOME=str(home))
    return subprocess.run([GPTOSS, "bench", *args], capture_output=True, text=True, env=env, timeout=300)


def test_bench_tiny_model_json(tmp_path):
    model = build_tiny_model(TinySpec(n_layers=2, n_experts=4, top_k=2, hidden=64, expert_ffn=64, n_heads=4,
                                      n_kv_heads=2, head_dim=16, vocab=256, sliding_window=8, seed=9), tmp_path)
    p = _bench("-m", str(model.gguf_path), "--pp", "16", "--tg", "4", "--reps", "2", "-t", "1", "--json", home=tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert KEYS <= out.keys()
    assert out["threads"] == 1 and out["pp"] == 16 and out["tg"] == 4 and out["reps"] == 2
    assert out["pp_tok_s"] > 0 and out["tg_tok_s"] > 0 and out["peak_rss_mb"] > 0


def test_bench_synthetic_markdown_and_csv(tmp_path):
    p = _bench("--synthetic", "mini", "--pp", "8", "--tg", "2", "--reps", "1", "-t", "1", "--ctx-depth", "4", home=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "| gptoss | 1 | 8 | 2 | 4 |" in p.stdout
    assert (tmp_path / "synthetic" / "synthetic-mini-2l-q8_0.gguf").exists()
    p = _bench("--synthetic", "mini", "--pp", "8", "--tg", "2", "--reps", "1", "-t", "1", "--csv", home=tmp_path)
    assert p.returncode == 0 and p.stdout.startswith("engine,threads,pp,tg")


@pytest.mark.parametrize(
    "args, needle",
    [(["--synthetic", "mini", "--reps", "0"], "--reps"), (["--synthetic", "7b"], "unknown shape"),
     (["--synthetic", "mini", "--pp", "0", "--tg", "0"], "--pp and --tg"), (["--layers", "2"], "--layers"),
     (["--synthetic", "mini", "--json", "--csv"], "one of"), (["--synthetic", "mini", "--rounds", "0"], "--rounds")],
)
def test_bench_bad_options(tmp_path, args, needle):
    p = _bench(*args, home=tmp_path)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert needle in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_ratios_against_llama_cpp():
    common = dict(model="m", model_size_mb=1.0, pp=8, tg=2, ctx_depth=0, reps=1, load_s=0.1, pp_tok_s_sd=0.0,
                  tg_tok_s_sd=0.0, peak_rss_mb=10.0, threads=2)
    ours = BenchResult(engine="gptoss", pp_tok_s=30.0, tg_tok_s=12.0, **common)
    theirs = BenchResult(engine="llama.cpp", pp_tok_s=20.0, tg_tok_s=10.0, **common)
    rows = json.loads(format_results([ours, theirs], "json"))
    assert rows[0]["pp_ratio"] == pytest.approx(1.5) and rows[0]["tg_ratio"] == pytest.approx(1.2)
    assert "| gptoss |" in format_results([ours, theirs], "md")


def test_rounds_alternate_the_engines_and_report_each_ratio():
    from gptoss_cli.bench import alternate_rounds

    common = dict(model="m", model_size_mb=1.0, pp=8, tg=2, ctx_depth=0, reps=2, pp_tok_s_sd=0.0,
                  tg_tok_s_sd=0.0, threads=2)
    order: list[str] = []
    speeds = iter([(30.0, 12.0), (20.0, 8.0), (24.0, 9.0)])  # the machine slows down between rounds

    def ours():
        order.append("ours")
        pp, tg = next(speeds)
        return BenchResult(engine="gptoss", pp_tok_s=pp, tg_tok_s=tg, load_s=0.1, peak_rss_mb=10.0 + len(order), **common)

    def theirs():
        order.append("theirs")
        return BenchResult(engine="llama.cpp", pp_tok_s=20.0, tg_tok_s=10.0 - len(order), load_s=len(order),
                           peak_rss_mb=50.0, **common)

    a, b = alternate_rounds(ours, theirs, 3)
    assert order == ["ours", "theirs", "theirs", "ours", "ours", "theirs"]
    assert a.pp_tok_s == pytest.approx(74 / 3) and a.reps == 6 and a.peak_rss_mb == 15.0
    assert [r["tg_tok_s"] for r in a.extra["rounds"]] == [12.0, 8.0, 9.0]
    assert b.load_s == 6 and [r["tg_tok_s"] for r in b.extra["rounds"]] == [8.0, 7.0, 4.0]
    assert a.extra["tg_ratio_rounds"] == pytest.approx([12 / 8, 8 / 7, 9 / 4])
    assert a.extra["tg_ratio_median"] == pytest.approx(1.5)


def test_rounds_without_llama_cpp(tmp_path):
    p = _bench("--synthetic", "mini", "--pp", "4", "--tg", "2", "--reps", "1", "-t", "1", "--rounds", "2", "--json",
               home=tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["reps"] == 2 and len(out["extra"]["rounds"]) == 2 and out["tg_tok_s"] > 0


def test_synthetic_file_of_gpt_oss_vocabulary_tokenizes_like_gpt_oss(tmp_path):
    """A 201088-token synthetic file carries o200k_harmony (from the demo model), so a prompt
    has the real model's length; other sizes keep the stand-in byte-level tokenizer."""
    from dataclasses import replace

    from gptoss_cli.model_names import builtin_default_model
    from gptoss_cli.synthetic import shape_config, write_synthetic_gguf

    cfg = replace(shape_config("20b"), n_layers=1, hidden=64, expert_ffn=64, n_experts=4, n_heads=4, n_kv_heads=2)
    real = write_synthetic_gguf(tmp_path / "real-vocab.gguf", cfg)
    standin = write_synthetic_gguf(tmp_path / "mini.gguf", shape_config("mini", 1))
    text = "What is the capital of France? Answer in one word."

    def ids(model: Path | str) -> list[int]:
        p = subprocess.run([GPTOSS, "tokenize", "-m", str(model), "--json", text], capture_output=True, text=True,
                           env=dict(os.environ, GPTOSS_HOME=str(tmp_path)), timeout=300)
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)

    demo = ids(builtin_default_model())
    assert ids(real) == demo and len(demo) < 20
    assert len(ids(standin)) == len(text.encode())  # one token per byte


def test_bench_synthetic_split(tmp_path):
    """--synthetic --split-max-size writes the model as llama.cpp-named shards and benchmarks it."""
    p = _bench("--synthetic", "mini", "--split-max-size", "1M", "--pp", "4", "--tg", "2", "--reps", "1", "-t", "1",
               "--json", home=tmp_path)
    assert p.returncode == 0, p.stderr
    shards = sorted((tmp_path / "synthetic").glob("synthetic-mini-*-of-*.gguf"))
    assert len(shards) > 1
    r = json.loads(p.stdout)
    r = r[0] if isinstance(r, list) else r
    assert r["model"] == str(shards[0]) and r["model_size_mb"] > sum(s.stat().st_size for s in shards[:-1]) / 2**20
