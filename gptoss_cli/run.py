"""What `gptoss run` does: one prompt in, one streamed answer out.

`run(RunOptions(...))` is the whole command; the CLI only fills RunOptions.
Option values left as None take the user config's [run] defaults
(gptoss_cli.registry.run_defaults), then the built-in ones below.

Order of work, cheapest checks first: options, prompt text, tools file, model
name, then the model load (and the one-time kernel compile), the prompt render,
and generation. Returns the exit code: 0, or 130 after Ctrl-C (what was
produced is still printed).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields
from typing import IO, Any, Callable

from .errors import OptionError

__all__ = ["RunOptions", "run", "BUILTIN_DEFAULTS", "resolve_options", "option_problem", "sampling_params", "open_model_for"]

# Built-in defaults (OpenAI recommends temperature 1.0 and top-p 1.0 for gpt-oss).
BUILTIN_DEFAULTS: dict[str, Any] = {
    "threads": None,  # all CPUs this process may use
    "ctx_size": None,  # the model's context length
    "max_tokens": None,  # until a stop token or a full context
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
    "seed": None,
    "reasoning_effort": "medium",
    "system": None,
    "show_reasoning": False,
    "prompt_cache": True,  # snapshots of prompt prefixes on disk (gptoss_cli.prompt_cache)
}

EXIT_INTERRUPTED = 130


@dataclass
class RunOptions:
    prompt: str | None = None
    file: str | None = None
    model: str | None = None
    system: str | None = None
    reasoning_effort: str | None = None
    max_tokens: int | None = None
    ctx_size: int | None = None
    threads: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    seed: int | None = None
    show_reasoning: bool | None = None
    raw: bool = False
    json: bool = False
    jsonl: bool = False
    verbose: bool = False
    tools: str | None = None
    prompt_cache: bool | None = None


def resolve_options(opts: RunOptions, config: dict[str, Any] | None = None) -> RunOptions:
    """Fill options left as None from the config's [run] table, then BUILTIN_DEFAULTS; check values."""
    if config is None:
        from .registry import run_defaults

        config = run_defaults()
    values = {f.name: getattr(opts, f.name) for f in fields(opts)}
    for key, default in BUILTIN_DEFAULTS.items():
        if values.get(key) is None:
            values[key] = config.get(key, default)
    o = RunOptions(**values)
    _check(o)
    return o


#: option flags, for messages (RunOptions field -> flag)
OPTION_FLAGS: dict[str, str] = {
    "temperature": "--temperature",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "min_p": "--min-p",
    "repeat_penalty": "--repeat-penalty",
    "max_tokens": "-n/--max-tokens",
    "ctx_size": "-c/--ctx-size",
    "threads": "-t/--threads",
    "seed": "--seed",
    "reasoning_effort": "--reasoning-effort",
}


def option_problem(key: str, value: Any) -> str | None:
    """Why `value` is impossible for the run/chat option `key` (a RunOptions field), or None when fine.

    The text names the value and the rule, e.g. "-1.0 (must be >= 0; 0 means greedy)";
    `gptoss run` prefixes the flag, `gptoss chat`'s /set the setting name.
    """
    if value is None:
        return None
    if key in ("temperature", "top_p", "min_p", "repeat_penalty") and not math.isfinite(float(value)):
        return f"{value} is not a finite number"
    if key == "temperature" and value < 0:
        return f"{value} (must be >= 0; 0 means greedy)"
    if key == "top_p" and not 0.0 < value <= 1.0:
        return f"{value} (must be in (0, 1])"
    if key == "top_k" and value < 0:
        return f"{value} (must be >= 0; 0 turns it off)"
    if key == "min_p" and not 0.0 <= value <= 1.0:
        return f"{value} (must be in [0, 1])"
    if key == "repeat_penalty" and value <= 0:
        return f"{value} (must be > 0; 1 turns it off)"
    if key in ("max_tokens", "ctx_size", "threads") and value < 1:
        return f"{value} (must be >= 1)"
    if key == "seed" and not 0 <= value < 2**64:
        return f"{value} (must be in 0 .. 2^64-1)"
    if key == "reasoning_effort" and str(value).lower() not in ("low", "medium", "high"):
        return f"{value!r} (must be low, medium or high)"
    return None


def _check(o: RunOptions) -> None:
    modes = [name for name, on in (("--raw", o.raw), ("--json", o.json), ("--jsonl", o.jsonl)) if on]
    if len(modes) > 1:
        raise OptionError(f"{' and '.join(modes)} cannot be used together")
    for key, flag in OPTION_FLAGS.items():
        problem = option_problem(key, getattr(o, key))
        if problem is not None:
            raise OptionError(f"invalid value for {flag}: {problem}")


def sampling_params(o: RunOptions):
    """The SamplingParams of resolved options."""
    from .sampling import SamplingParams

    return SamplingParams(
        temperature=float(o.temperature),
        top_p=float(o.top_p),
        top_k=int(o.top_k),
        min_p=float(o.min_p),
        repeat_penalty=float(o.repeat_penalty),
        seed=o.seed,
    )


def open_model_for(o: RunOptions, notice: Callable[[str], None] | None = None):
    """Resolve -m and load the model for resolved options (checking -t and -c against it).

    Returns (path, LoadedModel); the caller closes the model. Shared by `run` and `chat`.
    """
    from .registry import resolve_model

    path = resolve_model(o.model)

    import numba

    max_threads = numba.config.NUMBA_NUM_THREADS
    if o.threads is not None and o.threads > max_threads:
        raise OptionError(f"invalid value for -t/--threads: {o.threads} (this machine allows at most {max_threads})")

    from .generate import open_model

    lm = open_model(path, threads=o.threads, context=o.ctx_size, notice=notice, prompt_cache=bool(o.prompt_cache))
    trained = lm.model.config.context_length
    if o.ctx_size is not None and o.ctx_size > trained:
        lm.close()
        raise OptionError(
            f"invalid value for -c/--ctx-size: {o.ctx_size} is larger than the model's context length {trained}"
        )
    return path, lm


def _stdin_if_piped(stdin: IO[bytes] | None) -> IO[bytes] | None:
    if stdin is not None:
        return stdin
    s = sys.stdin
    if s is None:
        return None
    try:
        if s.isatty():
            return None
    except (AttributeError, ValueError):
        return None
    return s.buffer


def run(
    opts: RunOptions,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    config: dict[str, Any] | None = None,
) -> int:
    """Run one prompt; returns the exit code (130 after Ctrl-C). Raises GptossError for user errors."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        code = _run(opts, stdin, out, err, config)
    except KeyboardInterrupt:  # before generation started (reading stdin, loading, compiling)
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        err.write("gptoss: interrupted\n")
        err.flush()
    return code


def _run(opts: RunOptions, stdin: IO[bytes] | None, out: IO[str], err: IO[str], config: dict[str, Any] | None) -> int:
    from .prompt import build_conversation, gather_prompt, load_tools_file

    o = resolve_options(opts, config)

    # 1. prompt text and tools: fail fast, before the model is loaded
    if o.file == "-":  # asked for explicitly: read it even from a terminal (until Ctrl-D)
        piped = stdin if stdin is not None else sys.stdin.buffer
    elif o.file is None:
        piped = _stdin_if_piped(stdin)
    else:
        piped = None
    text = gather_prompt(o.prompt, o.file, piped)
    if not text.strip():
        raise OptionError("no prompt: give PROMPT, -f FILE, or pipe text on standard input")
    tools = load_tools_file(o.tools) if o.tools else None

    # 2. the model
    from .run_output import make_renderer, stats_line

    def notice(msg: str) -> None:
        err.write(f"gptoss: {msg}\n")
        err.flush()

    path, lm = open_model_for(o, notice)
    try:
        conv = build_conversation(
            text, instructions=o.system, reasoning_effort=str(o.reasoning_effort), tools=tools
        )
        gen = lm.generator()
        prompt_ids = gen.render(conv)
        sampling = sampling_params(o)
        generation = gen.generate(prompt_ids, sampling, max_tokens=o.max_tokens)

        mode = "raw" if o.raw else "json" if o.json else "jsonl" if o.jsonl else "text"
        renderer = make_renderer(
            mode,
            out,
            err,
            model=o.model if o.model else path.name,
            model_path=str(path),
            load_s=lm.load_s,
            compile_s=lm.compile_s,
            show_reasoning=bool(o.show_reasoning),
        )
        renderer.prompt(lm.tokenizer.decode(prompt_ids))
        result = generation.run(renderer.event)
        renderer.finish(result)
        if o.verbose:
            err.write(stats_line(result, lm.load_s, lm.compile_s) + "\n")
        if result.stop_reason == "interrupted":
            return EXIT_INTERRUPTED
        return 0
    finally:
        lm.close()
