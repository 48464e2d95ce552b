"""`gptoss tokenize`, `gptoss harmony render`, `gptoss harmony parse` through the installed executable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import openai_harmony as oh
import pytest


def _gptoss() -> str:
    exe = Path(sys.executable).with_name("gptoss")
    if exe.exists():
        return str(exe)
    found = shutil.which("gptoss")
    if found is None:
        pytest.skip("the gptoss console script is not installed (pip install -e .)")
    return found


def run(*args, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_ENCODINGS_BASE"}
    p = subprocess.run(
        [_gptoss(), *map(str, args)], input=stdin if stdin is not None else b"", capture_output=True, env=env, timeout=120
    )
    if check:
        assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p


def assert_user_error(p: subprocess.CompletedProcess, needle: str, code: int = 1) -> None:
    err = p.stderr.decode("utf-8", "replace")
    assert p.returncode == code, (p.returncode, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0], err


def test_help_and_version_are_light():
    p = run("--version")
    assert p.stdout.decode().strip() == "gptoss 0.1.0"
    assert b"tokenize" in run("--help").stdout
    assert b"render" in run("harmony", "--help").stdout
    # --help must not import numpy, numba or tiktoken
    code = (
        "import sys; sys.argv=['gptoss','--help']\n"
        "from gptoss_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "bad=[m for m in ('numpy','numba','tiktoken') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_option_help_names_values_not_types():
    """Every option's placeholder says what the value is (N, FILE, SIZE, ...), never a type like <int>
    (a list of choices, <a|b>, is fine), and no option states its default twice."""
    import re

    for command in ("run", "chat", "serve", "bench", "convert", "quantize", "tokenize", "models", "pull"):
        text = run(command, "--help").stdout.decode()
        options = [line for line in text.splitlines() if re.match(r"\s+(-\w, )?--", line)]
        assert options, command
        for line in options:
            assert not re.search(r"<(int|str|float|bool|text|integer)>", line, re.I), (command, line)
        assert not re.search(r"\(default: [^)]*\)\s+\[default:", " ".join(text.split())), command


def test_tokenize(o200k_gguf, tiktoken_oracle):
    text = "Hello, world! Привет 😶‍🌫️ <|start|>"
    p = run("tokenize", "-m", o200k_gguf, text)
    assert [int(x) for x in p.stdout.split()] == tiktoken_oracle.encode_ordinary(text)
    p = run("tokenize", "-m", o200k_gguf, "--json", "-", stdin=text.encode())
    assert json.loads(p.stdout) == tiktoken_oracle.encode_ordinary(text)
    p = run("tokenize", "--model", o200k_gguf, "--json", "--special", "<|start|>user")
    assert json.loads(p.stdout) == [200006, 1428]
    lines = ["a b", "", "line\nbreak", "<|end|>", "日本"]
    stdin = "\n".join(json.dumps(x) for x in lines).encode() + b"\n"
    p = run("tokenize", "-m", o200k_gguf, "--jsonl", stdin=stdin)
    out = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert out == [tiktoken_oracle.encode_ordinary(x) for x in lines]
    p = run("tokenize", "-m", o200k_gguf, "--json", stdin=b"from stdin\n")
    assert json.loads(p.stdout) == tiktoken_oracle.encode_ordinary("from stdin\n")


def test_tokenize_errors(o200k_gguf, tmp_path):
    assert_user_error(run("tokenize", "-m", tmp_path / "nope.gguf", "x", check=False), "not found")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a model file at all")
    assert_user_error(run("tokenize", "-m", junk, "x", check=False), "not a GGUF")
    assert_user_error(run("tokenize", "-m", o200k_gguf, "-", stdin=b"ok \xff\xfe", check=False), "UTF-8")
    # non-UTF-8 bytes in the argument itself
    p = subprocess.run([_gptoss(), "tokenize", "-m", str(o200k_gguf), b"caf\xe9"], capture_output=True, timeout=120)
    assert_user_error(p, "UTF-8")
    assert_user_error(run("tokenize", "-m", o200k_gguf, "--jsonl", stdin=b'"ok"\n{bad\n', check=False), "line 2")
    assert_user_error(run("tokenize", "-m", o200k_gguf, "--jsonl", stdin=b"42\n", check=False), "JSON string")
    p = run("tokenize", "x", check=False)  # missing -m: a usage error from Typer
    assert p.returncode == 2 and b"Traceback" not in p.stderr


def _conversation_json() -> str:
    tools = [
        oh.ToolDescription.new(
            "get_weather",
            "Gets the weather.",
            {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]},
        )
    ]
    msgs = [
        oh.Message.from_role_and_content(oh.Role.SYSTEM, oh.SystemContent.new().with_conversation_start_date("2025-08-01")),
        oh.Message.from_role_and_content(oh.Role.DEVELOPER, oh.DeveloperContent.new().with_instructions("Be brief.").with_function_tools(tools)),
        oh.Message.from_role_and_content(oh.Role.USER, "Weather in Oslo?"),
        oh.Message.from_role_and_content(oh.Role.ASSISTANT, "Need the tool.").with_channel("analysis"),
        oh.Message.from_role_and_content(oh.Role.ASSISTANT, '{"city":"Oslo"}')
        .with_channel("commentary")
        .with_recipient("functions.get_weather")
        .with_content_type("<|constrain|>json"),
        oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, "functions.get_weather"), '{"t": -3}')
        .with_channel("commentary")
        .with_recipient("assistant"),
    ]
    return oh.Conversation.from_messages(msgs).to_json()


def test_harmony_render(o200k_gguf, tmp_path, harmony_oracle):
    payload = _conversation_json()
    path = tmp_path / "conv.json"
    path.write_text(payload)
    expected = harmony_oracle.render_conversation_for_completion(oh.Conversation.from_json(payload), oh.Role.ASSISTANT)
    assert json.loads(run("harmony", "render", "-m", o200k_gguf, path).stdout) == expected
    assert json.loads(run("harmony", "render", "-m", o200k_gguf, path, "--json").stdout) == expected
    text = run("harmony", "render", "-m", o200k_gguf, path, "--text").stdout.decode()
    assert text == harmony_oracle.decode(expected) + "\n"
    assert text.startswith("<|start|>system<|message|>") and text.endswith("<|start|>assistant\n")
    p = run("harmony", "render", "-m", o200k_gguf, "-", "--role", "none", stdin=payload.encode())
    assert json.loads(p.stdout) == harmony_oracle.render_conversation(oh.Conversation.from_json(payload))


def test_harmony_render_errors(o200k_gguf, tmp_path):
    assert_user_error(run("harmony", "render", "-m", o200k_gguf, tmp_path / "missing.json", check=False), "not found")
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": [')
    assert_user_error(run("harmony", "render", "-m", o200k_gguf, bad, check=False), "not valid JSON")
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"messages": [{"role": "wizard", "content": "x"}]}')
    assert_user_error(run("harmony", "render", "-m", o200k_gguf, wrong, check=False), "unknown role")
    latin = tmp_path / "latin1.json"
    latin.write_bytes('{"messages": [{"role": "user", "content": "café"}]}'.encode("latin-1"))
    assert_user_error(run("harmony", "render", "-m", o200k_gguf, latin, check=False), "UTF-8")
    good = tmp_path / "good.json"
    good.write_text(_conversation_json())
    assert_user_error(run("harmony", "render", "-m", tmp_path / "none.gguf", good, check=False), "not found")
    p = run("harmony", "render", "-m", o200k_gguf, good, "--role", "wizard", check=False)
    assert p.returncode == 2 and b"Traceback" not in p.stderr
    p = run("harmony", "render", "-m", o200k_gguf, good, "--json", "--text", check=False)
    assert p.returncode == 2 and b"Traceback" not in p.stderr


def test_harmony_parse(o200k_gguf, tmp_path, o200k_tokenizer, harmony_oracle):
    text = (
        "<|channel|>analysis<|message|>Need weather.<|end|>"
        '<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Oslo"}<|call|>'
    )
    tokens = o200k_tokenizer.encode(text, allow_special=True)
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(tokens))
    expected = [m.to_dict() for m in harmony_oracle.parse_messages_from_completion_tokens(tokens, oh.Role.ASSISTANT)]
    got = json.loads(run("harmony", "parse", "-m", o200k_gguf, path, "--json").stdout)
    assert got == json.loads(json.dumps(expected))
    readable = run("harmony", "parse", "-m", o200k_gguf, path).stdout.decode()
    assert "assistant [analysis]" in readable and "to=functions.get_weather" in readable
    # tokens that begin with <|start|>: role detected automatically, or given
    full = [o200k_tokenizer.token_id("<|start|>")] + o200k_tokenizer.encode("assistant", False) + tokens
    p = run("harmony", "parse", "-m", o200k_gguf, "-", "--json", stdin=json.dumps(full).encode())
    assert json.loads(p.stdout) == json.loads(json.dumps(expected))
    p = run("harmony", "parse", "-m", o200k_gguf, "-", "--json", "--role", "none", stdin=json.dumps(full).encode())
    assert json.loads(p.stdout) == json.loads(json.dumps(expected))
    # malformed tokens do not fail: raw text comes back
    p = run("harmony", "parse", "-m", o200k_gguf, "-", "--json", stdin=json.dumps(o200k_tokenizer.encode("just text")).encode())
    assert json.loads(p.stdout)[0]["content"][0]["text"] == "just text"


def test_harmony_parse_errors(o200k_gguf, tmp_path):
    def parse_stdin(data: bytes):
        return run("harmony", "parse", "-m", o200k_gguf, "-", stdin=data, check=False)

    assert_user_error(parse_stdin(b"[1, 2"), "not valid JSON")
    assert_user_error(parse_stdin(b'{"a": 1}'), "JSON array")
    assert_user_error(parse_stdin(b'[1, "x"]'), "not an integer")
    assert_user_error(parse_stdin(b"[1, 999999999]"), "outside the vocabulary")
    assert_user_error(parse_stdin(b"[1, -5]"), "outside the vocabulary")
    assert_user_error(parse_stdin(b"\xff\xfe["), "UTF-8")
    assert_user_error(run("harmony", "parse", "-m", o200k_gguf, tmp_path / "nope.json", check=False), "not found")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    assert_user_error(run("harmony", "parse", "-m", junk, "-", stdin=b"[1]", check=False), "GGUF")
