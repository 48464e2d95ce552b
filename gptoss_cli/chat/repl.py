"""The terminal side of `gptoss chat`: a prompt_toolkit prompt and rich output, or plain text for pipes.

TerminalUI: history in the app directory (`chat_history`), Enter sends,
Alt-Enter / Esc Enter / Ctrl-J add a line, a message that begins with \"\"\"
goes on until it ends with \"\"\", Tab completes slash commands, /set keys and
file names. Ctrl-C at the prompt clears the line; a second one in a row (or
Ctrl-D on an empty line) leaves.

PlainUI: reads lines from a stream (\"\"\" blocks too), writes replies and
command output to stdout, notes and errors to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Iterable

from ..events import ToolCall
from ..harmony.model import Role
from .commands import COMMANDS, ExitChat, strip_triple_quotes, triple_quote_open
from .render import PlainReplyView, RichReplyView
from .session import SETTING_KEYS, ChatSession
from .typeahead import TypeAhead

__all__ = ["TerminalUI", "PlainUI", "SlashCompleter", "run_loop"]

PROMPT = ">>> "
CONTINUATION = "... "

DEMO_NOTE = ("demo model: a tiny model that only adds two numbers from 0 to 99 (try: What is 23 + 48?); "
             "for real work: gptoss pull gpt-oss-20b")


def _one_line(text: str, n: int = 100) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def run_loop(controller, ui) -> int:
    """Read and handle input until the user leaves; returns the exit code (0)."""
    while True:
        try:
            text = ui.read()
        except (EOFError, ExitChat, KeyboardInterrupt):  # (TerminalUI handles Ctrl-C itself)
            break
        try:
            if not controller.handle(text):
                break
        except ExitChat:
            break
        except KeyboardInterrupt:  # outside a reply (a slow /load, say): back to the prompt
            ui.info("interrupted")
    ui.goodbye()
    return 0


# -- completion ---------------------------------------------------------------------------------


def _completer_class():
    from prompt_toolkit.completion import Completer, Completion, PathCompleter
    from prompt_toolkit.document import Document

    class SlashCompleter(Completer):
        """Slash commands, /set keys and values, /reasoning words, file names after /save, /load, /tools."""

        def __init__(self, commands: Iterable = COMMANDS):
            self.names = [(c.name, c.help) for c in commands] + [(a, c.help) for c in commands for a in c.aliases]
            self.paths = PathCompleter(expanduser=True)

        def _words(self, words, typed: str, meta=None):
            for w in words:
                if w.startswith(typed.lower()):
                    yield Completion(w, start_position=-len(typed), display_meta=(meta or {}).get(w, ""))

        def get_completions(self, document, complete_event):
            text = document.text_before_cursor
            if not text.startswith("/") or "\n" in text:
                return
            if " " not in text:
                yield from self._words([n for n, _ in self.names], text, dict(self.names))
                return
            cmd, _, rest = text.partition(" ")
            cmd = cmd.lower()
            if cmd == "/set":
                if " " not in rest:
                    meta = {k: what for k, (_, what) in SETTING_KEYS.items()}
                    yield from self._words(list(SETTING_KEYS), rest, meta)
                else:
                    key, _, value = rest.partition(" ")
                    if key.lower() in ("reasoning", "reasoning_effort", "effort"):
                        yield from self._words(["low", "medium", "high"], value)
                    elif key.lower() in ("seed",):
                        yield from self._words(["random"], value)
                    elif key.lower() in ("max_tokens", "max-tokens"):
                        yield from self._words(["none"], value)
            elif cmd == "/reasoning":
                yield from self._words(["show", "hide", "low", "medium", "high"], rest)
            elif cmd in ("/save", "/load", "/tools"):
                if cmd == "/tools":
                    yield from self._words(["off"], rest)
                sub = Document(rest, len(rest))
                yield from self.paths.get_completions(sub, complete_event)

    return SlashCompleter


def SlashCompleter(*args: Any, **kw: Any):  # noqa: N802 - a factory that reads like the class
    return _completer_class()(*args, **kw)


def _key_bindings():
    from prompt_toolkit.filters import Condition
    from prompt_toolkit.key_binding import KeyBindings

    kb = KeyBindings()

    @Condition
    def in_block() -> bool:
        from prompt_toolkit.application.current import get_app

        return triple_quote_open(get_app().current_buffer.text)

    @kb.add("enter", filter=~in_block)
    def _send(event) -> None:
        event.current_buffer.validate_and_handle()

    @kb.add("enter", filter=in_block)
    @kb.add("escape", "enter")
    @kb.add("c-j")
    def _newline(event) -> None:
        event.current_buffer.insert_text("\n")

    return kb


# -- the terminal UI ----------------------------------------------------------------------------------


class _HoldingKeys:
    """A reply view that keeps typed keys off the screen from its first event to its last."""

    def __init__(self, view: Any, typeahead: TypeAhead) -> None:
        self._view = view
        self._typeahead = typeahead

    def begin(self, prompt_tokens: int) -> None:
        self._typeahead.start()
        self._view.begin(prompt_tokens)

    def event(self, ev: Any) -> None:
        self._view.event(ev)

    def finish(self, result: Any) -> None:
        try:
            self._view.finish(result)
        finally:
            self._typeahead.stop()


class TerminalUI:
    def __init__(self, console, history_path: Path | None = None, *, context: int | None = None,
                 input: Any = None, output: Any = None):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        self.console = console
        self.context = context
        self.history_note: str | None = None
        history: Any = InMemoryHistory()
        if history_path is not None:
            try:
                history_path.parent.mkdir(parents=True, exist_ok=True)
                history_path.touch(exist_ok=True)
                history = FileHistory(str(history_path))
            except OSError as e:
                self.history_note = f"input history is not saved ({history_path}: {e.strerror or e})"
        common = dict(multiline=True, key_bindings=_key_bindings(), prompt_continuation=self._continuation,
                      input=input, output=output)
        self._prompt = PromptSession(history=history, completer=SlashCompleter(), complete_while_typing=True,
                                     reserve_space_for_menu=6, auto_suggest=AutoSuggestFromHistory(), **common)
        self._tool_prompt = PromptSession(history=InMemoryHistory(), **common)
        self._ctrl_c = False
        self._typeahead = TypeAhead()  # keys typed during a reply wait for the next prompt

    @staticmethod
    def _continuation(width: int, line_number: int, is_soft_wrap: bool) -> str:
        return " " * (width - len(CONTINUATION)) + CONTINUATION if width >= len(CONTINUATION) else CONTINUATION

    def _text(self, text: str, style: str = "") -> None:
        from rich.text import Text

        self.console.print(Text(text, style=style))

    # -- input -----------------------------------------------------------------------

    def read(self) -> str:
        """The next input; EOFError when the user leaves (Ctrl-D, or Ctrl-C twice)."""
        while True:
            try:
                text = self._prompt.prompt([("bold", PROMPT)], default=self._typeahead.take())
            except KeyboardInterrupt:
                if self._ctrl_c:
                    raise EOFError from None
                self._ctrl_c = True
                self._text("(Ctrl-C again or Ctrl-D to leave)", "dim")
                continue
            self._ctrl_c = False
            return text

    def ask_tool_result(self, call: ToolCall) -> str | None:
        self._text(f"{call.recipient} needs a result: type it (JSON or text), or /skip", "yellow")
        while True:
            try:
                text = self._tool_prompt.prompt([("bold ansiyellow", f"{call.name} result> ")],
                                                default=self._typeahead.take())
            except KeyboardInterrupt:
                return None
            except EOFError:
                raise ExitChat from None
            t = strip_triple_quotes(text).strip()
            if not t:
                continue
            if t.lower() == "/skip":
                return None
            if t.lower() in ("/exit", "/bye", "/quit"):
                raise ExitChat
            return strip_triple_quotes(text)

    # -- output ---------------------------------------------------------------------------

    def banner(self, facts: dict[str, str], demo: bool = False, verbose_line: str | None = None) -> None:
        from rich.text import Text

        t = Text()
        t.append("gptoss chat", style="bold")
        t.append(f" · {facts['model']}", style="bold cyan")
        self.console.print(t)
        self._text(f"{facts['path']}", "dim")
        self._text(f"context {facts['context']} · {facts['threads']} · {facts['shape']}", "dim")
        if demo:
            self._text(DEMO_NOTE, "yellow")
        if verbose_line:
            self._text(verbose_line, "dim")
        if self.history_note:
            self._text(self.history_note, "yellow")
        self._text('/help for commands · Alt-Enter or """ for several lines · Ctrl-D to leave', "dim")

    def reply_view(self, show_reasoning: bool):
        return _HoldingKeys(RichReplyView(self.console, show_reasoning=show_reasoning, context=self.context),
                            self._typeahead)

    def info(self, text: str) -> None:
        self._text(text, "cyan")

    def error(self, text: str) -> None:
        self._text(f"error: {text}", "bold red")

    def rows(self, title: str, rows: list[tuple[str, str]]) -> None:
        from rich.table import Table

        table = Table(title=title.capitalize(), title_justify="left", title_style="bold underline",
                      show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for k, v in rows:
            table.add_row(k, v)
        self.console.print(table)

    def help(self, rows: list[tuple[str, str]], notes: list[str]) -> None:
        from rich.table import Table

        table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for k, v in rows:
            table.add_row(k, v)
        self.console.print(table)
        for n in notes:
            self._text(n, "dim")

    def transcript(self, session: ChatSession, last: int = 8) -> None:
        from rich.text import Text

        for who, text in _transcript_lines(session)[-last:]:
            t = Text()
            t.append(f"{who}: ", style="bold")
            t.append(text, style="dim" if who != "you" else "")
            self.console.print(t)

    def goodbye(self) -> None:
        self._typeahead.stop()


def _transcript_lines(session: ChatSession) -> list[tuple[str, str]]:
    out = []
    for m in session.history:
        role = m.author.role
        if role == Role.USER:
            out.append(("you", _one_line(m.text)))
        elif role == Role.ASSISTANT and m.channel == "final":
            out.append(("assistant", _one_line(m.text)))
        elif role == Role.ASSISTANT and m.recipient not in (None, "all"):
            out.append(("tool call", f"{m.recipient} {_one_line(m.text, 60)}"))
        elif role == Role.TOOL:
            out.append((m.author.name or "tool", _one_line(m.text, 60)))
    return out


# -- plain ----------------------------------------------------------------------------------------


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class PlainUI:
    """Line input from a stream; replies and command output to `out`, errors and notes to `err`."""

    def __init__(self, inp: IO[str], out: IO[str], err: IO[str], *, context: int | None = None):
        self.inp = inp
        self.out = out
        self.err = err
        self.context = context

    def _readline(self) -> str:
        line = self.inp.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def read(self) -> str:
        if _isatty(self.inp):
            self.err.write(PROMPT)
            self.err.flush()
        line = self._readline()
        if triple_quote_open(line):
            lines = [line]
            while True:
                try:
                    nxt = self._readline()
                except EOFError:
                    break
                lines.append(nxt)
                if nxt.rstrip().endswith('"""'):
                    break
            return "\n".join(lines)
        return line

    def _w(self, stream: IO[str], text: str) -> None:
        stream.write(text + "\n")
        stream.flush()

    def ask_tool_result(self, call: ToolCall) -> str | None:
        self._w(self.err, f"{call.recipient} needs a result (a line, or /skip):")
        try:
            text = self.read()
        except EOFError:
            raise ExitChat from None
        t = strip_triple_quotes(text).strip()
        if not t or t.lower() == "/skip":
            return None
        if t.lower() in ("/exit", "/bye", "/quit"):
            raise ExitChat
        return strip_triple_quotes(text)

    def banner(self, facts: dict[str, str], demo: bool = False, verbose_line: str | None = None) -> None:
        self._w(self.err, f"gptoss chat · {facts['model']} · context {facts['context']} · {facts['threads']}")
        if demo:
            self._w(self.err, DEMO_NOTE)
        if verbose_line:
            self._w(self.err, verbose_line)

    def reply_view(self, show_reasoning: bool):
        return PlainReplyView(self.out, self.err, show_reasoning=show_reasoning, context=self.context)

    def info(self, text: str) -> None:
        self._w(self.out, text)

    def error(self, text: str) -> None:
        self._w(self.err, f"error: {text}")

    def rows(self, title: str, rows: list[tuple[str, str]]) -> None:
        self._w(self.out, f"{title}:")
        for k, v in rows:
            self._w(self.out, f"  {k}: {v}")

    def help(self, rows: list[tuple[str, str]], notes: list[str]) -> None:
        width = max((len(k) for k, _ in rows), default=0)
        for k, v in rows:
            self._w(self.out, f"{k.ljust(width)}  {v}".rstrip())
        for n in notes:
            self._w(self.out, n)

    def transcript(self, session: ChatSession, last: int = 8) -> None:
        for who, text in _transcript_lines(session)[-last:]:
            self._w(self.out, f"{who}: {text}")

    def goodbye(self) -> None:
        pass

