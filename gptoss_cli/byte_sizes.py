"""Byte counts as people read them (``23.0 MB``, ``12.8 GB``), for `gptoss models` and `gptoss pull`."""

from __future__ import annotations

__all__ = ["format_bytes"]


def format_bytes(n: float) -> str:
    """`n` bytes in the largest decimal unit (B, KB, MB, GB, TB) that keeps the number under 1000."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
