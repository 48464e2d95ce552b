"""Which slot a request runs in: the one whose KV cache already holds the longest prefix of its prompt.

A slot is one Generator (one KV cache) that outlives its requests. The
Generator itself reuses what it holds in two ways (gptoss_cli.generation):
everything it holds, when that is a prefix of the new prompt (an agent loop
continuing after a tool result), or its cache rolled back to the end of the
previous prompt (a chat's next turn, whose render drops the reply's
analysis). A slot scores the tokens it would reuse so; a prompt no slot can
continue goes to the least recently used one, so that separate
conversations do not evict each other, and may still start from the prompt
cache on disk (its system message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..generation import Generator

__all__ = ["Slot", "reusable", "choose_slot"]


@dataclass
class Slot:
    index: int
    generator: Generator
    last_prompt: list[int] = field(default_factory=list)  # the checkpoint the generator can roll back to
    last_used: int = 0  # a counter, larger is more recent
    busy: bool = False


def _is_prefix(short: Sequence[int], long: Sequence[int]) -> bool:
    return 0 < len(short) < len(long) and list(long[: len(short)]) == list(short)


def reusable(slot: Slot, prompt: Sequence[int]) -> int:
    """How many leading prompt tokens the slot's generator would not compute again."""
    held = slot.generator.cached_tokens
    if _is_prefix(held, prompt):
        return len(held)
    if _is_prefix(slot.last_prompt, prompt) and len(held) >= len(slot.last_prompt):
        return len(slot.last_prompt)
    return 0


def choose_slot(free: Sequence[Slot], prompt: Sequence[int]) -> tuple[Slot, int]:
    """The free slot to run `prompt` in and how many tokens it reuses (most reuse, then least recently used)."""
    if not free:
        raise ValueError("no free slot")
    scored = [(reusable(s, prompt), -s.last_used, s) for s in free]
    best = max(scored, key=lambda x: (x[0], x[1]))
    return best[2], best[0]
