"""The options of `run`, `chat` and `serve` (and -m / -t of the other commands), each declared once.

One `Option` per setting holds its type, built-in default, flags, help, rule
and which commands take it. From that one table come:

- `Settings`, the dataclass every command's options travel in (None: not given);
- `resolve()`: a value not given on the command line comes from its
  environment variable or config.toml (`[run]`; serve reads `[serve]` first),
  else the built-in default, and every value is checked by the same rule,
  whichever place it came from;
- `config_types()`: the schema of those tables (gptoss_cli.user_config);
- `cli_options()`: the Typer parameters of a command, flags and help text;
- `sampling_params()`: the sampler's settings;
- chat's `/set` keys (`SET_KEYS`), their aliases and their descriptions.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Callable, Optional

from .errors import OptionError

__all__ = [
    "Option",
    "OPTIONS",
    "Settings",
    "SET_KEYS",
    "resolve",
    "problem",
    "config_types",
    "cli_options",
    "sampling_params",
    "flag_of",
    "option",
    "help_text",
    "RUN",
    "CHAT",
    "SERVE",
]

Check = Callable[[Any], Optional[str]]


def _finite(check: Check) -> Check:
    def run(v: Any) -> str | None:
        if not math.isfinite(float(v)):
            return f"{v} is not a finite number"
        return check(v)

    return run


def _at_least_one(v: Any) -> str | None:
    return f"{v} (must be >= 1)" if v < 1 else None


def _format_problem(kind: str, path: Any) -> str | None:
    """Why a --json-schema / --grammar file is unusable (gptoss_cli.structured's one line), or None."""
    from .structured.formats import load_format_file

    try:
        load_format_file(kind, str(path))
    except OptionError as e:
        return str(e)
    return None


def _budget_problem(v: Any) -> str | None:
    from .memory_budget import size_problem

    return size_problem(v)


@dataclass(frozen=True)
class Option:
    """One setting: what it is, where it may be given, and what values it takes."""

    name: str  # the Settings field, the config.toml key
    type: type  # int, float, str or bool
    default: Any  # the built-in default
    flags: tuple[str, ...]  # e.g. ("-t", "--threads"), or ("--show-reasoning/--hide-reasoning",)
    help: str
    commands: frozenset[str]
    check: Check | None = None  # why a value is impossible (None: fine)
    choices: tuple[str, ...] = ()
    config: bool = True  # may be set under [run] in config.toml
    default_for: dict[str, Any] = field(default_factory=dict)  # other defaults per command
    help_for: dict[str, str] = field(default_factory=dict)  # other help per command
    set_key: str | None = None  # chat's /set name
    set_aliases: tuple[str, ...] = ()
    set_help: str = ""  # what /set takes
    show_default: bool = True
    unset: str = ""  # what no value means, for the help text ("no limit")
    metavar: str = ""  # the value's placeholder in the help (default: N, X or TEXT by type)
    env: str | None = None  # an environment variable that gives the value when no flag does

    def default_of(self, command: str) -> Any:
        return self.default_for.get(command, self.default)


RUN, CHAT, SERVE = "run", "chat", "serve"
_GEN = frozenset({RUN, CHAT})
_ALL = frozenset({RUN, CHAT, SERVE})
_PORT = (lambda v: None if 1 <= v <= 65535 else f"{v} (must be a TCP port, 1 .. 65535)")

OPTIONS: tuple[Option, ...] = (
    Option("model", str, None, ("-m", "--model"), "GGUF path, or a model name or alias (see: gptoss models).",
           _ALL, config=False, show_default=False, metavar="MODEL"),
    Option("file", str, None, ("-f", "--file"), "Read the prompt (after PROMPT) from a file; '-' for stdin.",
           frozenset({RUN}), config=False, show_default=False, metavar="FILE"),
    Option("system", str, None, ("--system",), "Developer instructions (the developer message).", _GEN,
           set_key="system", set_aliases=("instructions",),
           set_help="text for the developer message; nothing clears it", show_default=False),
    Option("reasoning_effort", str, "medium", ("-r", "--reasoning-effort"),
           "How much the model reasons before answering: low, medium or high.", _ALL, choices=("low", "medium", "high"),
           set_key="reasoning", set_aliases=("reasoning_effort", "effort"), set_help="low | medium | high",
           metavar="LEVEL"),
    Option("max_tokens", int, None, ("-n", "--max-tokens"), "Stop after this many tokens.", _ALL,
           check=_at_least_one, help_for={CHAT: "Stop each reply after this many tokens."}, unset="no limit",
           set_key="max_tokens", set_aliases=("n", "max"), set_help="integer >= 1, or 'none' for no limit"),
    Option("ctx_size", int, None, ("-c", "--ctx-size"), "Context size in tokens.", _ALL,
           check=_at_least_one, unset="the model's"),
    Option("threads", int, None, ("-t", "--threads"), "CPU threads.", _ALL, check=_at_least_one,
           unset="all available"),
    Option("mem_budget", str, None, ("--mem-budget",),
           "Most memory to hold, model pages included (e.g. 16G); a larger model's experts are paged from disk.",
           _ALL, check=_budget_problem, unset="available memory minus a margin", metavar="SIZE"),
    Option("precision", str, "fast", ("--precision",),
           "Arithmetic of the weight products: fast (activations rounded to two 8-bit pieces per block, "
           "about 1e-4 of the logits' spread) or exact (float32 activations).",
           _ALL, choices=("fast", "exact"), metavar="MODE"),
    Option("temperature", float, 1.0, ("--temperature",), "Sampling temperature; 0 is greedy.", _ALL,
           check=_finite(lambda v: f"{v} (must be >= 0; 0 means greedy)" if v < 0 else None),
           set_key="temperature", set_aliases=("temp",), set_help="number >= 0 (0 is greedy)"),
    Option("top_p", float, 1.0, ("--top-p",), "Nucleus sampling mass.", _ALL,
           check=_finite(lambda v: None if 0.0 < v <= 1.0 else f"{v} (must be in (0, 1])"),
           set_key="top_p", set_help="number in (0, 1]"),
    Option("top_k", int, 0, ("--top-k",), "Keep the k most likely tokens; 0 is off.", _ALL,
           check=lambda v: f"{v} (must be >= 0; 0 turns it off)" if v < 0 else None,
           set_key="top_k", set_help="integer >= 0 (0 is off)"),
    Option("min_p", float, 0.0, ("--min-p",), "Drop tokens below this share of the top one.", _ALL,
           check=_finite(lambda v: None if 0.0 <= v <= 1.0 else f"{v} (must be in [0, 1])"),
           set_key="min_p", set_help="number in [0, 1]"),
    Option("repeat_penalty", float, 1.0, ("--repeat-penalty",), "Penalty for recent tokens; 1 is off.", _ALL,
           check=_finite(lambda v: f"{v} (must be > 0; 1 turns it off)" if v <= 0 else None),
           set_key="repeat_penalty", set_help="number > 0 (1 is off)"),
    Option("seed", int, None, ("--seed",), "Random seed: the same seed gives the same output.", _GEN,
           check=lambda v: None if 0 <= v < 2**64 else f"{v} (must be in 0 .. 2^64-1)",
           set_key="seed", set_help="integer, or 'random'", show_default=False),
    Option("show_reasoning", bool, False, ("--show-reasoning/--hide-reasoning",),
           "Stream the reasoning (analysis channel) to stderr.", _GEN, default_for={CHAT: True},
           help_for={CHAT: "Show the reasoning (analysis channel), dimmed."}),
    Option("raw", bool, False, ("--raw",), "Print the prompt and completion as raw Harmony text.",
           frozenset({RUN}), config=False, show_default=False),
    Option("json", bool, False, ("--json",), "Print one JSON object at the end.", frozenset({RUN}),
           config=False, show_default=False),
    Option("jsonl", bool, False, ("--jsonl",), "Stream one JSON event per line.", frozenset({RUN}),
           config=False, show_default=False),
    Option("verbose", bool, False, ("-v", "--verbose"), "Print load time and speeds to stderr.", _ALL,
           config=False, help_for={CHAT: "Show the load time in the banner."}, show_default=False),
    Option("tools", str, None, ("--tools",), "JSON file of function tools (OpenAI tools format).", _GEN,
           config=False, show_default=False, metavar="FILE"),
    Option("json_schema", str, None, ("--json-schema",),
           "The final answer is JSON that matches this JSON schema file (the reasoning stays free).", _GEN,
           check=lambda v: _format_problem("json_schema", v), config=False, show_default=False, metavar="FILE"),
    Option("json_object", bool, False, ("--json-object",), "The final answer is a JSON object.", _GEN,
           config=False, show_default=False),
    Option("grammar", str, None, ("--grammar",),
           "The final answer follows this grammar file (llguidance's Lark syntax, or GBNF).", _GEN,
           check=lambda v: _format_problem("grammar", v), config=False, show_default=False, metavar="FILE"),
    Option("prompt_cache", bool, True, ("--prompt-cache/--no-prompt-cache",),
           "Reuse saved prompt prefixes (the system message, a repeated prompt) from the cache directory.", _ALL),
    Option("host", str, "127.0.0.1", ("--host",), "Address to listen on (anything but loopback wants --api-key).",
           frozenset({SERVE}), metavar="ADDR"),
    Option("port", int, 8080, ("--port",), "TCP port to listen on.", frozenset({SERVE}), check=_PORT),
    Option("api_key", str, None, ("--api-key",), "Require 'Authorization: Bearer KEY' on every endpoint but /health.",
           frozenset({SERVE}), env="GPTOSS_API_KEY", show_default=False, metavar="KEY"),
    Option("parallel", int, 2, ("--parallel",), "Requests decoded together (slots), one forward pass per step.",
           frozenset({SERVE}), check=_at_least_one),
    Option("max_queue", int, 16, ("--max-queue",), "Requests that may wait for a slot; more get 429.",
           frozenset({SERVE}), check=lambda v: f"{v} (must be >= 0)" if v < 0 else None),
)

_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

#: Every option's value, None where not given (what the CLI fills and resolve() completes).
Settings = make_dataclass(
    "Settings",
    [(o.name, Optional[o.type], None) for o in OPTIONS],  # type: ignore[valid-type]
    namespace={"__doc__": "Options of a run / chat / bench command; None: not given (see options.resolve)."},
)

#: chat's /set keys: key -> (aliases, what the value is), in declaration order
SET_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    o.set_key: (o.set_aliases, o.set_help) for o in OPTIONS if o.set_key is not None
}


def option(name: str) -> Option:
    return _BY_NAME[name]


def flag_of(name: str) -> str:
    """The flags of an option as messages write them, e.g. "-t/--threads"."""
    return "/".join(f.split("/")[0] for f in _BY_NAME[name].flags)


def problem(name: str, value: Any) -> str | None:
    """Why `value` is impossible for option `name`, or None when fine (None is always fine).

    The text names the value and the rule, e.g. "-1.0 (must be >= 0; 0 means greedy)";
    the caller prefixes where the value came from (a flag, a config key, a /set name).
    """
    if value is None:
        return None
    o = _BY_NAME[name]
    if o.choices and str(value).lower() not in o.choices:
        return f"{value!r} (must be {', '.join(o.choices[:-1])} or {o.choices[-1]})"
    return o.check(value) if o.check is not None else None


def config_types(table: str = RUN) -> dict[str, type | tuple[type, ...]]:
    """A table of config.toml ([run]: run and chat, [serve]: serve): option name -> the TOML types it accepts."""
    commands = _GEN if table == RUN else frozenset({SERVE})
    return {o.name: (int, float) if o.type is float else o.type for o in OPTIONS if o.config and o.commands & commands}


def _config_tables(command: str, config: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """The config tables `command` reads, first wins: serve reads [serve], then [run]."""
    if config is not None:
        return [(RUN, config)]
    from .user_config import load_user_config

    cfg = load_user_config()
    tables = [(RUN, cfg.get(RUN, {}))]
    if command == SERVE:
        tables.insert(0, (SERVE, cfg.get(SERVE, {})))
    return tables


def resolve(command: str, given: Any, config: dict[str, Any] | None = None, config_where: str = "config.toml") -> Any:
    """Complete `given` (a Settings) for `command`: flags, then the environment variable, then
    config.toml (`config`: the [run] table; default: read the user config), then built-in defaults.

    Every value is checked by its option's rule; OptionError names the flag, the variable or
    the config key it came from. Options `command` does not take stay None.
    """
    import os

    tables = _config_tables(command, config)
    values: dict[str, Any] = {}
    for o in OPTIONS:
        value = getattr(given, o.name)
        if command not in o.commands:
            values[o.name] = value
            continue
        where = f"invalid value for {flag_of(o.name)}"
        if value is None and o.env and os.environ.get(o.env):
            value, where = os.environ[o.env], f"invalid value for {o.env}"
        for table, entries in tables:
            if value is None and o.config and entries.get(o.name) is not None:
                value = entries[o.name]
                where = f"invalid value for {o.name} under [{table}] in {config_where}"
        if value is None:
            value = o.default_of(command)
        why = problem(o.name, value)
        if why is not None:
            raise OptionError(f"{where}: {why}")
        if o.choices and value is not None:
            value = str(value).lower()
        values[o.name] = value
    s = Settings(**values)
    modes = [flag for flag, on in (("--raw", s.raw), ("--json", s.json), ("--jsonl", s.jsonl)) if on]
    if len(modes) > 1:
        raise OptionError(f"{' and '.join(modes)} cannot be used together")
    return s


def sampling_params(s: Any):
    """The SamplingParams of resolved settings (a Settings, or anything with the same fields)."""
    from .sampling import SamplingParams

    return SamplingParams(
        temperature=float(s.temperature),
        top_p=float(s.top_p),
        top_k=int(s.top_k),
        min_p=float(s.min_p),
        repeat_penalty=float(s.repeat_penalty),
        seed=s.seed,
    )


# -- the command line ---------------------------------------------------------------


def help_text(name: str, command: str) -> str:
    """The help of an option for a command, with its default."""
    o = _BY_NAME[name]
    text = o.help_for.get(command, o.help)
    d = o.default_of(command)
    shown = o.unset if d is None else ("on" if d else "off") if isinstance(d, bool) else d
    return f"{text} (default: {shown})" if o.show_default and shown != "" else text


def _parameter(o: Option, command: str) -> inspect.Parameter:
    import typer

    annotation: Any = o.type  # choices are checked by resolve(), which words the refusal like every other
    kw: dict[str, Any] = {"help": help_text(o.name, command), "show_default": False}
    if o.type is not bool:
        kw["metavar"] = o.metavar or {int: "N", float: "X"}.get(o.type, "TEXT")
    if o.type is bool and "/" not in o.flags[0]:
        default: Any = typer.Option(False, *o.flags, **kw)  # a plain switch: off unless given
    else:
        default = typer.Option(None, *o.flags, **kw)
        annotation = Optional[annotation]
    return inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def cli_options(command: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a Typer command: adds `command`'s options as parameters and hands the
    function one Settings (keyword `opts`) in their place. Flags not given stay None, so
    resolve() can tell them from config.toml values (plain switches are False)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "opts"]
        mine = [o for o in OPTIONS if command in o.commands]
        params = own + [_parameter(o, command) for o in mine]
        names = {o.name for o in mine}

        def command_fn(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in names}
            return fn(opts=Settings(**values), **kwargs)

        command_fn.__name__ = fn.__name__
        command_fn.__doc__ = fn.__doc__
        command_fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return command_fn

    return wrap
