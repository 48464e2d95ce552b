"""Byte counts as people read and write them (``23.0 MB``, ``40G``): `gptoss models`, `pull`, `--split-max-size`."""

from __future__ import annotations

import re

__all__ = ["format_bytes", "parse_size"]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def format_bytes(n: float) -> str:
    """`n` bytes in the largest decimal unit (B, KB, MB, GB, TB) that keeps the number under 1000."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def parse_size(text: str) -> int:
    """A size like llama.cpp's --split-max-size takes: a number of bytes, or with K, M, G or T
    (powers of 1000, as gguf-split reads them); ValueError when it is not one."""
    m = _SIZE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a size (e.g. 500M, 40G)")
    n = float(m.group(1)) * 1000 ** " KMGT".index(m.group(2).upper() or " ")
    if n < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return int(n)
