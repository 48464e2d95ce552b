"""Keys typed while the model writes: kept off the screen and handed to the next prompt.

In a terminal's normal (cooked, echoing) mode, keys pressed during a reply are
echoed into the middle of the streamed text, and the terminal's line buffer
hands them, Enter included, to the next prompt, which then runs half-typed
commands joined together. While a reply streams, `TypeAhead` turns echo and
line editing off (Ctrl-C still interrupts: signals stay on), and when the
reply ends it reads whatever was typed and restores the terminal. The text
becomes the next prompt's starting content, as ollama does, so nothing typed
is lost and nothing runs before the user presses Enter at the prompt.
"""

from __future__ import annotations

import os
import select
import sys
from typing import Any

__all__ = ["TypeAhead", "clean_typed"]


def clean_typed(data: bytes) -> str:
    """What was typed as prompt text: UTF-8 (bad bytes replaced), Enter as a line break,
    escape sequences (arrows, function keys) and other control characters dropped, and no
    line break at the end (so the text waits for the user's own Enter)."""
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\x1b":  # ESC [ ... final byte, or ESC and one more character
            i += 1
            if i < len(text) and text[i] in "[O":
                i += 1
                while i < len(text) and not ("@" <= text[i] <= "~"):
                    i += 1
            i += 1
            continue
        if c == "\x7f" or c == "\b":  # backspace edits what was typed so far
            if out and out[-1] != "\n":
                out.pop()
        elif c in "\n\t" or c >= " ":
            out.append(c)
        i += 1
    return "".join(out).rstrip("\n")


class TypeAhead:
    """Holds the terminal's keys during a reply (start / stop); `take()` gives what was typed."""

    def __init__(self, stream: Any = None) -> None:
        stream = stream if stream is not None else sys.stdin
        try:
            self._fd: int | None = stream.fileno() if stream.isatty() else None
        except (AttributeError, ValueError, OSError):
            self._fd = None
        self._saved: list | None = None
        self._typed = b""

    def start(self) -> None:
        """Echo and line editing off until stop(); nothing happens when stdin is not a terminal."""
        if self._fd is None or self._saved is not None:
            return
        import termios

        try:
            self._saved = termios.tcgetattr(self._fd)
            quiet = termios.tcgetattr(self._fd)
            quiet[3] &= ~(termios.ECHO | termios.ICANON)  # lflag; ISIG stays, so Ctrl-C still works
            quiet[6][termios.VMIN], quiet[6][termios.VTIME] = 0, 0
            termios.tcsetattr(self._fd, termios.TCSANOW, quiet)
        except termios.error:
            self._saved = None

    def stop(self) -> None:
        """Collect what was typed and restore the terminal as it was (safe to call twice)."""
        if self._fd is None or self._saved is None:
            return
        import termios

        try:
            while select.select([self._fd], [], [], 0)[0]:
                chunk = os.read(self._fd, 4096)
                if not chunk:
                    break
                self._typed += chunk
        except OSError:
            pass
        finally:
            try:
                termios.tcsetattr(self._fd, termios.TCSANOW, self._saved)
            except termios.error:
                pass
            self._saved = None

    def take(self) -> str:
        """The text typed since the last take(), for the next prompt."""
        self.stop()
        text, self._typed = clean_typed(self._typed), b""
        return text
