"""The built-in demo model (gptoss_cli/data/demo.gguf, made by scripts/train_demo_model.py).

It must be a real gpt-oss (both attention kinds, sinks, routed MXFP4 experts, the
real o200k_harmony vocabulary), small enough to ship, the default model, and it
must actually answer: greedy decoding of "What is A + B?" gives an analysis
message and then a final message with the correct sum.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from gguf import GGMLQuantizationType as QT

from gptoss_cli.model_names import builtin_default_model

GPTOSS = str(Path(sys.executable).with_name("gptoss"))
DEMO = Path(__file__).resolve().parent.parent / "gptoss_cli" / "data" / "demo.gguf"


@pytest.fixture(scope="module")
def demo() -> Path:
    path = builtin_default_model()
    assert path is not None and path.resolve() == DEMO.resolve(), "the demo model is not installed"
    return path


@pytest.fixture(scope="module")
def runtime(demo):
    """The demo loaded once (model and Harmony encoding), shared by the generation tests."""
    from gptoss_cli import load_model

    lm = load_model(demo, threads=2)
    return lm, lm.encoding


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """An empty app directory, so no user config names another default model."""
    monkeypatch.setenv("GPTOSS_HOME", str(tmp_path))
    return tmp_path


def test_demo_is_a_real_gpt_oss_small_enough_to_ship(demo):
    from gptoss_cli.gguf_file import GGUFFile
    from gptoss_cli.weights import read_config

    assert demo.stat().st_size <= 25 * 1024 * 1024
    with GGUFFile(demo) as gf:
        cfg = read_config(gf)
        types = {n: QT(i.ggml_type) for n, i in gf.tensors.items()}
    assert cfg.n_layers >= 2 and cfg.is_sliding(0) and not cfg.is_sliding(1)
    assert cfg.n_experts >= 4 and 1 < cfg.n_experts_used < cfg.n_experts
    assert cfg.vocab_size == 201088
    assert all(types[f"blk.{i}.ffn_{p}_exps.weight"] == QT.MXFP4 for i in range(cfg.n_layers) for p in ("gate", "up", "down"))
    assert all(f"blk.{i}.attn_sinks.weight" in types for i in range(cfg.n_layers))


def test_demo_tokenizer_is_o200k_harmony(demo):
    from o200k import tiktoken_oracle

    from gptoss_cli.tokenizer import Tokenizer

    tok, ref = Tokenizer.from_gguf(demo), tiktoken_oracle()
    assert tok.vocab_size == 201088
    for text in ("What is 23 + 48?", "Grüße, 世界! 🙂 x\r\n  y", "<|start|>assistant<|channel|>final"):
        assert tok.encode(text, allow_special=True) == ref.encode(text, allowed_special="all")


def greedy_answer(model, enc, question: str) -> list:
    from gptoss_cli.generation import Generator
    from gptoss_cli.harmony import Role
    from gptoss_cli.prompt import build_conversation
    from gptoss_cli.sampling import SamplingParams

    prompt = enc.render_conversation_for_completion(build_conversation(question), Role.ASSISTANT)
    result = Generator(model, enc).generate(prompt, SamplingParams(temperature=0.0), max_tokens=120).run()
    return result.messages


def test_greedy_sums_are_correct(runtime):
    """50 fixed random pairs: the final channel holds the sum after an analysis message, at least 95% of the time."""
    model, enc = runtime
    rng = random.Random(50)
    wrong = []
    for _ in range(50):
        a, b = rng.randrange(100), rng.randrange(100)
        msgs = greedy_answer(model, enc, f"What is {a} + {b}?")
        channels = [m.channel for m in msgs]
        final = msgs[-1].text if msgs else ""
        if not (channels[:1] == ["analysis"] and channels[-1:] == ["final"] and str(a + b) in final):
            wrong.append((a, b, [(m.channel, m.text) for m in msgs]))
    assert len(wrong) <= 2, wrong


def test_demo_answers_about_itself(runtime):
    model, enc = runtime
    final = greedy_answer(model, enc, "Who are you?")[-1].text
    assert "demo model" in final and "gptoss pull gpt-oss-20b" in final
    assert "demo model" in greedy_answer(model, enc, "Hello!")[-1].text


def test_default_model_through_the_cli(demo, home):
    """`gptoss run "What is 23 + 48?"` with no -m uses the demo; a second start compiles nothing
    and takes all but the last prompt token from the prompt cache (speed itself is for benchmarks)."""
    cmd = [GPTOSS, "run", "What is 23 + 48?", "--temperature", "0"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ)
    assert first.returncode == 0, first.stderr
    p = subprocess.run(cmd + ["-v"], capture_output=True, text=True, timeout=300, env=os.environ)
    assert p.returncode == 0, p.stderr
    assert "71" in p.stdout and "Tens" not in p.stdout  # the final answer only; analysis stays hidden
    assert "compil" not in p.stderr and "1 computed" in p.stderr, p.stderr

    j = json.loads(subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120).stdout)
    assert j["analysis"] and "71" in j["final"] and j["stop_reason"] in ("return", "stop", "end")


def test_models_lists_the_demo(demo, home):
    p = subprocess.run([GPTOSS, "models", "--json"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    first = json.loads(p.stdout)[0]
    assert first["name"] == "demo" and first.get("demo") and Path(first["path"]).resolve() == DEMO.resolve()
    p = subprocess.run([GPTOSS, "models"], capture_output=True, text=True, timeout=60)
    assert "built-in demo" in p.stdout
    p = subprocess.run([GPTOSS, "run", "-m", "demo", "Hi", "--temperature", "0"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "demo model" in p.stdout


def test_three_turn_chats_are_right_at_every_turn(runtime):
    """Through the chat session (earlier analysis dropped, as `gptoss chat` renders it): 10 chats of
    three sums each, greedy, every turn's final answer holds its sum."""
    from demo_checks import wrong_chat_turns

    model, _ = runtime
    wrong = wrong_chat_turns(model, 10, 3, random.Random(2026), lambda chat: f"2026-{1 + chat:02d}-{10 + chat:02d}")
    assert not wrong, wrong
