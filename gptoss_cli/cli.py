"""The `gptoss` command line (Typer).

Each command only parses its options and calls one function that does the
work. Heavy modules (NumPy, Numba, tiktoken) are imported inside the
commands, so `gptoss --help` and `gptoss --version` stay fast.

Every GptossError becomes one line on stderr and exit code 1; bad option
values exit 2 (Typer/Click usage errors).
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from typing import Optional

import typer

from . import __version__
from .errors import GptossError
from .options import cli_options, help_text, option

app = typer.Typer(
    name="gptoss",
    help="Run OpenAI's gpt-oss models on the CPU from GGUF files, privately and offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain Click help: full flag names, no type placeholders, the terminal's width
    context_settings={"help_option_names": ["-h", "--help"]},
)

harmony_app = typer.Typer(
    help="Inspect the Harmony format: render conversations to tokens, parse tokens to messages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(harmony_app, name="harmony")

class RenderRole(str, Enum):
    assistant = "assistant"
    user = "user"
    system = "system"
    developer = "developer"
    tool = "tool"
    none = "none"


class ParseRole(str, Enum):
    auto = "auto"
    none = "none"
    assistant = "assistant"
    user = "user"
    system = "system"
    developer = "developer"
    tool = "tool"


# -m for the commands outside the Settings flow: the same flags and meaning as run's (options.py);
# required where a command reads a model's tokenizer, optional (the default model) for bench
ModelOption = typer.Option(..., *option("model").flags, help=option("model").help, show_default=False, metavar="MODEL")
OptionalModelOption = typer.Option(
    None, *option("model").flags, help=option("model").help, show_default=False, metavar="MODEL"
)
ThreadsOption = typer.Option(None, *option("threads").flags, help=help_text("threads", "run"), show_default=False, metavar="N")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"gptoss {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Show the version and exit.", callback=_version_callback, is_eager=True
    ),
) -> None:
    """Run OpenAI's gpt-oss models on the CPU from GGUF files, privately and offline."""


@app.command("tokenize")
def tokenize_cmd(
    text: Optional[str] = typer.Argument(None, help="Text to tokenize; '-' or nothing reads standard input."),
    model: str = ModelOption,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON array of ids."),
    jsonl: bool = typer.Option(
        False, "--jsonl", help="Read one JSON string per stdin line; print one JSON array per line."
    ),
    special: bool = typer.Option(
        False, "--special", help="Turn spelled-out special tokens such as <|start|> into their ids."
    ),
) -> None:
    """Print the token ids of TEXT (space-separated; --json for a JSON array)."""
    from .harmony.commands import tokenize

    tokenize(model, text, as_json=as_json, jsonl=jsonl, allow_special=special)


@harmony_app.command("render")
def harmony_render_cmd(
    conversation: str = typer.Argument(..., help="openai-harmony conversation JSON file ('-' for stdin)."),
    model: str = ModelOption,
    as_json: bool = typer.Option(False, "--json", help="Print the token ids as a JSON array (the default)."),
    as_text: bool = typer.Option(False, "--text", help="Print the prompt text with special tokens spelled out."),
    role: RenderRole = typer.Option(
        RenderRole.assistant, "--role", help="Role of the turn to complete; 'none' renders the conversation alone."
    ),
    keep_analysis: bool = typer.Option(
        False, "--keep-analysis", help="Keep earlier analysis messages even after a final answer."
    ),
) -> None:
    """Render a conversation as the completion prompt the model sees."""
    from .harmony.commands import render

    if as_json and as_text:
        raise typer.BadParameter("--json and --text cannot be used together")
    render(
        model,
        conversation,
        as_text=as_text,
        next_role=None if role is RenderRole.none else role.value,
        auto_drop_analysis=not keep_analysis,
    )


@harmony_app.command("parse")
def harmony_parse_cmd(
    tokens: str = typer.Argument(..., help="JSON array of completion token ids ('-' for stdin)."),
    model: str = ModelOption,
    as_json: bool = typer.Option(False, "--json", help="Print the messages as openai-harmony JSON."),
    role: ParseRole = typer.Option(
        ParseRole.auto,
        "--role",
        help="Role the tokens complete (after '<|start|>ROLE'); 'none' if they begin with <|start|>; "
        "'auto' decides from the first token.",
    ),
) -> None:
    """Parse completion tokens into Harmony messages."""
    from .harmony.commands import parse

    parse(model, tokens, as_json=as_json, role=role.value)


@app.command("models")
def models_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List known models (models.toml) and downloaded files, with their local paths."""
    from .models_list import show_models

    show_models(as_json=as_json)


@app.command("pull")
def pull_cmd(
    model: str = typer.Argument(..., help="A model name or alias (see: gptoss models), or an http(s) URL of a GGUF file."),
    force: bool = typer.Option(False, "--force", help="Download again even if the file is already there."),
    offline: bool = typer.Option(
        False, "--offline", help="Refuse to use the network (also GPTOSS_OFFLINE=1)."
    ),
    sha256: Optional[str] = typer.Option(
        None, "--sha256", metavar="HEX", help="Expected sha256 of the file (for a URL, or to override models.toml)."
    ),
) -> None:
    """Download a model into the models directory (resumable, sha256-verified when the digest is known)."""
    from .pull import pull_command

    code = pull_command(model, force=force, offline=offline, sha256=sha256)
    if code:
        raise typer.Exit(code)


@app.command("run")
@cli_options("run")
def run_cmd(
    prompt: Optional[str] = typer.Argument(
        None, help="The prompt. Piped standard input is appended after it.", show_default=False, metavar="PROMPT"
    ),
    opts=None,
) -> None:
    """Answer one prompt and exit: the final answer streams to stdout.

    Examples: gptoss run -m 20b "Why is the sky blue?"; cat notes.txt | gptoss run "Summarize:" --json.
    With --tools, a function call ends the run and is printed as `tool call: functions.NAME {arguments}`.
    Ctrl-C stops generation, keeps what was printed, and exits with 130.
    Defaults for these options can be set under [run] in config.toml in the app directory ($GPTOSS_HOME).
    """
    from .run import run

    code = run(opts, prompt)
    if code:
        raise typer.Exit(code)


@app.command("chat")
@cli_options("chat")
def chat_cmd(opts=None) -> None:
    """Talk with the model: an interactive conversation in the terminal.

    Example: gptoss chat -m 20b -r high. Type /help inside for commands (/set, /save, /load, /tools, /regen ...).
    Ctrl-C stops a reply and keeps the conversation; Ctrl-D or /exit leaves.
    Defaults for these options can be set under [run] in config.toml in the app directory ($GPTOSS_HOME).
    """
    from .chat import chat

    code = chat(opts)
    if code:
        raise typer.Exit(code)


@app.command("serve")
@cli_options("serve")
def serve_cmd(opts=None) -> None:
    """Serve the model over an OpenAI-compatible HTTP API (chat completions, responses, completions).

    Example: gptoss serve -m 20b --port 8080; then point an OpenAI client at http://127.0.0.1:8080/v1.
    Ctrl-C or SIGTERM stops it (running requests get a few seconds to finish).
    Defaults can be set under [serve] (then [run]) in config.toml in the app directory ($GPTOSS_HOME).
    """
    from .serve import serve

    code = serve(opts)
    if code:
        raise typer.Exit(code)


@app.command("bench")
def bench_cmd(
    model: Optional[str] = OptionalModelOption,
    synthetic: Optional[str] = typer.Option(
        None, "--synthetic", metavar="SHAPE", help="Benchmark a random-weight model of a real shape instead: 20b or 120b (written once, cached)."
    ),
    layers: Optional[int] = typer.Option(None, "--layers", metavar="N", help="With --synthetic: cut the model to this many layers."),
    pp: int = typer.Option(512, "--pp", metavar="N", show_default=False, help="Prompt tokens to process. (default: 512)"),
    tg: int = typer.Option(128, "--tg", metavar="N", show_default=False, help="Tokens to generate. (default: 128)"),
    threads: Optional[int] = ThreadsOption,
    reps: int = typer.Option(3, "--reps", metavar="N", show_default=False, help="Repetitions (mean ± sd). (default: 3)"),
    ctx_depth: int = typer.Option(
        0, "--ctx-depth", metavar="N", show_default=False, help="Fill the KV cache with this many tokens first. (default: 0)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    as_md: bool = typer.Option(False, "--md", help="Print a Markdown table (the default)."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV."),
    vs_llama_cpp: bool = typer.Option(
        False, "--vs-llama-cpp", help="Also run llama.cpp (llama-cpp-python) on the same file and threads; report ratios."
    ),
    llama_python: Optional[str] = typer.Option(
        None, "--llama-python", metavar="PATH", help="Python interpreter that has llama-cpp-python (default: this one)."
    ),
    rounds: int = typer.Option(
        1, "--rounds", metavar="N", show_default=False, help="Run everything this many times; with --vs-llama-cpp "
        "alternating the engines' order (AB BA ...) and reporting each round's ratio and the median. (default: 1)"
    ),
    split_max_size: Optional[str] = typer.Option(
        None, "--split-max-size", metavar="SIZE", help="With --synthetic: write the model as shards of at most SIZE "
        "(e.g. 40G), as the published 120b is.",
    ),
    mem_budget: Optional[str] = typer.Option(
        None, "--mem-budget", metavar="SIZE", help=help_text("mem_budget", "run"),
    ),
    json_schema: Optional[str] = typer.Option(
        None, "--json-schema", metavar="FILE", help="Instead: decode --tg tokens sampled freely and under this "
        "schema's mask, side by side (alternating, --reps times), and the mask's own cost; prints JSON.",
    ),
    precision: str = typer.Option(
        "fast", "--precision", metavar="MODE", show_default=False, help=help_text("precision", "run"),
    ),
) -> None:
    """Measure prompt processing and generation speed, load time and peak memory (like llama-bench).

    Examples: gptoss bench -m 20b -t 2; gptoss bench --synthetic 20b --layers 4 --pp 128 --tg 32 --json.
    """
    from .bench import bench_command

    if as_json + as_md + as_csv > 1:
        raise typer.BadParameter("choose one of --json, --md, --csv")
    fmt = "json" if as_json else "csv" if as_csv else "md"
    bench_command(model, synthetic, layers, pp, tg, threads, reps, ctx_depth, fmt, vs_llama_cpp, llama_python, rounds,
                  split_max_size=_size(split_max_size), mem_budget=mem_budget, json_schema=json_schema,
                  precision=precision)



class OutType(str, Enum):
    auto = "auto"
    bf16 = "bf16"
    f16 = "f16"
    f32 = "f32"
    q8_0 = "q8_0"


class QuantType(str, Enum):
    q8_0 = "q8_0"
    bf16 = "bf16"
    f16 = "f16"
    f32 = "f32"
    mxfp4 = "mxfp4"


SplitMaxSizeOption = typer.Option(
    None, "--split-max-size", metavar="SIZE",
    help="Split the output into shards of at most SIZE of tensor data (e.g. 40G, 500M), named "
    "OUT-0000K-of-0000N.gguf as llama.cpp's gguf-split writes them.",
)


def _size(text: str | None) -> int:
    """--split-max-size as bytes (0: one file); a bad size is a usage error."""
    if text is None:
        return 0
    from .byte_sizes import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--split-max-size") from None


@app.command("convert")
def convert_cmd(
    src: str = typer.Argument(
        ..., help="Checkpoint folder: Hugging Face layout (config.json, *.safetensors, tokenizer.json) "
        "or OpenAI's original/ folder.", show_default=False, metavar="SRC",
    ),
    out: str = typer.Option(..., "--outfile", "-o", help="GGUF file to write.", show_default=False, metavar="OUT"),
    outtype: OutType = typer.Option(
        OutType.auto, "--outtype", help="Type of the dense 2-D weights; auto keeps the checkpoint's (BF16). "
        "MXFP4 experts are always repacked as MXFP4.", case_sensitive=False,
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT if it exists."),
    split_max_size: Optional[str] = SplitMaxSizeOption,
) -> None:
    """Convert a gpt-oss safetensors checkpoint to GGUF (as llama.cpp's converter does)."""
    from .convert.convert import convert_command

    convert_command(src, out, outtype.value, force=force, split_max_size=_size(split_max_size))


@app.command("quantize")
def quantize_cmd(
    src: str = typer.Argument(..., help="Input gpt-oss GGUF file.", show_default=False, metavar="IN"),
    out: str = typer.Argument(..., help="Output GGUF file.", show_default=False, metavar="OUT"),
    qtype: QuantType = typer.Argument(
        ..., help="q8_0, bf16, f16, f32: type of the dense 2-D weights (MXFP4 experts stay MXFP4); "
        "mxfp4: experts to MXFP4.", case_sensitive=False, show_default=False, metavar="TYPE",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite OUT if it exists."),
    output_type: Optional[QuantType] = typer.Option(
        None, "--output-tensor-type", case_sensitive=False, help="Type of output.weight instead of TYPE.",
    ),
    embedding_type: Optional[QuantType] = typer.Option(
        None, "--token-embedding-type", case_sensitive=False, help="Type of token_embd.weight instead of TYPE.",
    ),
    split_max_size: Optional[str] = SplitMaxSizeOption,
) -> None:
    """Re-encode a gpt-oss GGUF: dense weights to TYPE, norms/biases/router F32 (like llama-quantize)."""
    from .convert.quantize import quantize_command

    quantize_command(src, out, qtype.value, force=force,
                     output_type=output_type.value if output_type else None,
                     embedding_type=embedding_type.value if embedding_type else None,
                     split_max_size=_size(split_max_size))

def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: every error is one line on stderr, never a traceback.

    GptossError: exit 1 (OptionError: 2); usage errors (bad option values,
    unknown options): exit 2; Ctrl-C: exit 130.
    """
    cli_errors, aborts = _click_exception_types()
    try:
        rv = app(args=argv, prog_name="gptoss", standalone_mode=False)
    except GptossError as e:
        _fail(str(e), getattr(e, "exit_code", 1) or 1)
    except aborts:
        _fail("aborted", 1)
    except cli_errors as e:  # usage errors: bad option values, unknown options or commands
        if type(e).__name__ == "NoArgsIsHelpError":  # `gptoss` / `gptoss harmony` alone: show help
            e.show()
            sys.exit(e.exit_code)
        msg = e.format_message() if hasattr(e, "format_message") else str(e)
        ctx = getattr(e, "ctx", None)
        code = getattr(e, "exit_code", 1)
        if code == 2 and ctx is not None:
            msg += f" (see '{ctx.command_path} --help')"
        _fail(msg, code)
    except KeyboardInterrupt:
        _fail("interrupted", 130, prefix="gptoss: ")
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); stay quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


def console_main() -> None:
    """The `gptoss` command: main(), then exit without the interpreter's teardown.

    Tearing down Numba, its thread pool and the modules takes about half a second,
    which a command-line tool should not make its user wait for. Output is flushed
    first; every file gptoss writes is complete (renamed into place) before this.
    """
    try:
        main()
        code = 0
    except SystemExit as e:
        if isinstance(e.code, str):
            sys.stderr.write(e.code + "\n")
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
    os._exit(code)


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Click's usage-error and abort classes: Typer >= 0.20 vendors Click, older Typer uses click itself."""
    errors: list[type] = []
    aborts: list[type] = []
    for modname in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = __import__(modname, fromlist=["ClickException"])
        except ImportError:
            continue
        errors.append(mod.ClickException)
        if hasattr(mod, "Abort"):
            aborts.append(mod.Abort)
    aborts.append(typer.Abort)
    return tuple(errors), tuple(aborts)


def _fail(msg: str, code: int, prefix: str = "gptoss: error: ") -> None:
    msg = " ".join(str(msg).split()) or "error"
    sys.stderr.write(f"{prefix}{msg}\n")
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
