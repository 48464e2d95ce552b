"""The checked, split vocabulary of a model file, kept on disk beside its prompt snapshots.

Building a Tokenizer from a GGUF means reading 200k token strings, respelling
them from GPT-2's byte-to-unicode form and checking them: about 0.3 s of the
few seconds a warm `gptoss run` takes to its first token. The result
(tokenizer.VocabParts) is plain dicts and ints, so it is stored with marshal,
which reads it back in a few tens of milliseconds and never runs code.

An entry is keyed by the model file's path, size and modification time and by
the Python version (marshal's format follows it). It is written to a temporary
file and renamed, and the oldest beyond MAX_ENTRIES are removed.

What comes back is trusted by the tokenizer (tiktoken panics on a vocabulary
without every single byte, on every run), so it is checked first: a text
header names the format, key and the sha256 of the marshal payload, which is
only unmarshalled once the digest matches; then the parts must be what
tokenizer.vocab_parts returns (types, all 256 bytes, token ids that split
0..vocab_size-1 exactly). An entry that fails is deleted, with one notice, and
the vocabulary is built from the file again; one of another format or Python
(or the previous version's headerless files) is deleted quietly.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

from .atomic_write import write_atomically
from .tokenizer import VocabParts

FORMAT = 2  # 2: a header with the payload's digest; 1 was the bare marshal tuple
SUFFIX = ".vocab"
MAX_ENTRIES = 8
MAX_ENTRY_BYTES = 256 * 2**20  # o200k takes a few MB; anything far bigger is not ours
_MAGIC = b"gptoss vocabulary\n"
_FORMAT_1_START = (b")", b"\xa9")  # marshal's small tuple, with or without its reference flag

Notice = Callable[[str], None]


def _tag() -> str:
    return f"{FORMAT}|{sys.version_info[0]}.{sys.version_info[1]}|{marshal.version}"


def entry_path(directory: str | os.PathLike[str], key: str) -> Path:
    return Path(directory) / f"{key}{SUFFIX}"


def _only(values: Any, kind: type) -> bool:
    return set(map(type, values)) <= {kind}  # map(type, ...) runs at C speed over 200k tokens


def parts_problem(parts: VocabParts) -> str | None:
    """What makes `parts` unlike anything tokenizer.vocab_parts returns, or None.

    Those are what the tokenizer relies on: tiktoken needs every single byte among
    the ranks, and each id below vocab_size must be exactly one of a rank, a
    special token or unused (decoding looks every id up in one of them).
    """
    from .tokenizer import _PRE_PATTERNS

    ranks, special, unused, n = parts.ranks, parts.special, parts.unused, parts.vocab_size
    if not (type(ranks) is dict and type(special) is dict and type(unused) is frozenset and type(n) is int):
        return "its parts have the wrong types"
    if not (_only(ranks, bytes) and _only(special, str) and _only(ranks.values(), int)
            and _only(special.values(), int) and _only(unused, int)):
        return "its tokens have the wrong types"
    if type(parts.pre) is not str or parts.pre not in _PRE_PATTERNS:
        return "its pre-tokenizer is unknown"
    if not all(x is None or (type(x) is int and x >= 0) for x in (parts.bos_id, parts.eos_id, parts.padding_id)):
        return "its bos/eos/padding ids are not token ids"
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        return f"no token for the byte 0x{missing[0]:02x}"
    ids = set(ranks.values())
    ids.update(special.values())
    ids.update(unused)
    if len(ranks) + len(special) + len(unused) != n or len(ids) != n or min(ids) != 0 or max(ids) != n - 1:
        return f"its token ids do not split 0..{n - 1} (vocabulary size {n})"
    return None


class _Stale(Exception):
    """An entry of another format or Python: replaced without a word."""


class _Damaged(Exception):
    """An entry that fails a check; the message says which."""


def _header(key: str, payload: bytes) -> bytes:
    return _MAGIC + f"{_tag()}\n{key}\n{hashlib.sha256(payload).hexdigest()}\n".encode()


def _decode(data: bytes, key: str) -> VocabParts:
    """The parts in an entry's bytes; _Stale or _Damaged (why) when they are not to be used."""
    if not data.startswith(_MAGIC):
        if data[:1] in _FORMAT_1_START:
            raise _Stale
        raise _Damaged("its header is not ours")
    lines = data[len(_MAGIC):].split(b"\n", 3)
    if len(lines) != 4:
        raise _Damaged("its header is cut short")
    tag, saved_key, digest, payload = lines
    if tag != _tag().encode():
        raise _Stale
    if saved_key != key.encode():
        raise _Damaged("it was saved for another model file")
    if digest != hashlib.sha256(payload).hexdigest().encode():
        raise _Damaged("its digest does not match its content")
    try:
        values = marshal.loads(payload)  # the bytes we wrote: the digest matched
        parts = VocabParts(*values)
    except (EOFError, ValueError, TypeError):
        raise _Damaged("its content does not unpack") from None
    problem = parts_problem(parts)
    if problem is not None:
        raise _Damaged(problem)
    return parts


def load(directory: str | os.PathLike[str], key: str, *, notice: Notice | None = None) -> VocabParts | None:
    """The vocabulary saved for this model key, checked; None when there is none or it fails a
    check (then it is deleted, and notice is told unless it was merely of another format)."""
    path = entry_path(directory, key)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ENTRY_BYTES + 1)
        if len(data) > MAX_ENTRY_BYTES:
            raise _Damaged("it is larger than any vocabulary")
        parts = _decode(data, key)
    except OSError:  # none, or unreadable: nothing to delete that we could
        return None
    except _Stale:
        _remove(path)
        return None
    except _Damaged as e:
        _remove(path)
        if notice is not None:
            notice(f"the vocabulary cache entry {path} was damaged ({e}); deleted, reading the vocabulary from the model")
        return None
    try:
        os.utime(path)  # recently used: kept longest
    except OSError:
        pass
    return parts


def save(directory: str | os.PathLike[str], key: str, parts: VocabParts, *, notice: Notice | None = None) -> None:
    """Store the vocabulary for this key; skipped silently when the directory cannot be written
    (and when `parts` would fail load's check, so no entry is rebuilt on every run)."""
    if parts_problem(parts) is not None:
        return
    values = tuple(getattr(parts, f.name) for f in fields(VocabParts))  # not astuple: it deep-copies
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
        payload = marshal.dumps(values)
        blob = _header(key, payload) + payload
        write_atomically(entry_path(d, key), lambda f: f.write(blob), notice=notice)
    except OSError:
        return  # read-only or full: the vocabulary is built from the file next time too
    _prune(d)


def _prune(directory: Path) -> None:
    """Keep the MAX_ENTRIES most recently used: each model file (and each change to it) has its own."""
    try:
        entries = sorted(directory.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for old in entries[MAX_ENTRIES:]:
        _remove(old)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
