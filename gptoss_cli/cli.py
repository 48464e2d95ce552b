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

app = typer.Typer(
    name="gptoss",
    help="Run OpenAI's gpt-oss models on the CPU from GGUF files, privately and offline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

harmony_app = typer.Typer(
    help="Inspect the Harmony format: render conversations to tokens, parse tokens to messages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
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


ModelOption = typer.Option(..., "--model", "-m", help="Path to a gpt-oss GGUF file.", show_default=False)


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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning user errors into one line on stderr."""
    try:
        app(args=argv, prog_name="gptoss", standalone_mode=True)
    except GptossError as e:
        msg = str(e).replace("\n", " ").strip() or e.__class__.__name__
        sys.stderr.write(f"gptoss: error: {msg}\n")
        sys.exit(getattr(e, "exit_code", 1) or 1)
    except KeyboardInterrupt:
        sys.stderr.write("gptoss: interrupted\n")
        sys.exit(130)
    except BrokenPipeError:
        # the reader went away (e.g. `| head`); stay quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
