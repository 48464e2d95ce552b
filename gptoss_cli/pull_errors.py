"""The errors `gptoss pull` raises; each is one line for the user (GptossError)."""

from __future__ import annotations

from .errors import GptossError

__all__ = ["DigestMismatch", "PullError", "PullInterrupted"]


class PullError(GptossError):
    """A download failed or was refused."""


class DigestMismatch(PullError):
    """The downloaded bytes do not match the expected sha256; nothing was kept."""


class PullInterrupted(GptossError):
    """Ctrl-C during a download; the .part file is kept for resuming."""

    exit_code = 130
