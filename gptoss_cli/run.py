"""What `gptoss run` does: one prompt in, one streamed answer out.

`run(Settings(...))` is the whole command; the CLI only fills the Settings
(gptoss_cli.options). Values left as None take the user config's [run]
defaults, then the built-in ones.

Order of work, cheapest checks first: options (a --json-schema or --grammar
file is checked by its option's rule), prompt text, tools file, model name, then
the model load (and the one-time kernel compile), the structured-output
constraint (with --tools or a response format), the prompt render, and
generation. Returns the exit code: 0, or 130 after Ctrl-C (what was
produced is still printed).
"""

from __future__ import annotations

import sys
from typing import IO, Any, Callable

from .errors import OptionError
from .options import RUN, flag_of, resolve, sampling_params

__all__ = ["run", "open_for", "EXIT_INTERRUPTED"]

EXIT_INTERRUPTED = 130


def open_for(o: Any, notice: Callable[[str], None] | None = None):
    """Load the model of resolved settings, compiled and with its tokenizer: a LoadedModel.

    Shared by `run`, `chat` and `serve` (whose --parallel slots each hold a KV cache the
    memory budget counts); the loader's threads / context refusals name their flags.
    The caller closes the model.
    """
    from .loader import load_model

    try:
        return load_model(
            o.model, threads=o.threads, context=o.ctx_size, prompt_cache=bool(o.prompt_cache),
            warm_up=True, notice=notice, mem_budget=o.mem_budget,
            precision=str(getattr(o, "precision", None) or "fast"), sequences=int(getattr(o, "parallel", None) or 1),
        )
    except OptionError as e:
        if e.option is None:
            raise
        raise OptionError(f"invalid value for {flag_of(e.option)}: {e.why}") from None


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
    opts: Any,
    prompt: str | None = None,
    *,
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    config: dict[str, Any] | None = None,
) -> int:
    """Run one prompt (PROMPT, then -f FILE or piped stdin); returns the exit code (130 after Ctrl-C). Raises GptossError for user errors."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        code = _run(opts, prompt, stdin, out, err, config)
    except KeyboardInterrupt:  # before generation started (reading stdin, loading, compiling)
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        err.write("gptoss: interrupted\n")
        err.flush()
    return code


def _run(
    opts: Any, prompt: str | None, stdin: IO[bytes] | None, out: IO[str], err: IO[str], config: dict[str, Any] | None
) -> int:
    from .prompt import build_conversation, gather_prompt, load_tools_file

    o = resolve(RUN, opts, config)

    # 1. prompt text and tools: fail fast, before the model is loaded
    if o.file == "-":  # asked for explicitly: read it even from a terminal (until Ctrl-D)
        piped = stdin if stdin is not None else sys.stdin.buffer
    elif o.file is None:
        piped = _stdin_if_piped(stdin)
    else:
        piped = None
    text = gather_prompt(prompt, o.file, piped)
    if not text.strip():
        raise OptionError("no prompt: give PROMPT, -f FILE, or pipe text on standard input")
    tools = load_tools_file(o.tools) if o.tools else None
    from .structured import compile_tools, format_from_settings

    response_format = format_from_settings(o)
    tool_grammars = compile_tools(tools)  # a tool's parameters that llguidance refuses: exit 2 now

    # 2. the model
    from .run_output import make_renderer, stats_line

    def notice(msg: str) -> None:
        err.write(f"gptoss: {msg}\n")
        err.flush()

    lm = open_for(o, notice)
    path = lm.path
    try:
        plan = _structured_plan(lm.tokenizer, response_format, tool_grammars, err if o.verbose else None)
        conv = build_conversation(
            text, instructions=o.system, reasoning_effort=str(o.reasoning_effort), tools=tools,
            response_format=response_format,
        )
        gen = lm.generator()
        prompt_ids = gen.render(conv)
        sampling = sampling_params(o)
        generation = gen.generate(
            prompt_ids, sampling, max_tokens=o.max_tokens, constraint=plan.constraint() if plan is not None else None
        )

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
            precision=lm.precision,
        )
        renderer.prompt(lm.tokenizer.decode(prompt_ids))
        result = generation.run(renderer.event)
        renderer.finish(result)
        if o.verbose:
            err.write(stats_line(result, lm.load_s, lm.compile_s, lm.precision) + "\n")
            from .expert_pager import memory_line

            err.write(memory_line(lm, result.compute_s + result.gen_s) + "\n")
        if result.stop_reason == "interrupted":
            return EXIT_INTERRUPTED
        return 0
    finally:
        lm.close()


def _structured_plan(tokenizer: Any, response_format: Any, tool_grammars: dict[str, str], verbose: IO[str] | None):
    """The constraint's plan (None when there is neither a format nor tools); with -v, what it cost."""
    if response_format is None and not tool_grammars:
        return None
    import time

    from .structured import make_plan
    from .structured.vocabulary import ll_tokenizer

    t0 = time.perf_counter()
    ll_tokenizer(tokenizer)
    t1 = time.perf_counter()
    plan = make_plan(tokenizer, response_format, tool_grammars=tool_grammars)
    if verbose is not None:
        verbose.write(
            f"gptoss: structured output: vocabulary indexed in {t1 - t0:.2f} s (once per process),"
            f" grammars compiled in {(time.perf_counter() - t1) * 1000:.1f} ms\n"
        )
    return plan
