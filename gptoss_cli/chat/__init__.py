"""`gptoss chat`: an interactive conversation with a gpt-oss model in the terminal.

- session.py: the conversation's state and Harmony rules, no terminal (unit-tested);
- commands.py: slash commands and the reply loop (tool calls, Ctrl-C), over a ChatUI;
- render.py: live rendering of the channels (rich on a terminal, plain text otherwise);
- repl.py: the prompt_toolkit prompt (history, multiline, completion) and the plain UI;
- app.py: `chat(RunOptions)`, what the CLI calls.
"""

from __future__ import annotations

__all__ = ["chat"]


def chat(*args, **kw):
    """See gptoss_cli.chat.app.chat."""
    from .app import chat as _chat

    return _chat(*args, **kw)
