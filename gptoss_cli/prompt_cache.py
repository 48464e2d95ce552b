"""KV-cache snapshots of prompt prefixes on disk, so a new process skips work it has done before.

Every `gptoss run` starts with the same system message, and running the same
command twice repeats the whole prompt. Processing those tokens costs seconds on
a CPU; reading back their keys and values costs milliseconds. Like llama.cpp's
``--prompt-cache``, a snapshot is saved after chosen prefixes of a prompt and a
later prompt that starts with one of them loads it instead of recomputing.

A snapshot is exactly the float32 cache the model computed, so the continuation
is the same arithmetic as without it. Entries are keyed by the model file
(path, size, modification time), the kernels' fingerprint (sources, CPU and
kernel path: any change to the numerics invalidates them) and the tokens. They
are small (tens of MB at most, bounded by MAX_ENTRY_BYTES), written to a
temporary file and renamed, and the oldest beyond MAX_ENTRIES are removed.

What is restored is checked, because a well-formed entry of wrong numbers would
silently give garbage: each entry stores a sha256 of its key, tokens and arrays,
and a load also checks the arrays' dtype, shapes and finiteness. An entry that
fails (a flipped bit, a truncated file, NaN) is deleted, with one notice, and
the prompt is processed instead (then saved again); one of an older format (no
digest) is deleted quietly.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .atomic_write import write_atomically

FORMAT = 2  # 2: a digest of the content; 1 (none) is stale
_KEY_VERSION = 1  # in model_key: entries of older formats keep their names, so they are found and replaced
MAX_ENTRIES = 16
MAX_ENTRY_BYTES = 64 * 2**20
_SUFFIX = ".npz"

Layers = list[tuple[np.ndarray, np.ndarray]]


def default_dir() -> Path:
    """<$GPTOSS_HOME>/cache/prompts when GPTOSS_HOME is set, else $XDG_CACHE_HOME (~/.cache)/gptoss/prompts."""
    from .app_paths import app_dir, user_cache_dir

    if os.environ.get("GPTOSS_HOME"):
        return app_dir() / "cache" / "prompts"
    return user_cache_dir() / "prompts"


def model_key(path: str | os.PathLike[str], kernels: str) -> str:
    """Identity of a model file (of every shard, for a split model named by its first) and the
    code that computes with it. A one-file model keeps the key it always had."""
    from .gguf_split import shard_paths

    p = Path(path).resolve()
    st = p.stat()
    text = f"{_KEY_VERSION}|{p}|{st.st_size}|{st.st_mtime_ns}|{kernels}"
    for other in shard_paths(p)[1:]:  # the shards after the first, if p is the first of several
        if other.exists():
            o = other.stat()
            text += f"|{other.name}:{o.st_size}:{o.st_mtime_ns}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _tokens_key(tokens: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(tokens, dtype=np.int64).tobytes()).hexdigest()[:24]


def _digest(key: str, tokens: np.ndarray, layers: Layers) -> bytes:
    """sha256 of everything an entry says: format, key, tokens, and each array's dtype, shape and bytes."""
    h = hashlib.sha256(f"{FORMAT}|{key}|{len(layers)}|".encode())
    h.update(np.ascontiguousarray(tokens, dtype=np.int64).tobytes())
    for k, v in layers:
        for a in (k, v):
            h.update(f"|{a.dtype.str}|{a.shape}|".encode())
            h.update(np.ascontiguousarray(a).reshape(-1))
    return h.digest()


def _layers_problem(layers: Layers) -> str | None:
    """What makes these arrays no snapshot, or None: finite float32 [heads, rows, dim] pairs
    with rows (the ring of a sliding layer may hold more than the tokens); whether they fit
    the model's cache is the model's check (KVCache.load_snapshot)."""
    if not layers:
        return "no layers"
    for i, (k, v) in enumerate(layers):
        if not (isinstance(k, np.ndarray) and isinstance(v, np.ndarray)):
            return f"layer {i} is not an array"
        if k.dtype != np.float32 or v.dtype != np.float32:
            return f"layer {i} holds {k.dtype}/{v.dtype}, not float32"
        if k.ndim != 3 or k.shape != v.shape or k.shape[1] == 0:
            return f"layer {i} has shapes {k.shape}/{v.shape}"
    for i, (k, v) in enumerate(layers):
        if not (np.isfinite(k).all() and np.isfinite(v).all()):
            return f"layer {i} holds NaN or infinity"
    return None


class _Stale(Exception):
    """An entry of another format: replaced without a word."""


class _Damaged(Exception):
    """An entry that fails a check; the message says which."""


def _read(z: Mapping[str, np.ndarray], key: str, tokens: np.ndarray) -> Layers:
    """The layers of an opened entry; _Damaged when it fails a check, _Stale when of another format
    (other exceptions: unreadable)."""
    files = set(z.files)  # type: ignore[attr-defined]
    if "format" not in files:
        raise _Damaged("it has no format")
    if int(z["format"]) != FORMAT:
        raise _Stale
    n_layers = int(z["layers"]) if "layers" in files else -1
    if not 0 <= n_layers <= len(files):
        raise _Damaged("its layer count is wrong")
    if files != {"format", "key", "tokens", "layers", "digest"} | {f"{c}{i}" for i in range(n_layers) for c in "kv"}:
        raise _Damaged("its arrays are not those of an entry")
    saved = z["tokens"]
    if str(z["key"]) != key or saved.dtype != np.int64 or not np.array_equal(saved, tokens):
        raise _Damaged("it was saved for another model or prompt")
    layers = [(z[f"k{i}"], z[f"v{i}"]) for i in range(n_layers)]
    if z["digest"].tobytes() != _digest(key, tokens, layers):
        raise _Damaged("its digest does not match its content")
    problem = _layers_problem(layers)
    if problem is not None:
        raise _Damaged(problem)
    return layers


class PromptCache:
    """Snapshots of one model's KV cache after given token prefixes, in one directory.

    notice(message) is told once of each damaged entry that was deleted.
    """

    def __init__(self, directory: str | os.PathLike[str], key: str, notice: Callable[[str], None] | None = None):
        self.dir = Path(directory)
        self.key = key
        self.notice = notice

    @property
    def max_entry_bytes(self) -> int:
        return MAX_ENTRY_BYTES

    def _path(self, tokens: Sequence[int]) -> Path:
        return self.dir / f"{self.key}-{_tokens_key(tokens)}{_SUFFIX}"

    def has(self, tokens: Sequence[int]) -> bool:
        return self._path(tokens).exists()

    def load(self, tokens: Sequence[int]) -> Layers | None:
        """The snapshot saved after exactly these tokens, checked; None when there is none or
        it fails a check (then it is deleted, so the next save writes a good one)."""
        path = self._path(tokens)
        want = np.asarray(tokens, dtype=np.int64)
        try:
            if path.stat().st_size > 2 * MAX_ENTRY_BYTES + 2**20:
                raise _Damaged("it is larger than any entry")
            with np.load(path, allow_pickle=False) as z:
                layers = _read(z, self.key, want)
        except FileNotFoundError:
            return None
        except _Stale:
            self._remove(path)
            return None
        except Exception as e:  # failed a check, or unreadable (truncated, not a zip, bad CRC)
            self._remove(path)
            why = str(e) if isinstance(e, _Damaged) else "unreadable"
            if self.notice is not None:
                self.notice(f"the prompt cache entry {path} was damaged ({why}); deleted, recomputing the prompt")
            return None
        try:
            os.utime(path)  # recently used: kept longest
        except OSError:
            pass
        return layers

    def discard(self, tokens: Sequence[int]) -> None:
        """Delete the entry of these tokens (e.g. one that does not fit the model's cache), so it is saved anew."""
        self._remove(self._path(tokens))

    def save(self, tokens: Sequence[int], layers: Layers) -> bool:
        """Write a snapshot (temporary file, then rename); False when too big, not one that
        `load` would accept (not finite, other dtype or shapes), or the disk refuses."""
        if sum(k.nbytes + v.nbytes for k, v in layers) > self.max_entry_bytes:
            return False
        saved = np.asarray(tokens, dtype=np.int64)
        if _layers_problem(layers) is not None:
            return False
        arrays: dict[str, np.ndarray] = {
            "format": np.asarray(FORMAT),
            "key": np.asarray(self.key),
            "tokens": saved,
            "layers": np.asarray(len(layers)),
            "digest": np.frombuffer(_digest(self.key, saved, layers), dtype=np.uint8),
        }
        for i, (k, v) in enumerate(layers):
            arrays[f"k{i}"], arrays[f"v{i}"] = k, v
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_atomically(self._path(tokens), lambda f: np.savez(f, **arrays), notice=self.notice)
        except OSError:
            return False
        self._prune()
        return True

    def _prune(self) -> None:
        try:
            entries = sorted(self.dir.glob(f"*{_SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return
        for old in entries[MAX_ENTRIES:]:
            self._remove(old)

    @staticmethod
    def _remove(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass


def save_points(prompt: Sequence[int], end_id: int | None) -> list[int]:
    """Prefix lengths worth a snapshot: after the second-to-last `<|end|>` (everything
    but the newest message, e.g. the system message of a run) and all but the last
    token (the same prompt again). The last token is always processed, for its logits."""
    n = len(prompt)
    points = set()
    if end_id is not None:
        ends = [i + 1 for i, t in enumerate(prompt) if t == end_id]
        if len(ends) >= 2:
            points.add(ends[-2])
    points.add(n - 1)
    return sorted(p for p in points if 0 < p < n)
