"""models.toml, model-name resolution, the user config, and `gptoss models`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptoss_cli import registry
from gptoss_cli.errors import GptossError, ModelFileError

GPTOSS = str(Path(sys.executable).with_name("gptoss"))
REPO_TOML = Path(__file__).resolve().parent.parent / "models.toml"


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("GPTOSS_HOME", str(h))
    monkeypatch.delenv("GPTOSS_MODELS_TOML", raising=False)
    return h


def _touch_model(home: Path, name: str = "gpt-oss-20b-mxfp4.gguf", data: bytes = b"GGUF") -> Path:
    p = home / "models" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_repo_models_toml_parses():
    entries = registry.load_models(REPO_TOML)
    names = {e.name: e for e in entries}
    assert set(names) >= {"gpt-oss-20b", "gpt-oss-120b"}
    e20 = names["gpt-oss-20b"]
    assert "20b" in e20.aliases and e20.files == ["gpt-oss-20b-mxfp4.gguf"]
    e120 = names["gpt-oss-120b"]
    assert e120.files == [f"gpt-oss-120b-mxfp4-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert all(u.startswith("https://huggingface.co/ggml-org/") for u in e120.sources)
    # no digest is invented
    assert e20.sha256 is None and e120.sha256 is None


def test_default_models_toml_is_found(home):
    assert registry.models_toml_path().resolve() == REPO_TOML.resolve()


def test_locations_follow_gptoss_home(home):
    assert registry.app_dir() == home
    assert registry.config_path() == home / "config.toml"
    assert registry.models_dir() == home / "models"
    (home / "config.toml").write_text(f'models_dir = "{home / "elsewhere"}"\n')
    assert registry.models_dir() == home / "elsewhere"


def test_existing_path_is_used_as_is(home, tmp_path):
    f = tmp_path / "any.gguf"
    f.write_bytes(b"x")
    assert registry.resolve_model(str(f)) == f


@pytest.mark.parametrize("spec", ["gpt-oss-20b", "20b", "gpt-oss:20b", "GPT-OSS-20B"])
def test_name_and_alias_resolve_to_models_dir(home, spec):
    p = _touch_model(home)
    assert registry.resolve_model(spec) == p


def test_not_downloaded_message(home):
    with pytest.raises(ModelFileError) as ei:
        registry.resolve_model("20b")
    assert str(ei.value) == "model gpt-oss-20b is not downloaded; run: gptoss pull gpt-oss-20b"
    part = home / "models" / "gpt-oss-20b-mxfp4.gguf.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="partly downloaded; run: gptoss pull gpt-oss-20b"):
        registry.resolve_model("gpt-oss-20b")


def test_split_model_needs_every_shard(home):
    _touch_model(home, "gpt-oss-120b-mxfp4-00001-of-00003.gguf")
    with pytest.raises(ModelFileError, match="not downloaded"):
        registry.resolve_model("120b")
    _touch_model(home, "gpt-oss-120b-mxfp4-00002-of-00003.gguf")
    _touch_model(home, "gpt-oss-120b-mxfp4-00003-of-00003.gguf")
    assert registry.resolve_model("120b").name == "gpt-oss-120b-mxfp4-00001-of-00003.gguf"


def test_unknown_name_and_missing_path(home):
    with pytest.raises(ModelFileError, match="unknown model 'llama'.*gpt-oss-20b"):
        registry.resolve_model("llama")
    with pytest.raises(ModelFileError, match="no such file: ./nothere.gguf"):
        registry.resolve_model("./nothere.gguf")


def test_none_uses_config_default(home):
    p = _touch_model(home)
    (home / "config.toml").write_text('default_model = "20b"\n')
    assert registry.resolve_model(None) == p
    (home / "config.toml").write_text(f'default_model = "{p}"\n')
    assert registry.resolve_model(None) == p


def test_none_without_default_asks_for_model(home, monkeypatch):
    monkeypatch.setattr(registry, "builtin_default_model", lambda: None)  # a copy without the demo
    with pytest.raises(ModelFileError, match="no model given: pass -m/--model"):
        registry.resolve_model(None)
    with pytest.raises(ModelFileError, match="demo model is not installed"):
        registry.resolve_model("demo")
    monkeypatch.setattr(registry, "builtin_default_model", lambda: Path("/demo.gguf"))
    assert registry.resolve_model(None) == Path("/demo.gguf")
    assert registry.resolve_model("gptoss-demo") == Path("/demo.gguf")


def test_run_defaults_from_config(home):
    assert registry.run_defaults() == {}
    (home / "config.toml").write_text(
        "default_model = \"20b\"\n[run]\nthreads = 4\nctx-size = 8192\ntemperature = 1\n"
        'reasoning_effort = "high"\nseed = 7\nshow_reasoning = true\n'
    )
    d = registry.run_defaults()
    assert d == {"threads": 4, "ctx_size": 8192, "temperature": 1.0, "reasoning_effort": "high", "seed": 7,
                 "show_reasoning": True}
    assert isinstance(d["temperature"], float)


@pytest.mark.parametrize(
    "text, match",
    [
        ("default_model = 3\n", "'default_model' must be a string"),
        ("[run]\nthreads = \"four\"\n", "'run.threads' must be an integer"),
        ("[run]\nthreads = true\n", "'run.threads' must be an integer"),
        ("[run]\ntemprature = 1.0\n", "unknown run option 'temprature'"),
        ("threads = 4\n", "unknown key 'threads'"),
        ("[run]\nreasoning_effort = \"max\"\n", "low, medium or high"),
        ("[run]\ntemperature = \"hot\"\n", "'run.temperature' must be a number"),
        ("offline = 1\n", "'offline' must be true or false"),
        ("default_model = \n", "not valid TOML"),
    ],
)
def test_bad_config_is_one_clear_error(home, text, match):
    (home / "config.toml").write_text(text)
    with pytest.raises(registry.ConfigError, match=match):
        registry.run_defaults()


def test_bad_models_toml(home, tmp_path, monkeypatch):
    t = tmp_path / "m.toml"
    monkeypatch.setenv("GPTOSS_MODELS_TOML", str(t))
    t.write_text('[models.a]\nsource = "http://x/a.gguf"\nsha256 = "abc"\n')
    with pytest.raises(registry.ConfigError, match="64 hex"):
        registry.load_models()
    t.write_text('[models.a]\nsource = "http://x/a.gguf"\naliases = ["b"]\n[models.b]\nsource = "http://x/b.gguf"\n')
    with pytest.raises(registry.ConfigError, match="used by both"):
        registry.load_models()
    t.write_text('[models.a]\naliases = ["b"]\n')
    with pytest.raises(registry.ConfigError, match="needs a 'source'"):
        registry.load_models()
    assert issubclass(registry.ConfigError, GptossError)


def test_list_models_reports_presence_digest_and_extra_files(home):
    p = _touch_model(home, data=b"GGUF1234")
    (p.parent / (p.name + ".sha256")).write_text("ab" * 32 + f"  {p.name}\n")
    _touch_model(home, "my-finetune.gguf", b"GGUF")
    items = {m["name"]: m for m in registry.list_models()}
    m = items["gpt-oss-20b"]
    assert m["present"] and m["path"] == str(p) and m["size"] == 8 and m["sha256"] == "ab" * 32
    assert m["aliases"] == ["20b", "gpt-oss:20b"]
    assert not items["gpt-oss-120b"]["present"] and items["gpt-oss-120b"]["size"] is None
    assert items["my-finetune"]["known"] is False and items["my-finetune"]["present"]


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "GPTOSS_MODELS_TOML"}
    env["GPTOSS_HOME"] = str(home)
    env["COLUMNS"] = "200"
    return subprocess.run([GPTOSS, *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_models_table_and_json(home):
    p = _touch_model(home)
    r = _cli(home, "models")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ALIASES", "SIZE", "STATUS", "PATH"]
    row20 = next(line for line in lines if line.startswith("gpt-oss-20b"))
    assert "downloaded" in row20 and str(p) in row20
    row120 = next(line for line in lines if line.startswith("gpt-oss-120b"))
    assert "~60 GB" in row120 and "downloaded" not in row120
    assert f"models directory: {home / 'models'}" in r.stdout
    r = _cli(home, "models", "--json")
    data = [m for m in json.loads(r.stdout) if not m.get("demo")]  # the built-in demo is listed first
    assert [m["name"] for m in data] == ["gpt-oss-20b", "gpt-oss-120b"]
    assert data[0]["present"] is True and data[0]["path"] == str(p)


def test_cli_bad_config_is_one_line(home):
    (home / "config.toml").write_text("[run]\nthreads = 'x'\n")
    r = _cli(home, "models")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("gptoss: error:")


def test_modules_stay_light():
    code = (
        "import sys, gptoss_cli.registry, gptoss_cli.pull;"
        "bad = [m for m in ('numpy', 'numba', 'tiktoken') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
