"""Errors a user can cause (bad file, bad option, bad input).

The CLI turns any GptossError into one line on stderr and a non-zero exit code;
anything else is a bug and may show a traceback.
"""

from __future__ import annotations


class GptossError(Exception):
    """Base class for user-facing errors; str(err) is the one line shown."""

    exit_code: int = 1


class ModelFileError(GptossError):
    """The model file is missing, not a GGUF, truncated, or not a usable gpt-oss model."""


class UnsupportedTensorType(ModelFileError):
    """A tensor uses a GGML type the runtime has no kernel for."""


class InputError(GptossError):
    """User input is unusable: not UTF-8, too long for the context, malformed JSON."""


class OptionError(InputError):
    """A command-line option (or its config-file default) has an impossible value; exit code 2 like usage errors.

    `option` and `why` name the setting and the rule when the refusal comes from
    below the CLI (the loader), so a command can restate it with its own flag.
    """

    exit_code = 2

    def __init__(self, message: str, option: str | None = None, why: str | None = None) -> None:
        super().__init__(message)
        self.option = option
        self.why = why
