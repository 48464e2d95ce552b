"""--json-schema, --json-object and --grammar through the installed `gptoss run` (demo and tiny models)."""

from __future__ import annotations

import json
import subprocess

import jsonschema
import pytest

from test_cli_run import _gptoss, env  # noqa: F401 - the installed executable and its GPTOSS_HOME

SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no"]}, "n": {"type": "integer", "minimum": 0, "maximum": 99}},
    "required": ["answer", "n"],
    "additionalProperties": False,
}


@pytest.fixture()
def files(tmp_path):
    def write(name: str, data) -> str:
        p = tmp_path / name
        p.write_text(data if isinstance(data, str) else json.dumps(data))
        return str(p)

    return write


def gptoss(env, *args) -> subprocess.CompletedProcess:
    args = ["run", "-t", "1", *[str(a) for a in args]]  # one thread: the other core may be busy
    return subprocess.run([_gptoss(), *args], capture_output=True, env=env, timeout=300)


def one_line_error(p: subprocess.CompletedProcess, *needles: str) -> None:
    err = p.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("gptoss: error: "), err
    for n in needles:
        assert n in lines[0], err


# -- refusals come before the model is loaded (the model named here does not exist) -------------------


def test_bad_schema_grammar_or_tool_parameters_exit_2_before_the_model_loads(env, files):
    missing = "/nonexistent/model.gguf"
    bad = files("bad.json", {"type": "object", "properties": {"a": {"type": "string", "pattern": "[a-"}}})
    one_line_error(gptoss(env, "-m", missing, "--json-schema", bad, "hi"),
                   "invalid value for --json-schema", "regex parse error", "at /properties/a/pattern")
    one_line_error(gptoss(env, "-m", missing, "--grammar", files("g.lark", "start: x\n"), "hi"),
                   "invalid value for --grammar", "line 1, column 8", "unknown name")
    one_line_error(gptoss(env, "-m", missing, "--json-schema", files("s.json", SCHEMA), "--json-object", "hi"),
                   "--json-schema and --json-object cannot be used together")
    tools = files("tools.json", [{"type": "function", "function": {"name": "f", "parameters": {"type": "obj"}}}])
    one_line_error(gptoss(env, "-m", missing, "--tools", tools, "hi"), "tool f parameters: Invalid type: obj")
    one_line_error(gptoss(env, "-m", missing, "--json-schema", files("x.json", "{oops"), "hi"), "is not valid JSON")


# -- the demo model: real Harmony, so it reaches the final channel ------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_demo_model_answers_with_a_valid_object(env, files, seed):
    p = gptoss(env, "--json-schema", files("answer.json", SCHEMA), "--json", "--seed", seed, "-n", "200",
               "What is 23 + 48?")
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    assert out["stop_reason"] == "stop", out
    jsonschema.validate(json.loads(out["final"]), SCHEMA)


def test_demo_model_grammar_and_a_cut_value(env, files):
    p = gptoss(env, "--grammar", files("yn.lark", 'start: "yes" | "no"\n'), "--json", "--seed", "1", "-n", "200",
               "Is 2 bigger than 1?")
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout)["final"] in ("yes", "no")
    p = gptoss(env, "--json-schema", files("answer.json", SCHEMA), "--json", "--seed", "1", "-n", "4", "Hi")
    out = json.loads(p.stdout)
    assert out["stop_reason"] == "max_tokens"
    with pytest.raises(json.JSONDecodeError):
        json.loads(out["final"])  # cut inside the value: nothing claims it is complete


# -- the tiny random model: the prompt carries the format ----------------------------------------------


def test_raw_prompt_has_the_response_formats_section(env, files, tiny_harmony_gguf):
    schema = dict(SCHEMA, description="Yes or no, and a number.")
    p = gptoss(env, "-m", tiny_harmony_gguf, "--raw", "-n", "3", "--seed", "1", "--system", "Be terse.",
               "--json-schema", files("answer.json", schema), "Is it?")
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode()
    assert ("<|start|>developer<|message|># Instructions\n\nBe terse.\n\n# Response Formats\n\n## answer\n\n"
            "// Yes or no, and a number.\n{\"type\":\"object\"") in out
    completion = out.split("<|start|>assistant", 1)[1]
    assert completion.startswith("<|channel|>")  # the header is held to Harmony from its first token


# -- gptoss bench --json-schema ------------------------------------------------------------------------


def test_bench_decodes_with_and_without_the_schema(env, files):
    schema = files("answer.json", SCHEMA)
    p = subprocess.run([_gptoss(), "bench", "--json-schema", schema, "--tg", "6", "--reps", "2", "-t", "1"],
                       capture_output=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    out = json.loads(p.stdout)
    assert out["tg"] == 6 and len(out["rounds"]["free"]) == len(out["rounds"]["constrained"]) == 2
    assert out["tg_tok_s_free"] > 0 and out["tg_tok_s_constrained"] > 0 and out["constraint_ms_per_token"] > 0
    bad = files("bad.json", {"type": "object", "properties": {"a": {"type": "strin"}}})
    p = subprocess.run([_gptoss(), "bench", "--json-schema", bad, "--synthetic", "20b"], capture_output=True,
                       env=env, timeout=60)
    one_line_error(p, "Invalid type: strin", "at /properties/a/type")  # before any model file is written
