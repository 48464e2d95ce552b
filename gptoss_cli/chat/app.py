"""`gptoss chat`: load the model, show the banner, run the REPL.

    code = chat(Settings(model="20b", temperature=0.7))     # gptoss_cli.options.Settings

Options are `gptoss run`'s (model, context, threads, sampling, reasoning effort,
system, tools), with the same [run] defaults from config.toml; the reasoning
is shown unless --hide-reasoning (or show_reasoning = false in [run]).
On a terminal the REPL uses prompt_toolkit and rich; with a pipe on either
side it reads plain lines and writes plain text.
"""

from __future__ import annotations

import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

__all__ = ["chat", "history_path", "model_facts", "is_demo_model"]


def history_path() -> Path:
    from ..app_paths import app_dir

    return app_dir() / "chat_history"


def is_demo_model(path: Path) -> bool:
    """True when `path` is the built-in demo model (or a models.toml entry marked demo = true)."""
    from ..catalogue import load_models
    from ..model_names import builtin_default_model

    try:
        target = path.resolve()
        demo = builtin_default_model()
        if demo is not None and Path(demo).resolve() == target:
            return True
        for entry in load_models():
            if getattr(entry, "demo", False) and any(p.resolve() == target for p in entry.paths()):
                return True
    except Exception:  # a broken models.toml must not stop the chat; `gptoss models` reports it
        return False
    return False


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def model_facts(name: str, path: Path, lm: Any) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(banner facts, /show rows) for a loaded model."""
    cfg = lm.config
    ctx = lm.context
    threads = lm.threads
    try:
        size = _size(path.stat().st_size)
    except OSError:
        size = "?"
    context = f"{ctx} tokens" + ("" if ctx == cfg.context_length else f" (model max {cfg.context_length})")
    shape = f"{cfg.n_layers} layers, {cfg.n_experts} experts ({cfg.n_experts_used} per token)"
    banner = {
        "model": name,
        "path": str(path),
        "context": context,
        "threads": f"{threads} thread{'s' if threads != 1 else ''}",
        "shape": shape,
    }
    rows = [
        ("model", name),
        ("path", str(path)),
        ("file size", size),
        ("layers", str(cfg.n_layers)),
        ("experts", f"{cfg.n_experts} ({cfg.n_experts_used} per token)"),
        ("hidden size", str(cfg.hidden)),
        ("vocabulary", str(cfg.vocab_size)),
        ("context", context),
        ("threads", str(threads)),
        ("load time", f"{lm.load_s:.2f} s" + (f" (+ kernel compile {lm.compile_s:.1f} s)" if lm.compile_s else "")),
    ]
    return banner, rows


def _display_name(spec: str | None, path: Path) -> str:
    """The models.toml name when -m named a known model, else the file name."""
    if spec and not Path(spec).expanduser().exists():
        try:
            from ..catalogue import find_model

            entry = find_model(spec)
        except Exception:  # a broken models.toml: `gptoss models` reports it
            entry = None
        if entry is not None:
            return entry.name
    return path.name


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def chat(
    opts: Any,
    *,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    config: dict[str, Any] | None = None,
    interactive: bool | None = None,
) -> int:
    """Run the chat until the user leaves; returns the exit code. Raises GptossError for bad options or model files."""
    from ..options import CHAT, resolve
    from ..prompt import load_tools_file
    from ..run import open_for
    from .commands import ChatController
    from .repl import PlainUI, TerminalUI, run_loop
    from .session import ChatSession, ChatSettings

    inp = stdin if stdin is not None else sys.stdin
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    o = resolve(CHAT, opts, config)
    tools = load_tools_file(o.tools) if o.tools else None
    from ..structured import compile_tools, format_from_settings

    format_from_settings(o)  # conflicting or unusable formats and tool schemas: one line before the load
    compile_tools(tools)
    if interactive is None:
        interactive = _isatty(inp) and _isatty(out) and os.environ.get("TERM") != "dumb"

    console = None
    if interactive:
        from rich.console import Console

        console = Console(file=out, highlight=False, emoji=False)

    def notice(msg: str) -> None:
        err.write(f"gptoss: {msg}\n")
        err.flush()

    lm = open_for(o, notice)
    path = lm.path
    try:
        name = _display_name(o.model, path)
        facts, rows = model_facts(name, path, lm)
        settings = ChatSettings(**{f.name: getattr(o, f.name) for f in fields(ChatSettings)})
        session = ChatSession(lm.generator(), settings, instructions=o.system, tools=tools)
        ui: Any
        if interactive:
            hist = history_path()
            ui = TerminalUI(console, hist, context=lm.context)
            rows.append(("input history", str(hist)))
        else:
            ui = PlainUI(inp, out, err, context=lm.context)
        verbose = None
        if o.verbose:
            verbose = f"loaded in {lm.load_s:.2f} s" + (f", kernels compiled in {lm.compile_s:.1f} s" if lm.compile_s else "")
        ui.banner(facts, demo=is_demo_model(path), verbose_line=verbose)
        if tools:
            ui.info("tools: " + ", ".join(f"functions.{t.name}" for t in tools))
        controller = ChatController(session, ui, rows, context=lm.context)
        return run_loop(controller, ui)
    finally:
        lm.close()
