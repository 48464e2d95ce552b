"""Read a TOML file (config.toml, models.toml) so that every fault is one ConfigError line.

A config file the user wrote by hand may be missing, unreadable, not UTF-8 or not
TOML; each of these must reach the user as one clear sentence, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .errors import GptossError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    try:
        import tomli as tomllib  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover
        tomllib = None  # type: ignore[assignment]

__all__ = ["ConfigError", "read_toml"]


class ConfigError(GptossError):
    """config.toml or models.toml is unreadable or holds a bad value."""


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """The parsed file. FileNotFoundError propagates (callers decide what absence means);
    every other fault is a ConfigError naming `what` and the path."""
    if tomllib is None:  # pragma: no cover
        raise ConfigError(f"reading {what} needs Python 3.11+ or the 'tomli' package")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start} cannot be decoded)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{what} {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
