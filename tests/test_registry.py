"""models.toml (catalogue), model-name resolution, the app paths, the user config, and `gptoss models`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptoss_cli import app_paths, catalogue, model_names, models_list, user_config
from gptoss_cli.errors import GptossError, ModelFileError
from gptoss_cli.toml_file import ConfigError

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
    entries = catalogue.load_models(REPO_TOML)
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
    assert catalogue.models_toml_path().resolve() == REPO_TOML.resolve()


def test_locations_follow_gptoss_home(home):
    assert app_paths.app_dir() == home
    assert app_paths.config_path() == home / "config.toml"
    assert app_paths.models_dir() == home / "models"
    (home / "config.toml").write_text(f'models_dir = "{home / "elsewhere"}"\n')
    assert app_paths.models_dir() == home / "elsewhere"


def test_existing_path_is_used_as_is(home, tmp_path):
    f = tmp_path / "any.gguf"
    f.write_bytes(b"x")
    assert model_names.resolve_model(str(f)) == f


@pytest.mark.parametrize("spec", ["gpt-oss-20b", "20b", "gpt-oss:20b", "GPT-OSS-20B"])
def test_name_and_alias_resolve_to_models_dir(home, spec):
    p = _touch_model(home)
    assert model_names.resolve_model(spec) == p


def test_not_downloaded_message(home):
    with pytest.raises(ModelFileError) as ei:
        model_names.resolve_model("20b")
    assert str(ei.value) == "model gpt-oss-20b is not downloaded; run: gptoss pull gpt-oss-20b"
    part = home / "models" / "gpt-oss-20b-mxfp4.gguf.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="partly downloaded; run: gptoss pull gpt-oss-20b"):
        model_names.resolve_model("gpt-oss-20b")


def test_split_model_needs_every_shard(home):
    _touch_model(home, "gpt-oss-120b-mxfp4-00001-of-00003.gguf")
    with pytest.raises(ModelFileError, match="not downloaded"):
        model_names.resolve_model("120b")
    _touch_model(home, "gpt-oss-120b-mxfp4-00002-of-00003.gguf")
    _touch_model(home, "gpt-oss-120b-mxfp4-00003-of-00003.gguf")
    assert model_names.resolve_model("120b").name == "gpt-oss-120b-mxfp4-00001-of-00003.gguf"


def test_unknown_name_and_missing_path(home):
    with pytest.raises(ModelFileError, match="unknown model 'llama'.*gpt-oss-20b"):
        model_names.resolve_model("llama")
    with pytest.raises(ModelFileError, match="no such file: ./nothere.gguf"):
        model_names.resolve_model("./nothere.gguf")


def test_none_uses_config_default(home):
    p = _touch_model(home)
    (home / "config.toml").write_text('default_model = "20b"\n')
    assert model_names.resolve_model(None) == p
    (home / "config.toml").write_text(f'default_model = "{p}"\n')
    assert model_names.resolve_model(None) == p


def test_none_without_default_asks_for_model(home, monkeypatch):
    monkeypatch.setattr(model_names, "builtin_default_model", lambda: None)  # a copy without the demo
    with pytest.raises(ModelFileError, match="no model given: pass -m/--model"):
        model_names.resolve_model(None)
    with pytest.raises(ModelFileError, match="demo model is not installed"):
        model_names.resolve_model("demo")
    monkeypatch.setattr(model_names, "builtin_default_model", lambda: Path("/demo.gguf"))
    assert model_names.resolve_model(None) == Path("/demo.gguf")
    assert model_names.resolve_model("gptoss-demo") == Path("/demo.gguf")


def test_run_defaults_from_config(home):
    assert user_config.run_defaults() == {}
    (home / "config.toml").write_text(
        "default_model = \"20b\"\n[run]\nthreads = 4\nctx-size = 8192\ntemperature = 1\n"
        'reasoning_effort = "high"\nseed = 7\nshow_reasoning = true\n'
    )
    d = user_config.run_defaults()
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
        ("run = 3\n", "'run' must be a table"),
        ("[run]\nprompt_cache = \"no\"\n", "'run.prompt_cache' must be true or false"),
    ],
)
def test_bad_config_is_one_clear_error(home, text, match):
    (home / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        user_config.run_defaults()


def test_prompt_cache_in_run_table(home):
    # the README documents `prompt_cache = false` under [run]
    (home / "config.toml").write_text("[run]\nprompt_cache = false\n")
    assert user_config.run_defaults() == {"prompt_cache": False}
    (home / "config.toml").write_text("[run]\nprompt-cache = true\n")
    assert user_config.run_defaults() == {"prompt_cache": True}


def test_option_tables_follow_the_options_declaration(tmp_path):
    """[run] and [serve] take the options gptoss_cli.options declares for them, checked by the
    same rule as their flags (a config temperature of -1 is refused like --temperature -1)."""
    where = tmp_path / "c.toml"
    assert user_config.check_option_table({"top-p": 1}, where) == {"top_p": 1.0}
    with pytest.raises(ConfigError, match="'run.temperature' is impossible: -1.0 \\(must be >= 0"):
        user_config.check_option_table({"temperature": -1.0}, where)
    with pytest.raises(ConfigError, match="unknown run option 'port' in \\[run\\]"):
        user_config.check_option_table({"port": 8081}, where)
    assert user_config.check_option_table({"port": 8081, "threads": 2}, where, "serve") == {"port": 8081, "threads": 2}
    with pytest.raises(ConfigError, match="'serve.port' is impossible"):
        user_config.check_option_table({"port": 0}, where, "serve")


@pytest.mark.parametrize(
    "data, match",
    [
        (b"default_model = \"caf\xe9\"\n", "is not UTF-8 text"),
        (b"\xff\xfe[\x00r\x00", "is not UTF-8 text"),
        (b"\x00\x01\x02", "not valid TOML"),
    ],
)
def test_config_not_utf8_or_not_toml_is_a_config_error(home, data, match):
    (home / "config.toml").write_bytes(data)
    with pytest.raises(ConfigError, match=match):
        user_config.load_user_config()


def test_cli_config_not_utf8_is_one_line(home):
    (home / "config.toml").write_bytes(b"models_dir = \"\xff\"\n")
    r = _cli(home, "models")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "not UTF-8" in r.stderr


def test_bad_models_toml(home, tmp_path, monkeypatch):
    t = tmp_path / "m.toml"
    monkeypatch.setenv("GPTOSS_MODELS_TOML", str(t))
    t.write_text('[models.a]\nsource = "http://x/a.gguf"\nsha256 = "abc"\n')
    with pytest.raises(ConfigError, match="64 hex"):
        catalogue.load_models()
    t.write_text('[models.a]\nsource = "http://x/a.gguf"\naliases = ["b"]\n[models.b]\nsource = "http://x/b.gguf"\n')
    with pytest.raises(ConfigError, match="used by both"):
        catalogue.load_models()
    t.write_text('[models.a]\naliases = ["b"]\n')
    with pytest.raises(ConfigError, match="needs a 'source'"):
        catalogue.load_models()
    assert issubclass(ConfigError, GptossError)


def test_list_models_reports_presence_digest_and_extra_files(home):
    p = _touch_model(home, data=b"GGUF1234")
    (p.parent / (p.name + ".sha256")).write_text("ab" * 32 + f"  {p.name}\n")
    _touch_model(home, "my-finetune.gguf", b"GGUF")
    items = {m["name"]: m for m in models_list.list_models()}
    m = items["gpt-oss-20b"]
    assert m["present"] and m["path"] == str(p) and m["size"] == 8 and m["sha256"] == "ab" * 32
    assert m["aliases"] == ["20b", "gpt-oss:20b"]
    assert not items["gpt-oss-120b"]["present"] and items["gpt-oss-120b"]["size"] is None
    assert items["my-finetune"]["known"] is False and items["my-finetune"]["present"]


def test_listed_local_files_resolve(home):
    """A file pulled by URL is listed under a name that run -m accepts."""
    p = _touch_model(home, "my-finetune.gguf")
    clash = _touch_model(home, "20b.gguf")  # its stem is an alias of gpt-oss-20b
    names = {m["name"]: m for m in models_list.list_models() if not m["known"]}
    assert set(names) == {"my-finetune", "20b.gguf"}
    for name, m in names.items():
        assert model_names.resolve_model(name) == Path(m["path"])
    assert model_names.resolve_model("my-finetune.gguf") == p
    assert model_names.resolve_model("20b.gguf") == clash
    with pytest.raises(ModelFileError, match="not downloaded"):
        model_names.resolve_model("20b")  # the catalogue name still wins
    with pytest.raises(ModelFileError, match="unknown model 'other'"):
        model_names.resolve_model("other")


@pytest.mark.parametrize(
    "n, text", [(0, "0 B"), (999, "999 B"), (23_456_789, "23.5 MB"), (999_949_999, "999.9 MB"),
                (12_800_000_000, "12.8 GB"), (3_000_000_000_000, "3.0 TB")],
)
def test_format_bytes_units(n, text):
    from gptoss_cli.byte_sizes import format_bytes

    assert format_bytes(n) == text


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
    assert row20.split()[3:5] == ["4", "B"]  # a 4-byte file is not "0.0 GB"
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
        "import sys, gptoss_cli.app_paths, gptoss_cli.user_config, gptoss_cli.catalogue, gptoss_cli.model_names, gptoss_cli.pull, gptoss_cli.models_list, gptoss_cli.gguf_check;"
        "bad = [m for m in ('numpy', 'numba', 'tiktoken') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
