"""Which slot a request runs in: the one whose KV cache already holds the longest prefix of its prompt.

A slot is one Generator (one KV cache) that outlives its requests. The
Generator itself reuses what it holds in two ways (gptoss_cli.generation):
everything it holds, when that is a prefix of the new prompt (an agent loop
continuing after a tool result), or its cache rolled back to the end of the
previous prompt (a chat's next turn, whose render drops the reply's
analysis); `Generator.reusable` says how much, without changing anything.
A slot is scored by that; a prompt no slot can
continue goes to the least recently used one, so that separate
conversations do not evict each other, and may still start from the prompt
cache on disk (its system message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..generation import Generator

__all__ = ["Slot", "reusable", "choose_slot"]


@dataclass
class Slot:
    index: int
    generator: Generator
    last_used: int = 0  # a counter, larger is more recent
    busy: bool = False


def reusable(slot: Slot, prompt: Sequence[int]) -> int:
    """How many leading prompt tokens the slot's generator would not compute again."""
    return slot.generator.reusable(prompt)


def choose_slot(free: Sequence[Slot], prompt: Sequence[int]) -> tuple[Slot, int]:
    """The free slot to run `prompt` in and how many tokens it reuses (most reuse, then least recently used)."""
    if not free:
        raise ValueError("no free slot")
    scored = [(reusable(s, prompt), -s.last_used, s) for s in free]
    best = max(scored, key=lambda x: (x[0], x[1]))
    return best[2], best[0]
