"""The one loader: a model name or GGUF path in, everything a command needs out.

    from gptoss_cli import load_model
    lm = load_model("20b", threads=4, context=8192)   # a name, an alias or a path
    cache = lm.new_cache()                            # one conversation's KV cache
    last = lm.forward(prompt_ids, cache)              # logits of the last token [vocab]
    last = lm.forward([next_id], cache)
    lm.tokenizer, lm.encoding                         # o200k_harmony and Harmony, from the file
    lm.logits(ids)                                    # [n, vocab] over a fresh cache

`run`, `chat`, `bench`, `tokenize`, `harmony` and the Python API all open
models here, so threads and context are checked in one place and every
command sees the same file the same way. The weights stay in the file map.
The tokenizer is built when first used (a tokenizer-only GGUF serves
`tokenize`; a weights-only test model serves the API); `warm_up=True` builds
it at once and compiles the kernels, telling `notice` when that is slow.
"""

from __future__ import annotations

import os
import time
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import ModelFileError, OptionError
from .gguf_split import ModelFile, open_model_file

__all__ = ["LoadedModel", "load_model", "default_threads"]


def default_threads() -> int:
    """Physical cores are unknown to the standard library; use the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _max_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def _checked_threads(threads: int | None) -> int:
    limit = _max_threads()
    if threads is None:
        return min(default_threads(), limit)
    if not 1 <= threads <= limit:
        why = f"{threads} (must be between 1 and {limit} on this machine)"
        raise OptionError(f"invalid value for threads: {why}", "threads", why)
    return threads


def _checked_sequences(sequences: int) -> int:
    if not isinstance(sequences, int) or sequences < 1:
        raise ValueError(f"sequences must be a positive int, got {sequences!r}")
    return sequences


def _checked_context(context: int | None, trained: int) -> int:
    if context is None:
        return trained
    why = None
    if context < 1:
        why = f"{context} (must be >= 1)"
    elif context > trained:
        why = f"{context} is larger than the model's context length {trained}"
    if why is not None:
        raise OptionError(f"invalid value for context size: {why}", "ctx_size", why)
    return context


def _checked_precision(precision: str) -> None:
    from .options import option

    choices = option("precision").choices
    if precision not in choices:
        why = f"{precision!r} (must be {' or '.join(choices)})"
        raise OptionError(f"invalid value for precision: {why}", "precision", why)


class LoadedModel:
    """A mapped gpt-oss GGUF: config, stateless model, tokenizer, Harmony encoding, load facts.

    It is also what the generation loop calls a language model: `context`,
    `new_cache()`, `forward(tokens, cache)` and `forward_batch`.
    """

    def __init__(
        self,
        path: Path,
        gguf: ModelFile,
        *,
        config: Any = None,
        weights: Any = None,
        threads: int = 1,
        context: int = 0,
        vocab_dir: Path | None = None,
        prompt_cache_dir: Path | None = None,
        notice: Callable[[str], None] | None = None,
        pager: Any = None,
        budget: Any = None,
        precision: str = "fast",
    ) -> None:
        self.path = path
        self.gguf = gguf  # a GGUFFile, or a SplitGGUF over every shard of a split model
        self.config = config  # gptoss_cli.config.ModelConfig; None when opened for the tokenizer only
        self._weights = weights
        self.threads = threads
        self.context = context
        self.load_s = 0.0  # opening the file and the tokenizer
        self.compile_s: float | None = None  # set when this start compiled the kernels
        self._vocab_dir = vocab_dir
        self._prompt_cache_dir = prompt_cache_dir
        self._notice = notice  # told once when a cache entry was damaged and is rebuilt
        self.pager = pager  # gptoss_cli.expert_pager.ExpertPager when the model could outgrow the budget, else None
        self.budget = budget  # gptoss_cli.memory_budget.BudgetPlan, or None where the OS gives no figure
        self.precision = precision  # "fast" or "exact": the weight products' arithmetic (docs/design.md §2.8)

    # -- parts built on first use ---------------------------------------------------

    @cached_property
    def model(self):
        """The stateless Transformer over the mapped weights."""
        if self._weights is None:
            raise ModelFileError(f"{self.path}: opened for its tokenizer only")
        from .model import Transformer

        return Transformer(self.config, self._weights, expert_hook=self.pager, precision=self.precision)

    @cached_property
    def tokenizer(self):
        """The model's o200k_harmony tokenizer (its vocabulary from the cache directory when saved)."""
        from .tokenizer import Tokenizer

        tok = Tokenizer(self._vocabulary())
        if self.config is not None and tok.vocab_size != self.config.vocab_size:
            raise ModelFileError(
                f"{self.path}: the tokenizer has {tok.vocab_size} tokens but the model's vocabulary "
                f"has {self.config.vocab_size}"
            )
        return tok

    @cached_property
    def encoding(self):
        """Harmony rendering and parsing over the tokenizer."""
        from .harmony.render import HarmonyEncoding

        return HarmonyEncoding(self.tokenizer)

    @cached_property
    def weight_types(self) -> list[int]:
        return sorted({t.ggml_type for t in self.gguf.tensors.values()})

    @cached_property
    def fingerprint(self) -> str:
        """The kernels' fingerprint for this file's weight types (keys compile markers and prompt snapshots)."""
        from .kernel_warmup import kernel_fingerprint

        return kernel_fingerprint(self.weight_types, self.precision)

    @cached_property
    def prompt_cache(self):
        """Saved prompt prefixes of this file (gptoss_cli.prompt_cache.PromptCache), or None when off."""
        if self._prompt_cache_dir is None:
            return None
        from .prompt_cache import PromptCache, model_key

        return PromptCache(self._prompt_cache_dir, model_key(self.path, self.fingerprint), notice=self._notice)

    def _vocabulary(self):
        from . import vocab_cache
        from .prompt_cache import model_key
        from .tokenizer import vocab_parts
        from .tokenizer_arrays import tokenizer_arrays_from_gguf

        key = model_key(self.path, "vocabulary")
        parts = vocab_cache.load(self._vocab_dir, key, notice=self._notice) if self._vocab_dir is not None else None
        if parts is None:
            parts = vocab_parts(tokenizer_arrays_from_gguf(self.gguf, with_merges=False))
            if self._vocab_dir is not None:
                vocab_cache.save(self._vocab_dir, key, parts, notice=self._notice)
        return parts

    # -- the language-model interface ---------------------------------------------------

    def new_cache(self, context: int | None = None):
        """An empty KV cache for one sequence (default: the context this model was opened with)."""
        return self.model.new_cache(self.context if context is None else context)

    def forward(self, tokens: Sequence[int] | np.ndarray, cache, all_logits: bool = False) -> np.ndarray:
        """Append tokens to `cache`; the last token's logits [vocab] (all_logits: [n, vocab])."""
        self._apply_threads()
        return self.model.forward(tokens, cache, all_logits=all_logits)

    @property
    def prefill_chunk(self) -> int:
        """Prompt tokens per forward pass (the model's chunk): a prompt fed in pieces of this size
        computes exactly what it computes in one call."""
        from .model import PREFILL_CHUNK

        return PREFILL_CHUNK

    def forward_batch(self, seqs, all_logits: bool = False) -> list[np.ndarray]:
        """Advance several sequences, each over its own cache, in one pass (see Transformer.forward_batch)."""
        self._apply_threads()
        return self.model.forward_batch(seqs, all_logits=all_logits)

    def logits(self, token_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """One full pass over a fresh cache: float32 [len(token_ids), vocab]."""
        return self.forward(token_ids, self.new_cache(), all_logits=True)

    def generator(self, cache=None):
        """A gptoss_cli.generation.Generator over this model: one conversation with its own cache."""
        from .generation import Generator

        return Generator(self, self.encoding, cache=cache, prompt_cache=self.prompt_cache)

    def ensure_compiled(self, notice: Callable[[str], None] | None = None, marker_dir: str | Path | None = None,
                        batched: bool = False):
        """Compile the kernels now if they never ran on this machine (see kernel_warmup); batched: those of
        a decode step of several sequences (a server's batch)."""
        from .kernel_warmup import ensure_compiled

        self._apply_threads()
        seconds = ensure_compiled(self.model, self.weight_types, notice, marker_dir, batched=batched)
        if not batched:
            self.compile_s = seconds
        return seconds

    def _apply_threads(self) -> None:
        import numba

        if numba.get_num_threads() != self.threads:
            numba.set_num_threads(self.threads)

    def close(self) -> None:
        if self.pager is not None:
            self.pager.close()
        self.gguf.close()

    def __enter__(self) -> "LoadedModel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _cache_dir(prompt_cache: bool | str | os.PathLike[str]) -> Path | None:
    if not prompt_cache:
        return None
    from .prompt_cache import default_dir

    return default_dir() if prompt_cache is True else Path(prompt_cache)


def load_model(
    model: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
    context: int | None = None,
    weights: bool = True,
    prompt_cache: bool | str | os.PathLike[str] = False,
    warm_up: bool = False,
    notice: Callable[[str], None] | None = None,
    marker_dir: str | Path | None = None,
    mem_budget: str | int | None = None,
    precision: str = "fast",
    sequences: int = 1,
) -> LoadedModel:
    """Open a gpt-oss GGUF given by path, model name or alias (None: the default model).

    A split model (NAME-0000K-of-0000N.gguf) opens from any of its shards.

    weights=False opens the file for its tokenizer alone (no weight checks, no
    Numba). prompt_cache: True keeps the vocabulary and snapshots of prompt
    prefixes in prompt_cache.default_dir(), a path puts them there, False
    keeps none. warm_up=True builds the tokenizer now and compiles the kernels
    if they never ran here (load_s counts the file and the tokenizer; the
    compile's seconds are compile_s). notice() is told about a slow first
    compile and about a damaged cache entry that is deleted and rebuilt.
    precision: "fast" (the default: the MXFP4 and Q8_0 products take activations
    rounded to two 8-bit pieces per block, about 1e-4 of the logits' spread) or
    "exact" (float32 activations throughout); docs/design.md §2.8.
    sequences: how many KV caches at full context the memory budget keeps room for
    (a server's --parallel slots; one conversation holds one).
    """
    from .model_names import resolve_model

    _checked_precision(precision)
    t0 = time.perf_counter()
    path = resolve_model(None if model is None else str(model))
    gguf = open_model_file(path)
    path = gguf.path  # a split model is known by its first shard
    pager = None
    try:
        cache_dir = _cache_dir(prompt_cache)
        if not weights:
            lm = LoadedModel(path, gguf, vocab_dir=cache_dir, notice=notice, precision=precision)
        else:
            from .weights import read_config, read_weights

            config = read_config(gguf)
            n_threads = _checked_threads(threads)
            ctx = _checked_context(context, config.context_length)
            weights_ = read_weights(gguf, config)
            from .expert_pager import pager_for

            budget, pager = pager_for(gguf, config, weights_, ctx, mem_budget, sequences=_checked_sequences(sequences))
            lm = LoadedModel(
                path, gguf, config=config, weights=weights_, threads=n_threads, context=ctx,
                vocab_dir=cache_dir, prompt_cache_dir=cache_dir, notice=notice, pager=pager, budget=budget,
                precision=precision,
            )
            lm._apply_threads()
        if warm_up:
            lm.tokenizer  # noqa: B018 - built now, so that load_s counts it and its errors come first
        lm.load_s = time.perf_counter() - t0
        if warm_up and weights:
            lm.ensure_compiled(notice, marker_dir)
    except BaseException:
        if pager is not None:
            pager.close()
        gguf.close()
        raise
    return lm
