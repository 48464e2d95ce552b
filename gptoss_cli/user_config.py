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

__all__ = ["RUN_OPTION_CHOICES", "RUN_OPTION_TYPES", "check_run_table", "load_user_config", "run_defaults"]

OptionType = type | tuple[type, ...]

#: run options the user config may set under [run], with their types. The one list
#: check_run_table reads; (int, float) means "a number", stored as a float.
RUN_OPTION_TYPES: dict[str, OptionType] = {
    "threads": int,
    "ctx_size": int,
    "max_tokens": int,
    "temperature": (int, float),
    "top_p": (int, float),
    "top_k": int,
    "min_p": (int, float),
    "repeat_penalty": (int, float),
    "seed": int,
    "reasoning_effort": str,
    "system": str,
    "show_reasoning": bool,
    "prompt_cache": bool,
}

#: run options whose value must be one of a few words.
RUN_OPTION_CHOICES: dict[str, tuple[str, ...]] = {
    "reasoning_effort": ("low", "medium", "high"),
}

_TOP_LEVEL_TYPES: dict[str, OptionType] = {"default_model": str, "models_dir": str, "offline": bool, "run": dict}

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


def check_run_table(
    raw: Mapping[str, Any], path: Path, types: Mapping[str, OptionType] = RUN_OPTION_TYPES
) -> dict[str, Any]:
    """The [run] table checked against `types`: keys with underscores, numbers as floats.

    Raises ConfigError for an unknown option, a value of the wrong type, or a word
    outside its choices.
    """
    run = _checked_keys(raw, types, path, "run.", "unknown run option '{key}' in [run] (known: {known})")
    for k, value in run.items():
        choices = RUN_OPTION_CHOICES.get(k)
        if choices and value not in choices:
            words = ", ".join(choices[:-1]) + f" or {choices[-1]}"
            raise ConfigError(f"{path}: 'run.{k}' must be {words}, not {value!r}")
        if types[k] == (int, float):
            run[k] = float(value)
    return run


def load_user_config() -> dict[str, Any]:
    """The user config as a dict ({} when there is no config file), checked, keys normalised."""
    path = config_path()
    try:
        raw = read_toml(path, "config")
    except FileNotFoundError:
        return {}
    cfg = _checked_keys(raw, _TOP_LEVEL_TYPES, path, "",
                        "unknown key '{key}' (known: {known}; run options go under [run])")
    cfg["run"] = check_run_table(cfg.get("run", {}), path)
    return cfg


def run_defaults() -> dict[str, Any]:
    """Default options for `gptoss run` / `chat` from the user config's [run] table.

    Keys are the option names with underscores (see RUN_OPTION_TYPES); only keys
    the user set are present. Command-line options win over these.
    """
    return dict(load_user_config().get("run", {}))
