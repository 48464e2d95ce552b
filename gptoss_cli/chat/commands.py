"""What `gptoss chat` does with a line of input: a slash command or a message, and the reply loop.

The controller knows nothing about terminals: it talks to a `ChatUI` (the
prompt_toolkit/rich one in repl.py, a plain one for pipes, a recording one in
the tests).
"""

from __future__ import annotations

import re
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Protocol

from ..errors import GptossError
from ..events import TOOL_CALL, GenerationResult, ToolCall
from .session import SETTING_KEYS, ChatSession, SettingError

__all__ = [
    "Command",
    "COMMANDS",
    "HELP_NOTES",
    "ChatUI",
    "ChatController",
    "ExitChat",
    "help_text",
    "strip_triple_quotes",
    "triple_quote_open",
]


class ExitChat(Exception):
    """The user asked to leave (from a nested prompt such as the tool-result one)."""


@dataclass(frozen=True)
class Command:
    name: str
    args: str
    help: str
    aliases: tuple[str, ...] = ()


COMMANDS: list[Command] = [
    Command("/help", "", "this help", ("/?",)),
    Command("/exit", "", "leave the chat (also /bye, Ctrl-D, or Ctrl-C twice at the prompt)", ("/bye", "/quit")),
    Command("/clear", "", "start a new conversation (settings, instructions and tools stay)"),
    Command("/regen", "", "answer your last message again"),
    Command("/set", "KEY VALUE", "change a setting (/set alone lists the keys)"),
    Command("/show", "", "the settings and facts about the model"),
    Command("/reasoning", "show|hide|low|medium|high", "show or hide the reasoning, or set its effort"),
    Command("/save", "FILE", "save the conversation as openai-harmony JSON"),
    Command("/load", "FILE", "load a conversation saved as openai-harmony JSON (replaces this one)"),
    Command("/tools", "FILE|off", "use the function tools of a JSON file (OpenAI tools format), or none"),
    Command("/format", "FILE|json|off", "answers as JSON matching a schema file (.json), following a grammar "
            "file (Lark or GBNF), any JSON object, or free text"),
    Command("/skip", "", "when the model calls a tool: give no result (the call is dropped)"),
]
_BY_NAME = {n: c for c in COMMANDS for n in (c.name, *c.aliases)}
_COMMAND_WORD = re.compile(r"^/[A-Za-z?_-]*$")

HELP_NOTES = [
    "Enter sends; Alt-Enter (or Esc then Enter, or Ctrl-J) starts a new line; a message that begins with \"\"\" "
    "goes on until a line that ends with \"\"\".",
    "Ctrl-C while the model writes stops the reply: what you saw of the answer stays in the conversation; "
    "a reply stopped before any answer is dropped (your message stays; /regen asks again).",
    "Ctrl-C at the prompt clears the line; a second Ctrl-C, or Ctrl-D, leaves.",
    "When the model calls a tool you are asked for the result (JSON or text); /skip or Ctrl-C gives none.",
    "Tab completes commands and settings. Start a message with // to send one that begins with /.",
]


def help_text() -> list[tuple[str, str]]:
    """(command with arguments, description) rows, then the /set keys."""
    rows = [(f"{c.name} {c.args}".strip(), c.help) for c in COMMANDS]
    rows.append(("", ""))
    rows.extend((f"/set {k}", what) for k, (_, what) in SETTING_KEYS.items())
    return rows


def strip_triple_quotes(text: str) -> str:
    """A \"\"\" block's text without its quotes (other text unchanged)."""
    t = text.strip()
    if t.startswith('"""'):
        t = t[3:]
        if t.endswith('"""'):
            t = t[:-3]
        return t.strip("\n")
    return text


def triple_quote_open(text: str) -> bool:
    """True while a message that began with \"\"\" has not been closed."""
    t = text.lstrip()
    if not t.startswith('"""'):
        return False
    rest = t[3:].rstrip()
    return not rest.endswith('"""')


class ReplyView(Protocol):
    def begin(self, prompt_tokens: int) -> None: ...
    def event(self, ev: Any) -> None: ...
    def finish(self, result: GenerationResult) -> None: ...


class ChatUI(Protocol):
    def reply_view(self, show_reasoning: bool) -> ReplyView: ...
    def info(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def rows(self, title: str, rows: list[tuple[str, str]]) -> None: ...
    def help(self, rows: list[tuple[str, str]], notes: list[str]) -> None: ...
    def transcript(self, session: ChatSession) -> None: ...
    def ask_tool_result(self, call: ToolCall) -> str | None: ...  # None: skip; raises ExitChat to leave


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ignore Ctrl-C while an interrupted reply is being closed (a second press must not break it)."""
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _uncached(cached: list[int], prompt: list[int]) -> int:
    """How many prompt tokens the model still has to read (the generator reuses a cached prefix)."""
    n = len(cached)
    if n and n < len(prompt) and prompt[:n] == cached:
        return len(prompt) - n
    return len(prompt)


class ChatController:
    """Dispatches input lines; runs replies (with tool calls) through the session and the UI."""

    def __init__(self, session: ChatSession, ui: ChatUI, facts: list[tuple[str, str]] | None = None,
                 context: int | None = None):
        self.session = session
        self.ui = ui
        self.facts = list(facts or [])
        self.context = context if context is not None else getattr(session.generator.model, "context", None)

    # -- input ----------------------------------------------------------------------------

    def handle(self, line: str) -> bool:
        """Act on one input (a command or a message); False when the chat should end."""
        text = strip_triple_quotes(line)
        stripped = text.strip()
        if not stripped:
            return True
        if stripped.startswith("//"):
            self.send(stripped[1:])
            return True
        word, _, rest = stripped.partition(" ")
        if stripped.startswith("/") and _COMMAND_WORD.match(word):
            cmd = _BY_NAME.get(word.lower())
            if cmd is None:
                self.ui.error(f"unknown command {word} (/help lists them)")
                return True
            try:
                return self._run_command(cmd.name, rest.strip())
            except GptossError as e:
                self.ui.error(str(e))
                return True
        self.send(text)
        return True

    def _run_command(self, name: str, arg: str) -> bool:
        s = self.session
        if name == "/exit":
            return False
        if name == "/help":
            self.ui.help(help_text(), HELP_NOTES)
        elif name == "/clear":
            s.clear()
            self.ui.info("new conversation")
        elif name == "/regen":
            if not s.rewind_last_reply():
                self.ui.error("nothing to answer again: send a message first")
            else:
                self._reply()
        elif name == "/set":
            self._set(arg)
        elif name == "/show":
            self.ui.rows("model", self.facts + self._context_row())
            self.ui.rows("settings", s.settings_rows())
        elif name == "/reasoning":
            self._reasoning(arg)
        elif name == "/save":
            path = self._need(arg, "/save FILE")
            n = s.save(path)
            self.ui.info(f"saved {n} messages to {path}")
        elif name == "/load":
            path = self._need(arg, "/load FILE")
            n = s.load(path)
            self.ui.info(f"loaded {n} messages ({s.turns} turn{'s' if s.turns != 1 else ''}) from {path}")
            self.ui.transcript(s)
            if s.pending_call() is not None and self._answer_pending():
                self._reply(first=False)
        elif name == "/tools":
            arg = self._need(arg, "/tools FILE (or /tools off)")
            if arg.lower() in ("off", "none", "clear"):
                s.set_tools(None)
                self.ui.info("no tools")
            else:
                tools = s.load_tools(arg)
                self.ui.info("tools: " + ", ".join(f"functions.{t.name}" for t in tools))
        elif name == "/format":
            arg = self._need(arg, "/format FILE|json|off")
            self.ui.info(s.set_format(None if arg.lower() in ("off", "none", "clear", "text") else arg))
        elif name == "/skip":
            if s.drop_pending_call():
                self.ui.info("skipped: the unanswered tool call was dropped")
            else:
                self.ui.error("nothing to skip: /skip answers a tool call when the model makes one")
        return True

    @staticmethod
    def _need(arg: str, usage: str) -> str:
        if not arg:
            raise SettingError(f"usage: {usage}")
        return arg

    def _context_row(self) -> list[tuple[str, str]]:
        if not self.context:
            return []
        last = self.session.last_result
        if last is not None:  # what the stats line after that reply said: its prompt and its reply
            used = last.prompt_tokens + last.completion_tokens
        else:
            try:
                used = len(self.session.prompt_ids())  # the conversation as the next reply will read it
            except GptossError:
                return []
        return [("context in use", f"{used} of {self.context} tokens")]

    def _set(self, arg: str) -> None:
        if not arg:
            self.ui.help([(f"/set {k}", what) for k, (_, what) in SETTING_KEYS.items()], [])
            return
        name, _, value = arg.partition(" ")
        self.ui.info(self.session.set(name, value))

    def _reasoning(self, arg: str) -> None:
        a = arg.strip().lower()
        st = self.session.settings
        if a in ("show", "on"):
            st.show_reasoning = True
        elif a in ("hide", "off"):
            st.show_reasoning = False
        elif a in ("low", "medium", "high"):
            self.ui.info(self.session.set("reasoning", a))
            return
        elif a:
            raise SettingError(f"usage: /reasoning show|hide|low|medium|high (got {arg!r})")
        self.ui.info(f"reasoning {'shown' if st.show_reasoning else 'hidden'}, effort {st.reasoning_effort}")

    # -- replies ----------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """A user message and the model's reply (with any tool calls it makes)."""
        self.session.add_user(text)
        self._reply(first=True)

    def _reply(self, first: bool = False) -> None:
        s = self.session
        while True:
            try:
                g = s.start_reply()
            except GptossError as e:
                if first:
                    s.drop_last_user()
                self.ui.error(f"{e}; /clear starts a new conversation" if "context" in str(e) else str(e))
                return
            first = False
            view = self.ui.reply_view(s.settings.show_reasoning)
            try:
                view.begin(_uncached(s.generator.cached_tokens, g.prompt))
                for ev in g:
                    view.event(ev)
            except KeyboardInterrupt:
                with _sigint_ignored():
                    for ev in g.interrupt():
                        view.event(ev)
            result = g.result
            assert result is not None
            with _sigint_ignored():
                view.finish(result)
                s.commit(result)
            if result.stop_reason == TOOL_CALL and s.pending_call() is not None:
                if not self._answer_pending():
                    return
                continue
            return

    def _answer_pending(self) -> bool:
        """Ask for the pending tool call's result; True when one was added (the turn goes on)."""
        s = self.session
        call = s.pending_call()
        assert call is not None
        answer = self.ui.ask_tool_result(call)
        if answer is None:
            s.drop_pending_call()
            self.ui.info(f"skipped: the call to {call.recipient} was dropped")
            return False
        s.add_tool_result(call, answer)
        return True
