"""`gptoss run` through the installed executable, on a tiny random model with the real tokenizer.

The model's weights are random, so its text is noise: these tests check the
plumbing (input, options, output shapes, determinism, errors, Ctrl-C), and
tests/test_generate.py checks channel routing with a scripted model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
        },
    }
]


def _gptoss() -> str:
    exe = Path(sys.executable).with_name("gptoss")
    if exe.exists():
        return str(exe)
    found = shutil.which("gptoss")
    if found is None:
        pytest.skip("the gptoss console script is not installed (pip install -e .)")
    return found


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("gptoss_home")  # no user config.toml
    e = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_ENCODINGS_BASE", "NO_COLOR")}
    e["GPTOSS_HOME"] = str(home)
    return e


@pytest.fixture(scope="module")
def model(tiny_harmony_gguf):
    return str(tiny_harmony_gguf)


def run(env, *args, stdin: bytes = b"", check: bool = True) -> subprocess.CompletedProcess:
    args = [str(a) for a in args]
    if args[:1] == ["run"] and "-t" not in args:
        # one thread: Numba's parallel loops crawl when another process holds the second core
        args[1:1] = ["-t", "1"]
    p = subprocess.run([_gptoss(), *args], input=stdin, capture_output=True, env=env, timeout=180)
    if check:
        assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p


def assert_user_error(p: subprocess.CompletedProcess, needle: str, code: int = 1) -> None:
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == code, (p.returncode, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("gptoss: error: "), err
    assert needle in lines[0], err


# -- input and output ---------------------------------------------------------------------


def test_raw_shows_prompt_parts_in_order(env, model, tmp_path):
    f = tmp_path / "prompt.txt"
    f.write_text("From the file.")
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(TOOLS))
    p = run(env, "run", "-m", model, "--raw", "-n", "3", "--seed", "1", "-r", "high", "--system", "Be terse.",
            "--tools", tools, "-f", f, "Summarize:")
    out = p.stdout.decode()
    assert out.startswith("<|start|>system<|message|>You are ChatGPT")
    assert "Reasoning: high" in out and "Current date: " in out
    assert "<|start|>developer<|message|># Instructions\n\nBe terse." in out
    assert "namespace functions {" in out and "type get_weather = " in out
    assert "<|start|>user<|message|>Summarize:\n\nFrom the file.<|end|><|start|>assistant" in out
    assert out.endswith("\n")


def test_piped_stdin_follows_the_argument(env, model):
    p = run(env, "run", "-m", model, "--raw", "-n", "1", "-r", "low", "Summarize:", stdin=b"notes from stdin\n")
    out = p.stdout.decode()
    assert "Reasoning: low" in out
    assert "<|start|>user<|message|>Summarize:\n\nnotes from stdin\n<|end|><|start|>assistant" in out
    p = run(env, "run", "-m", model, "--raw", "-n", "1", stdin="only stdin ✓".encode())
    assert "<|start|>user<|message|>only stdin ✓<|end|>" in p.stdout.decode()
    assert "Reasoning: medium" in p.stdout.decode()


def test_json_shape(env, model):
    p = run(env, "run", "-m", model, "--json", "-n", "6", "--seed", "3", "hello")
    obj = json.loads(p.stdout)
    assert set(obj) >= {"model", "final", "analysis", "messages", "tool_calls", "stop_reason", "usage", "timings"}
    assert obj["model"] == model
    assert isinstance(obj["final"], str) and isinstance(obj["analysis"], str)
    assert isinstance(obj["messages"], list) and isinstance(obj["tool_calls"], list)
    for m in obj["messages"]:
        assert m["role"] == "assistant" and isinstance(m["content"], list)
    assert obj["stop_reason"] in ("max_tokens", "stop", "tool_call")
    assert obj["usage"]["prompt_tokens"] > 20
    assert 1 <= obj["usage"]["completion_tokens"] <= 6
    t = obj["timings"]
    assert t["load_s"] > 0 and t["prompt_tok_s"] > 0 and (t["gen_tok_s"] or 0) >= 0
    assert p.stdout.decode().count("\n") == 1


def test_jsonl_shape_and_verbose(env, model):
    p = run(env, "run", "-m", model, "--jsonl", "-v", "-n", "24", "--seed", "5", "-c", "400", "hello")
    lines = [json.loads(x) for x in p.stdout.decode().splitlines()]
    assert lines and lines[-1]["type"] == "done"
    assert {x["type"] for x in lines} <= {"message_start", "delta", "message_end", "tool_call", "done"}
    done = lines[-1]
    assert done["usage"]["completion_tokens"] >= 1 and done["usage"]["prompt_tokens"] > 20
    assert done["stop_reason"] in ("max_tokens", "stop", "tool_call", "context_full")
    # messages open and close in order; deltas only inside a message
    depth = 0
    for x in lines[:-1]:
        if x["type"] == "message_start":
            assert depth == 0 and "channel" in x and "recipient" in x
            depth = 1
        elif x["type"] == "delta":
            assert depth == 1 and isinstance(x["text"], str)
        elif x["type"] == "message_end":
            assert depth == 1 and x["message"]["role"] == "assistant"
            depth = 0
    err = p.stderr.decode()
    stats = [line for line in err.splitlines() if "tok/s" in line]
    assert len(stats) == 1 and stats[0].startswith("gptoss: load ")


def test_seed_determinism(env, model):
    a = run(env, "run", "-m", model, "--raw", "-n", "12", "--seed", "42", "hi").stdout
    b = run(env, "run", "-m", model, "--raw", "-n", "12", "--seed", "42", "hi").stdout
    c = run(env, "run", "-m", model, "--raw", "-n", "12", "--seed", "43", "hi").stdout
    assert a == b
    assert a != c


def test_user_config_defaults_and_command_line_wins(env, model, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'default_model = "{model}"\n[run]\nreasoning_effort = "high"\nsystem = "From config."\nmax_tokens = 2\n'
    )
    e = {**env, "GPTOSS_HOME": str(home)}
    p = run(e, "run", "--json", "--raw", "hi", check=False)  # the config does not turn off usage checks
    assert_user_error(p, "cannot be used together", code=2)
    out = run(e, "run", "--raw", "hi").stdout.decode()
    assert "Reasoning: high" in out and "# Instructions\n\nFrom config." in out
    out = run(e, "run", "--raw", "-r", "low", "--system", "From the command line.", "hi").stdout.decode()
    assert "Reasoning: low" in out and "From the command line." in out and "From config." not in out


def test_default_output_is_final_channel_only(env, model):
    # noise never forms a final-channel message: stdout stays empty, a note explains why
    p = run(env, "run", "-m", model, "-n", "4", "--seed", "1", "hi")
    assert p.stdout == b""
    assert "gptoss: note: the token limit (4) was reached" in p.stderr.decode()


# -- errors -----------------------------------------------------------------------------------------


def test_model_file_errors(env, model, tmp_path):
    assert_user_error(run(env, "run", "-m", tmp_path / "missing.gguf", "hi", check=False), "no such file")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"definitely not a model\n" * 50)
    assert_user_error(run(env, "run", "-m", junk, "hi", check=False), "not a GGUF file")
    cut = tmp_path / "cut.gguf"
    data = Path(model).read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert_user_error(run(env, "run", "-m", cut, "hi", check=False), "truncated GGUF file")
    import gguf
    import numpy as np

    llama = tmp_path / "llama.gguf"
    w = gguf.GGUFWriter(str(llama), "llama")
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert_user_error(run(env, "run", "-m", llama, "hi", check=False), "architecture is 'llama'")
    assert_user_error(run(env, "run", "-m", "no-such-model", "hi", check=False), "unknown model 'no-such-model'")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--temperature", "-1"], "--temperature"),
        (["--temperature", "hot"], "--temperature"),
        (["--top-p", "0"], "--top-p"),
        (["--top-p", "1.5"], "--top-p"),
        (["--top-k", "-2"], "--top-k"),
        (["--min-p", "2"], "--min-p"),
        (["--repeat-penalty", "0"], "--repeat-penalty"),
        (["-n", "0"], "--max-tokens"),
        (["-c", "0"], "--ctx-size"),
        (["-t", "0"], "--threads"),
        (["-t", "100000"], "--threads"),
        (["--reasoning-effort", "extreme"], "--reasoning-effort"),
        (["--json", "--jsonl"], "cannot be used together"),
        (["--no-such-option"], "No such option"),
    ],
)
def test_bad_option_values_exit_2(env, model, args, needle):
    assert_user_error(run(env, "run", "-m", model, *args, "hi", check=False), needle, code=2)


def test_input_errors(env, model, tmp_path):
    assert_user_error(run(env, "run", "-m", model, "hi", stdin=b"caf\xe9\n", check=False),
                      "standard input is not valid UTF-8")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9")
    assert_user_error(run(env, "run", "-m", model, "-f", bad, check=False), "is not valid UTF-8")
    assert_user_error(run(env, "run", "-m", model, "-f", tmp_path / "none.txt", check=False), "prompt file not found")
    assert_user_error(run(env, "run", "-m", model, check=False), "no prompt", code=2)
    tools = tmp_path / "tools.json"
    tools.write_text("{not json")
    assert_user_error(run(env, "run", "-m", model, "--tools", tools, "hi", check=False), "is not valid JSON")
    assert_user_error(run(env, "run", "-m", model, "-c", "32", "hi", check=False),
                      "longer than the context of 32 tokens")
    assert_user_error(run(env, "run", "-m", model, "-c", "999999", "hi", check=False), "context length", code=2)


def test_help_and_version_do_not_import_numpy():
    code = (
        "import sys\n"
        "from gptoss_cli.cli import main\n"
        "for argv in (['--help'], ['--version'], ['run', '--help']):\n"
        "    sys.argv = ['gptoss', *argv]\n"
        "    try:\n        main()\n    except SystemExit as e:\n        assert e.code in (0, None), e.code\n"
        "bad = [m for m in ('numpy', 'numba', 'tiktoken') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr.decode()
    assert b"--reasoning-effort" in p.stdout and b"--max-tokens" in p.stdout


# -- Ctrl-C ---------------------------------------------------------------------------------------------


def test_ctrl_c_prints_what_was_produced_and_exits_130(env, model):
    proc = subprocess.Popen(
        [_gptoss(), "run", "-t", "1", "-m", model, "--raw", "-n", "100000", "--seed", "2", "hi"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    os.set_blocking(proc.stdout.fileno(), False)
    got = b""
    deadline = time.monotonic() + 120
    marker = b"<|start|>assistant"
    try:
        # wait until the prompt and a few generated tokens have been streamed
        while time.monotonic() < deadline:
            chunk = proc.stdout.read()
            if chunk:
                got += chunk
            if marker in got and len(got.split(marker, 1)[1]) >= 10:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = got + (rest or b"")
    err = err.decode()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "gptoss: interrupted"
    assert out.startswith(b"<|start|>system") and len(out.split(marker, 1)[1]) >= 10
    assert out.endswith(b"\n")


def test_prompt_cache_second_run_reuses_the_prompt(env, model, tmp_path):
    """A repeated run loads the prompt from the cache directory and prints the same text;
    --no-prompt-cache computes everything and leaves the cache alone."""
    e = {**env, "GPTOSS_HOME": str(tmp_path)}
    args = ("run", "-m", model, "--raw", "-n", "10", "--temperature", "0", "-v", "Tell me a story")
    first = run(e, *args)
    cache_dir = tmp_path / "cache" / "prompts"
    assert len(list(cache_dir.glob("*.npz"))) == 2
    second = run(e, *args)
    assert second.stdout == first.stdout
    assert "cached)" not in first.stderr.decode() and "cached)" in second.stderr.decode()
    off = run(e, *args, "--no-prompt-cache")
    assert off.stdout == first.stdout and "cached)" not in off.stderr.decode()
