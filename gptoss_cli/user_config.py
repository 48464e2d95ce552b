"""The user config, ``<app dir>/config.toml``: reading it and checking every key.

All keys are optional::

    default_model = "gpt-oss-20b"     # a name, alias or path, used when -m is not given
    models_dir = "/data/gguf"         # where `gptoss pull` puts files
    offline = false                   # true: `gptoss pull` refuses to use the network

    [run]                             # defaults for `gptoss run` / `gptoss chat`
    threads = 8
    ctx_size = 8192
    temperature = 1.0
    reasoning_effort = "medium"
    prompt_cache = false

A wrong key or value is one ConfigError line naming the file and the key, so a
typo never silently does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .app_paths import config_path
from .toml_file import ConfigError, read_toml

__all__ = ["check_option_table", "load_user_config", "run_defaults"]

OptionType = type | tuple[type, ...]

#: the option tables: [run] for run and chat, [serve] for serve (their keys: gptoss_cli.options)
OPTION_TABLES = ("run", "serve")

_TOP_LEVEL_TYPES: dict[str, OptionType] = {
    "default_model": str, "models_dir": str, "offline": bool, "run": dict, "serve": dict,
}

_TYPE_WORDS = {int: "an integer", str: "a string", bool: "true or false", dict: "a table"}


def _check_type(key: str, value: Any, typ: OptionType, where: Path) -> None:
    types = typ if isinstance(typ, tuple) else (typ,)
    ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
    if not ok:
        want = "a number" if float in types else _TYPE_WORDS.get(types[0], types[0].__name__)
        raise ConfigError(f"{where}: '{key}' must be {want}, not {value!r}")


def _checked_keys(
    raw: Mapping[str, Any], types: Mapping[str, OptionType], path: Path, prefix: str, unknown: str
) -> dict[str, Any]:
    """`raw` with keys normalised (dashes to underscores), each known to `types` and of its type.

    `unknown` is the message for an unknown key, with {key} and {known} to fill in.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        k = key.replace("-", "_")
        if k not in types:
            raise ConfigError(f"{path}: " + unknown.format(key=key, known=", ".join(sorted(types))))
        _check_type(prefix + k, value, types[k], path)
        out[k] = value
    return out


def check_option_table(raw: Mapping[str, Any], path: Path, table: str = "run") -> dict[str, Any]:
    """An option table ([run] or [serve]) checked: keys with underscores, each an option of
    that table (gptoss_cli.options) of the right type and within its option's rule (the rule
    its flag has too), numbers as floats. Raises one ConfigError line otherwise."""
    from .options import config_types, problem

    types = config_types(table)
    out = _checked_keys(raw, types, path, f"{table}.", f"unknown {table} option '{{key}}' in [{table}] (known: {{known}})")
    for k, value in out.items():
        why = problem(k, value)
        if why is not None:
            raise ConfigError(f"{path}: '{table}.{k}' is impossible: {why}")
        if types[k] == (int, float):
            out[k] = float(value)
    return out


def load_user_config() -> dict[str, Any]:
    """The user config as a dict ({} when there is no config file), checked, keys normalised."""
    path = config_path()
    try:
        raw = read_toml(path, "config")
    except FileNotFoundError:
        return {}
    cfg = _checked_keys(raw, _TOP_LEVEL_TYPES, path, "",
                        "unknown key '{key}' (known: {known}; run options go under [run])")
    for table in OPTION_TABLES:
        cfg[table] = check_option_table(cfg.get(table, {}), path, table)
    return cfg


def run_defaults() -> dict[str, Any]:
    """Default options for `gptoss run` / `chat` from the user config's [run] table.

    Keys are the option names with underscores (gptoss_cli.options); only keys
    the user set are present. Command-line options win over these.
    """
    return dict(load_user_config().get("run", {}))
