"""The one error type of `convert` and `quantize`: shown as one line, exit code 1."""

from __future__ import annotations

from ..errors import GptossError


class ConvertError(GptossError):
    """A checkpoint or GGUF cannot be converted: missing file, not gpt-oss, missing tensor, ..."""
