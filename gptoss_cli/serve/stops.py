"""`stop` strings: the answer text ends before the first one, and text that may begin one is held back."""

from __future__ import annotations

from typing import Sequence

__all__ = ["StopStrings"]


class StopStrings:
    """Feed answer text as it streams; get what may be shown now, and whether a stop string was hit."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""
        self.hit = False

    def feed(self, text: str) -> str:
        """The text that can be released; after a hit, nothing more."""
        if self.hit:
            return ""
        if not self.stops:
            return text
        buf = self._held + text
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.hit = True
            self._held = ""
            return buf[:cut]
        keep = 0  # the longest tail of buf that begins some stop string
        for s in self.stops:
            for n in range(min(len(s) - 1, len(buf)), keep, -1):
                if s.startswith(buf[-n:]):
                    keep = n
                    break
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        """At the end of the generation: what was held back (it never became a stop string)."""
        out, self._held = ("" if self.hit else self._held), ""
        return out
