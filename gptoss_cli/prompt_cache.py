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
temporary file and renamed, and the oldest beyond MAX_ENTRIES are removed. A
missing, unreadable or mismatched entry is ignored: the prompt is simply processed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic_write import write_atomically

FORMAT = 1
MAX_ENTRIES = 16
MAX_ENTRY_BYTES = 64 * 2**20
_SUFFIX = ".npz"


def default_dir() -> Path:
    """<$GPTOSS_HOME>/cache/prompts when GPTOSS_HOME is set, else $XDG_CACHE_HOME (~/.cache)/gptoss/prompts."""
    from .registry import app_dir, user_cache_dir

    if os.environ.get("GPTOSS_HOME"):
        return app_dir() / "cache" / "prompts"
    return user_cache_dir() / "prompts"


def model_key(path: str | os.PathLike[str], kernels: str) -> str:
    """Identity of a model file and the code that computes with it."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha256(f"{FORMAT}|{p}|{st.st_size}|{st.st_mtime_ns}|{kernels}".encode()).hexdigest()[:20]


def _tokens_key(tokens: Sequence[int]) -> str:
    return hashlib.sha256(np.asarray(tokens, dtype=np.int64).tobytes()).hexdigest()[:24]


class PromptCache:
    """Snapshots of one model's KV cache after given token prefixes, in one directory."""

    def __init__(self, directory: str | os.PathLike[str], key: str):
        self.dir = Path(directory)
        self.key = key

    @property
    def max_entry_bytes(self) -> int:
        return MAX_ENTRY_BYTES

    def _path(self, tokens: Sequence[int]) -> Path:
        return self.dir / f"{self.key}-{_tokens_key(tokens)}{_SUFFIX}"

    def has(self, tokens: Sequence[int]) -> bool:
        return self._path(tokens).exists()

    def load(self, tokens: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """The snapshot saved after exactly these tokens, or None."""
        path = self._path(tokens)
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) != FORMAT or str(z["key"]) != self.key:
                    return None
                if not np.array_equal(z["tokens"], np.asarray(tokens, dtype=np.int64)):
                    return None
                n_layers = int(z["layers"])
                layers = [(z[f"k{i}"], z[f"v{i}"]) for i in range(n_layers)]
        except FileNotFoundError:
            return None
        except Exception:  # a damaged entry: drop it and compute instead
            self._remove(path)
            return None
        try:
            os.utime(path)  # recently used: kept longest
        except OSError:
            pass
        return layers

    def save(self, tokens: Sequence[int], layers: list[tuple[np.ndarray, np.ndarray]]) -> bool:
        """Write a snapshot (temporary file, then rename); False when too big or the disk refuses."""
        if sum(k.nbytes + v.nbytes for k, v in layers) > self.max_entry_bytes:
            return False
        arrays: dict[str, np.ndarray] = {
            "format": np.asarray(FORMAT),
            "key": np.asarray(self.key),
            "tokens": np.asarray(tokens, dtype=np.int64),
            "layers": np.asarray(len(layers)),
        }
        for i, (k, v) in enumerate(layers):
            arrays[f"k{i}"], arrays[f"v{i}"] = k, v
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_atomically(self._path(tokens), lambda f: np.savez(f, **arrays))
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
