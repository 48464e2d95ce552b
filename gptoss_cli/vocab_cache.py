"""The checked, split vocabulary of a model file, kept on disk beside its prompt snapshots.

Building a Tokenizer from a GGUF means reading 200k token strings, respelling
them from GPT-2's byte-to-unicode form and checking them: about 0.3 s of the
few seconds a warm `gptoss run` takes to its first token. The result
(tokenizer.VocabParts) is plain dicts and ints, so it is stored with marshal,
which reads it back in a few tens of milliseconds and never runs code.

An entry is keyed by the model file's path, size and modification time and by
the Python version (marshal's format follows it). It is written to a temporary
file and renamed; a missing, unreadable or mismatched entry is ignored and the
vocabulary is built from the file again.
"""

from __future__ import annotations

import marshal
import os
import sys
from dataclasses import fields
from pathlib import Path

from .atomic_write import write_atomically
from .tokenizer import VocabParts

FORMAT = 1
SUFFIX = ".vocab"


def _tag() -> str:
    return f"{FORMAT}|{sys.version_info[0]}.{sys.version_info[1]}|{marshal.version}"


def entry_path(directory: str | os.PathLike[str], key: str) -> Path:
    return Path(directory) / f"{key}{SUFFIX}"


def load(directory: str | os.PathLike[str], key: str) -> VocabParts | None:
    """The vocabulary saved for this model key, or None."""
    try:
        with open(entry_path(directory, key), "rb") as f:
            tag, saved_key, values = marshal.loads(f.read())
        if tag != _tag() or saved_key != key:
            return None
        parts = VocabParts(*values)
        if not (isinstance(parts.ranks, dict) and isinstance(parts.special, dict)
                and isinstance(parts.unused, frozenset)):
            return None
        return parts
    except (OSError, EOFError, ValueError, TypeError):
        return None


def save(directory: str | os.PathLike[str], key: str, parts: VocabParts) -> None:
    """Store the vocabulary for this key; a directory that cannot be written is skipped silently."""
    values = tuple(getattr(parts, f.name) for f in fields(VocabParts))  # not astuple: it deep-copies
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        blob = marshal.dumps((_tag(), key, values))
        write_atomically(entry_path(d, key), lambda f: f.write(blob))
    except OSError:
        pass  # read-only or full: the vocabulary is built from the file next time too
