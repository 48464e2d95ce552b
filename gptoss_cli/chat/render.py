"""How `gptoss chat` shows a reply as it streams.

On a terminal (RichReplyView, rich):
- analysis (the model's reasoning): dimmed italic text, line by line; with
  `/reasoning hide` a transient "thinking … N tokens" line instead;
- commentary without a recipient (a preamble to the user) and the final answer:
  Markdown. Finished blocks (paragraphs, lists, code fences, split at blank
  lines outside fences) are printed for good as they complete; only the block
  being written is redrawn live, so long answers never outgrow the screen;
- a tool call: a titled panel ("tool call · functions.get_weather") whose
  arguments stream in and end as pretty-printed JSON;
- text that is not valid Harmony: plain text, marked as such;
- then a dim stats line: prompt tokens and speed, generated tokens and speed,
  stop reason, context use.

Without a terminal (PlainReplyView): the final answer streams to stdout as
plain text, reasoning (when shown) to stderr, a tool call as one line
`tool call: functions.NAME {json}`, the stats line to stderr.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

from ..events import (
    CONTEXT_FULL,
    INTERRUPTED,
    MAX_TOKENS,
    Done,
    GenerationResult,
    MessageEnd,
    MessageStart,
    PromptProcessed,
    TextDelta,
    Token,
    message_kind,
)

__all__ = ["RichReplyView", "PlainReplyView", "markdown_cut", "stats_text", "reply_notes", "pretty_arguments"]

_REFRESH_S = 0.06  # redraw the live block at most this often


def markdown_cut(text: str, start: int = 0) -> int:
    """Where the finished Markdown blocks of text[start:] end (an index >= start).

    A block is finished at a blank line outside a code fence once the next
    line has begun and is not indented (so a list item's continuation or an
    indented code block is not cut off from what it belongs to).
    """
    cut = start
    in_fence = False
    fence = ""
    pos = start
    lines = text[start:].split("\n")
    # every line but the last is complete
    for i, line in enumerate(lines[:-1]):
        stripped = line.lstrip()
        line_end = pos + len(line) + 1
        if in_fence:
            if stripped.startswith(fence) and not stripped[len(fence):].strip():
                in_fence = False
        elif stripped.startswith("```") or stripped.startswith("~~~"):
            in_fence = True
            fence = stripped[:3]
        elif not stripped and i > 0 and lines[i - 1].strip():
            nxt = lines[i + 1]
            if nxt and not nxt[0].isspace():
                cut = line_end
        pos = line_end
    return cut


def pretty_arguments(text: str) -> tuple[str, bool]:
    """(indented JSON, True) when text is JSON, else (text, False)."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False), True
    except (json.JSONDecodeError, ValueError):
        return text, False


def reply_notes(result: GenerationResult) -> list[str]:
    """Short notes on how a reply ended, when it ended without an answer or early."""
    n = result.completion_tokens
    notes = []
    if result.stop_reason == INTERRUPTED:
        notes.append("interrupted" + ("" if result.final else ": no answer was kept (/regen asks again)"))
    elif result.stop_reason == MAX_TOKENS:
        notes.append(f"stopped at the token limit ({n}); /set max_tokens N raises it")
    elif result.stop_reason == CONTEXT_FULL:
        notes.append("the context is full; /clear starts a new conversation")
    elif not result.final and not result.tool_calls:
        if any(result.raw):
            notes.append(f"the model's output ({n} tokens) was not valid Harmony; it is not kept")
        else:
            notes.append("the model gave no final answer")
    return notes


def _rate(v: float | None) -> str:
    if v is None:
        return "- tok/s"
    return f"{v:.0f} tok/s" if v >= 100 else f"{v:.1f} tok/s"


def stats_text(result: GenerationResult, context: int | None = None) -> str:
    """The stats line after a reply: prompt tokens processed and their speed, reply tokens and
    their speed, how it stopped, context use. (`gptoss run -v` prints the same numbers.)"""
    new = result.prompt_tokens - result.cached_tokens
    cached = f" (+{result.cached_tokens} cached)" if result.cached_tokens else ""
    parts = [
        f"prompt {new} tok{cached}, {_rate(result.prompt_tok_s)}",
        f"reply {result.completion_tokens} tok, {_rate(result.gen_tok_s)}",
        result.stop_reason.replace("_", " "),
    ]
    if context:
        parts.append(f"context {result.prompt_tokens + result.completion_tokens}/{context}")
    return " · ".join(parts)


# -- plain ---------------------------------------------------------------------------------


class PlainReplyView:
    """Plain text for pipes and dumb terminals."""

    def __init__(self, out: IO[str], err: IO[str], *, show_reasoning: bool = True, context: int | None = None,
                 stats: bool = True):
        self.out = out
        self.err = err
        self.show_reasoning = show_reasoning
        self.context = context
        self.stats = stats
        self._kind: str | None = None
        self._last = "\n"
        self._err_open = False
        self._args: list[str] = []

    def _say(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()
            self._last = text[-1]

    def begin(self, prompt_tokens: int) -> None:
        pass

    def event(self, ev: Any) -> None:
        if isinstance(ev, MessageStart):
            self._kind = message_kind(ev.channel, ev.recipient, ev.raw)
            self._args = []
            if self._kind in ("analysis",) and self.show_reasoning:
                self._err_open = True
            elif self._kind in ("final", "commentary", "raw", "other") and self._last != "\n":
                self._say("\n")
        elif isinstance(ev, TextDelta):
            if self._kind == "tool_call":
                self._args.append(ev.text)
            elif self._kind == "analysis":
                if self._err_open:
                    self.err.write(ev.text)
                    self.err.flush()
            else:
                self._say(ev.text)
        elif isinstance(ev, MessageEnd):
            if self._err_open:
                self.err.write("\n")
                self.err.flush()
                self._err_open = False
            if self._kind == "tool_call":
                m = ev.message
                text = "".join(self._args)
                try:
                    args = json.dumps(json.loads(text), ensure_ascii=False)
                except (json.JSONDecodeError, ValueError):
                    args = text
                if self._last != "\n":
                    self._say("\n")
                self._say(f"tool call: {m.recipient} {args}\n")
            self._kind = None

    def finish(self, result: GenerationResult) -> None:
        if self._err_open:
            self.err.write("\n")
            self._err_open = False
        if self._last != "\n":
            self._say("\n")
        for note in reply_notes(result):
            self.err.write(f"({note})\n")
        if self.stats:
            self.err.write(stats_text(result, self.context) + "\n")
        self.err.flush()


# -- rich --------------------------------------------------------------------------------------


class _Trimmed:
    """A renderable without the blank lines rich puts before or after some blocks (lists, for one)."""

    def __init__(self, renderable: Any):
        self.renderable = renderable

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        lines = console.render_lines(self.renderable, options, pad=False)

        def blank(line) -> bool:
            return all(not seg.text.strip() and not (seg.style and seg.style.bgcolor) for seg in line)

        while lines and blank(lines[0]):
            lines.pop(0)
        while lines and blank(lines[-1]):
            lines.pop()
        for line in lines:
            yield from line
            yield Segment.line()


class RichReplyView:
    """Live rendering on a terminal with rich (see the module notes)."""

    def __init__(self, console, *, show_reasoning: bool = True, context: int | None = None, stats: bool = True):
        self.console = console
        self.show_reasoning = show_reasoning
        self.context = context
        self.stats = stats
        self._live = None
        self._kind: str | None = None
        self._recipient: str | None = None
        self._buf = ""
        self._done = 0  # characters of _buf printed for good
        self._blocks = 0  # Markdown blocks printed for this message
        self._tokens = 0  # tokens of the current message
        self._last_refresh = 0.0
        self._printed_any = False

    # -- live area ----------------------------------------------------------------------

    def _start_live(self, renderable: Any) -> None:
        from rich.live import Live

        self._stop_live()
        # transient: the live area is erased when it stops; what stays is printed with console.print
        self._live = Live(renderable, console=self.console, auto_refresh=False, transient=True,
                          vertical_overflow="ellipsis", redirect_stdout=False, redirect_stderr=False)
        self._live.start(refresh=True)
        self._last_refresh = time.monotonic()

    def _update(self, renderable: Any, force: bool = False) -> None:
        if self._live is None:
            self._start_live(renderable)
            return
        self._live.update(renderable, refresh=False)
        now = time.monotonic()
        if force or now - self._last_refresh >= _REFRESH_S:
            self._live.refresh()
            self._last_refresh = now

    def _stop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.update("", refresh=False)
            live.stop()

    def _print(self, renderable: Any) -> None:
        if self._live is not None:
            self._live.console.print(renderable)
        else:
            self.console.print(renderable)
        self._printed_any = True

    def _gap(self) -> None:
        """One blank line between messages."""
        if self._printed_any:
            self._print("")

    # -- renderables ------------------------------------------------------------------------

    def _markdown(self, text: str):
        from rich.markdown import Markdown

        return _Trimmed(Markdown(text, code_theme="ansi_dark", hyperlinks=False))

    def _tool_panel(self, text: str, done: bool):
        from rich.panel import Panel
        from rich.syntax import Syntax
        from rich.text import Text

        title = f"tool call · {self._recipient}"
        if done:
            pretty, ok = pretty_arguments(text)
            body = Syntax(pretty, "json", theme="ansi_dark", background_color="default", word_wrap=True) if ok \
                else Text(text)
            subtitle = None if ok else "arguments are not valid JSON"
        else:
            body, subtitle = Text(text), None
        return Panel(body, title=title, title_align="left", subtitle=subtitle, border_style="yellow", expand=False)

    # -- events --------------------------------------------------------------------------------

    def begin(self, prompt_tokens: int) -> None:
        from rich.text import Text

        self._start_live(Text(f"… reading {prompt_tokens} prompt tokens", style="dim"))

    def event(self, ev: Any) -> None:
        if isinstance(ev, PromptProcessed):
            self._stop_live()
        elif isinstance(ev, Token):
            self._tokens += 1
            if self._kind == "analysis" and not self.show_reasoning and ev.id is not None:
                from rich.text import Text

                self._update(Text(f"thinking … {self._tokens} tokens", style="dim italic"))
        elif isinstance(ev, MessageStart):
            self._stop_live()
            self._kind = message_kind(ev.channel, ev.recipient, ev.raw)
            self._recipient = ev.recipient
            self._buf, self._done, self._blocks, self._tokens = "", 0, 0, 0
            if self._kind == "analysis" and not self.show_reasoning:
                return
            self._gap()
            if self._kind == "raw":
                from rich.text import Text

                self._print(Text("(not valid Harmony)", style="dim yellow"))
            elif self._kind == "other":
                from rich.text import Text

                self._print(Text(f"({ev.channel or 'no channel'})", style="dim"))
        elif isinstance(ev, TextDelta):
            self._buf += ev.text
            self._render(done=False)
        elif isinstance(ev, MessageEnd):
            self._render(done=True)
            self._kind = None
        elif isinstance(ev, Done):
            self._stop_live()

    def _render(self, done: bool) -> None:
        from rich.console import Group
        from rich.text import Text

        kind = self._kind
        if kind == "analysis" and not self.show_reasoning:
            if done:
                self._stop_live()
            return
        if kind == "tool_call":
            panel = self._tool_panel(self._buf, done)
            if done:
                self._stop_live()
                self._print(panel)
            else:
                self._update(panel)
            return
        if kind in ("final", "commentary"):
            cut = len(self._buf) if done else markdown_cut(self._buf, self._done)
            if done:
                self._stop_live()
            if cut > self._done:
                block = self._buf[self._done:cut].strip("\n")
                self._done = cut
                if block:
                    if self._blocks:
                        self._print("")
                    self._print(self._markdown(block))
                    self._blocks += 1
            if done:
                return
            rest = self._buf[self._done:].strip("\n")
            if rest:
                md = self._markdown(rest)
                self._update(Group(Text(""), md) if self._blocks else md)
            return
        # analysis, raw, other: plain text, finished lines printed for good
        style = {"analysis": "dim italic", "raw": "yellow"}.get(kind or "", "")
        cut = len(self._buf) if done else self._buf.rfind("\n", self._done) + 1
        if done:
            self._stop_live()
        if cut > self._done:
            chunk = self._buf[self._done:cut]
            self._done = cut
            chunk = chunk[:-1] if chunk.endswith("\n") else chunk
            if chunk or not done:
                self._print(Text(chunk, style=style))
        rest = self._buf[self._done:]
        if not done and rest:
            self._update(Text(rest, style=style))

    def finish(self, result: GenerationResult) -> None:
        from rich.text import Text

        self._stop_live()
        for note in reply_notes(result):
            self._print(Text(f"({note})", style="yellow"))
        if self.stats:
            self._print(Text(stats_text(result, self.context), style="dim"))
        self._print("")  # a blank line before the next prompt
