"""Public Python API: `load_model(path)` -> Model.

    from gptoss_cli import load_model
    m = load_model("gpt-oss-20b-mxfp4.gguf", threads=4, context=8192)
    logits = m.logits([200006, 17360])      # [2, vocab] float32, from an empty cache
    m.reset(); last = m.feed(prompt_ids)      # incremental: logits of the last token
    last = m.feed([next_id])
    cp = m.checkpoint(); ...; m.rollback(cp)  # return to an earlier point (chat turns)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .errors import InputError
from .gguf_file import GGUFFile
from .kv_cache import KVCheckpoint
from .model import Transformer
from .weights import read_config, read_weights


def default_threads() -> int:
    """Physical cores are unknown to the standard library; use the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class Model:
    """A loaded gpt-oss model with its KV cache."""

    def __init__(self, path: Path, gguf: GGUFFile, config: ModelConfig, transformer: Transformer, threads: int):
        self.path = path
        self.gguf = gguf
        self.config = config
        self.threads = threads
        self._t = transformer

    @property
    def context(self) -> int:
        return self._t.context

    @property
    def n_past(self) -> int:
        """Number of tokens held in the KV cache."""
        return self._t.n_past

    def reset(self) -> None:
        """Empty the KV cache."""
        self._t.reset()

    def checkpoint(self) -> KVCheckpoint:
        """Remember the cache as it is now, to come back to it with `rollback`."""
        return self._t.cache.checkpoint()

    def rollback(self, cp: KVCheckpoint) -> None:
        """Forget every token after the checkpoint (taken earlier in this sequence)."""
        self._t.cache.rollback(cp)

    def cache_snapshot(self, max_bytes: int | None = None) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """Copies of the KV cache's contents (per layer k, v), for `load_cache_snapshot` or a file;
        None when they would take more than max_bytes."""
        return self._t.cache.snapshot(max_bytes)

    def load_cache_snapshot(self, n_past: int, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Make the cache hold a snapshot taken after n_past tokens (by this model file)."""
        self._t.cache.load_snapshot(n_past, layers)

    def feed(self, token_ids, all_logits: bool = False) -> np.ndarray:
        """Append tokens after those already in the cache.

        Returns the last token's logits [vocab], or with all_logits=True the
        logits of every fed token [n, vocab].
        """
        self._apply_threads()
        out = self._t.forward(np.asarray(token_ids), all_logits=all_logits)
        return out if all_logits else out[-1]

    def logits(self, token_ids) -> np.ndarray:
        """One full forward pass from an empty cache: float32 [len(token_ids), vocab]."""
        self.reset()
        return self.feed(token_ids, all_logits=True)

    def _apply_threads(self) -> None:
        import numba

        if numba.get_num_threads() != self.threads:
            numba.set_num_threads(self.threads)

    def close(self) -> None:
        self.gguf.close()


def load_model(path: str | os.PathLike[str], threads: int | None = None, context: int | None = None) -> Model:
    """Open, validate and map a gpt-oss GGUF file; weights stay in the file map."""
    import numba

    gguf = GGUFFile(path)
    try:
        config = read_config(gguf)
        weights = read_weights(gguf, config)
    except Exception:
        gguf.close()
        raise
    max_threads = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        threads = min(default_threads(), max_threads)
    if threads < 1 or threads > max_threads:
        raise InputError(f"threads must be between 1 and {max_threads}, got {threads}")
    if context is None:
        context = config.context_length
    if context < 1:
        raise InputError(f"context size must be positive, got {context}")
    transformer = Transformer(config, weights, context)
    model = Model(Path(path), gguf, config, transformer, threads)
    model._apply_threads()
    return model
