"""The generation loop: prompt tokens in, a stream of Harmony events out.

Shared by `gptoss run`, `gptoss chat` (and the server to come). A Generator is
one conversation: a language model (anything with the `LanguageModel`
interface, so tests drive the loop with scripted fakes), its own KV cache,
and the tokens that cache holds. Nothing here prints.

    lm = load_model("gpt-oss-20b.gguf", threads=4, context=8192)   # gptoss_cli.loader
    gen = lm.generator()                       # a new cache; kept between turns
    conv = build_conversation("Hello")         # gptoss_cli.prompt
    g = gen.generate(gen.render(conv), SamplingParams(seed=1), max_tokens=512)
    try:
        for ev in g:                           # gptoss_cli.events: PromptProcessed, Token,
            ...                                # MessageStart, TextDelta, MessageEnd, Done
    except KeyboardInterrupt:
        for ev in g.interrupt():               # the rest of the stream, then Done
            ...
    result = g.result                          # GenerationResult

KV cache reuse: when the next prompt starts with exactly the tokens the cache
holds (a chat continuing after a tool call, say), only the new tokens are
processed; after each prompt a checkpoint lets the next turn roll back to it
(a chat's next prompt extends the last prompt but not the reply, whose
analysis is dropped). A fresh conversation can start from a snapshot on disk
instead (gptoss_cli.prompt_cache); the prompt is always fed in the same
pieces, split at the snapshot points, so output never depends on it.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from .errors import InputError, ModelFileError
from .events import (
    CONTEXT_FULL,
    INTERRUPTED,
    MAX_TOKENS,
    STOP,
    TOOL_CALL,
    Done,
    GenerationEvent,
    GenerationResult,
    MessageEnd,
    PromptProcessed,
    Token,
    ToolCall,
    message_kind,
)
from .harmony.model import Conversation, Role
from .harmony.render import HarmonyEncoding
from .prompt_cache import PromptCache, save_points
from .sampling import Sampler, SamplingParams

__all__ = ["LanguageModel", "Cache", "TokenConstraint", "Generator", "Generation", "advance_together"]


class Cache(Protocol):
    """One sequence's KV cache (gptoss_cli.kv_cache.KVCache has it)."""

    context: int
    n_past: int
    #: whether snapshot / load_snapshot work (prompts are then fed split at the save points)
    snapshots: bool

    def reset(self) -> None: ...

    def checkpoint(self) -> Any: ...

    def rollback(self, checkpoint: Any) -> None: ...

    def snapshot(self, max_bytes: int | None = None) -> Any: ...  # None when larger than max_bytes

    def load_snapshot(self, n_past: int, layers: Any) -> None: ...  # ValueError when it does not fit


class LanguageModel(Protocol):
    """What the loop needs from a model (gptoss_cli.loader.LoadedModel has it)."""

    context: int

    def new_cache(self, context: int | None = None) -> Cache: ...

    def forward(self, tokens: Sequence[int], cache: Cache) -> np.ndarray: ...  # last token's logits [vocab]

    def forward_batch(self, seqs: Sequence[tuple[Sequence[int], Cache]]) -> list[np.ndarray]: ...  # one per sequence


class TokenConstraint(Protocol):
    """Limits which tokens may come next (structured output); sees every completion token.

    `allowed()` is a boolean mask over the vocabulary, or None when any token may
    come (e.g. on the analysis channel); the sampler draws only from allowed
    tokens. `consume(token)` moves it past the token that was drawn.
    """

    def allowed(self) -> np.ndarray | None: ...

    def consume(self, token: int) -> None: ...


class Generator:
    """One conversation: a model, its own KV cache, and which tokens that cache holds."""

    def __init__(
        self,
        model: LanguageModel,
        encoding: HarmonyEncoding,
        *,
        cache: Cache | None = None,
        stop_tokens: Sequence[int] | None = None,
        prompt_cache: PromptCache | None = None,
    ):
        self.model = model
        self.cache = cache if cache is not None else model.new_cache()
        self.encoding = encoding
        self.tokenizer = encoding.tokenizer
        self.prompt_cache = prompt_cache if self.cache.snapshots else None  # snapshots of prompt prefixes on disk
        try:
            self._end_id: int | None = self.tokenizer.token_id("<|end|>")
        except Exception:
            self._end_id = None
        self.stop_tokens = frozenset(stop_tokens if stop_tokens is not None else encoding.stop_tokens_for_assistant_actions())
        self._cached: list[int] = []  # tokens in the KV cache, valid when _cache_valid
        self._cache_valid = False
        # (checkpoint, tokens) taken after the last prompt: a chat's next prompt
        # extends the last prompt but not the reply (analysis is dropped).
        self._prompt_checkpoint: tuple[Any, list[int]] | None = None

    @property
    def context(self) -> int:
        return self.cache.context

    # -- cache bookkeeping --------------------------------------------------------

    @property
    def cached_tokens(self) -> list[int]:
        """Tokens the KV cache holds (empty when unknown)."""
        return list(self._cached) if self._cache_valid else []

    def reset(self) -> None:
        self.cache.reset()
        self._cached = []
        self._cache_valid = True
        self._prompt_checkpoint = None

    def _remember_prompt(self) -> None:
        if self._cache_valid:
            self._prompt_checkpoint = (self.cache.checkpoint(), list(self._cached))

    def advance(self, ids: list[int]) -> np.ndarray:
        """Run tokens after those the cache holds; the last one's logits [vocab].

        ModelFileError when the logits are not finite: the weights (or the
        file's numbers) are damaged, and sampling from them would print noise.
        """
        return advance_together([(self, ids)])[0]

    def reusable(self, prompt: Sequence[int]) -> int:
        """How many leading prompt tokens would not be computed again: everything the cache holds
        when that is a prefix of the prompt, else the last prompt when the cache can roll back to
        it, else none. Changes nothing (a server asks each of its conversations before choosing)."""
        return self._reuse_plan(list(prompt))[0]

    def _reuse_plan(self, prompt: list[int]) -> tuple[int, Any]:
        """(tokens reused, the checkpoint to roll back to first, or None)."""
        c = self._cached
        if self._cache_valid and c and self.cache.n_past == len(c) and len(c) < len(prompt) and prompt[: len(c)] == c:
            return len(c), None
        cp = self._prompt_checkpoint
        if cp is not None and self._cache_valid and self.cache.n_past >= len(cp[1]):
            tokens = cp[1]
            if 0 < len(tokens) < len(prompt) and prompt[: len(tokens)] == tokens:
                return len(tokens), cp
        return 0, None

    def _reusable(self, prompt: list[int]) -> int:
        """Reuse what reusable() says, rolling the cache back when that is how."""
        n, cp = self._reuse_plan(prompt)
        if cp is not None:
            self.cache.rollback(cp[0])
            self._cached = list(cp[1])
        return n

    def _save_points(self, prompt: list[int]) -> list[int]:
        """Where the prompt is split (see prompt_cache.save_points); none for caches without snapshots."""
        return save_points(prompt, self._end_id) if self.cache.snapshots else []

    def _load_saved(self, prompt: list[int], points: list[int]) -> int:
        """Load the longest saved snapshot at one of the points; how many tokens it holds."""
        pc = self.prompt_cache
        if pc is None:
            return 0
        for p in reversed(points):
            layers = pc.load(prompt[:p])
            if layers is None:
                continue
            try:
                self.cache.load_snapshot(p, layers)
            except ValueError:  # saved with another context size or shape: make room for this one's
                pc.discard(prompt[:p])
                continue
            self._cached = list(prompt[:p])
            self._cache_valid = True
            return p
        return 0

    def _feed_prompt(
        self, prompt: list[int], reuse: int, points: list[int], save: bool = True
    ) -> Iterator[None]:
        """Feed prompt[reuse:], stopping at the save points (for a cache with snapshots, the
        same split whether or not anything is saved, so results never depend on the cache);
        saves new snapshots when `save` (a prompt started fresh or from disk: a chat's later
        turns continue the cache in memory and would only fill the directory).

        A generator: it yields after each forward pass of at most the model's prefill chunk
        (its `prefill_chunk`; the pieces the model would cut the same tokens into anyway, so
        the arithmetic does not change) and returns the last token's logits."""
        pc = self.prompt_cache if save else None
        piece = getattr(self.model, "prefill_chunk", None)
        start, logits = reuse, None
        for p in points + [len(prompt)]:
            if p <= start:
                continue
            step = piece or p - start
            for a in range(start, p, step):
                logits = self.advance(prompt[a : min(p, a + step)])
                yield
            start = p
            if pc is not None and p < len(prompt) and not pc.has(prompt[:p]):
                snap = self.cache.snapshot(pc.max_entry_bytes)
                if snap is not None:  # None: too big to be worth a file
                    pc.save(prompt[:p], snap)
        assert logits is not None  # the prompt is longer than what was reused
        return logits

    # -- public ---------------------------------------------------------------------------

    def prefill(self, prompt: list[int]) -> tuple[np.ndarray, int, float]:
        """Bring the cache to the end of `prompt`, reusing what it (or the prompt cache) holds.

        Returns the last prompt token's logits, how many leading tokens were
        not computed again, and the seconds spent restoring a snapshot from
        disk. Afterwards the next turn can roll back here.
        """
        return drain(self.prefill_steps(prompt))

    def prefill_steps(self, prompt: list[int]) -> Iterator[None]:
        """`prefill` one forward pass at a time: yields after each, returns what prefill returns
        (a server runs other requests' decode steps in between)."""
        reuse = self._reusable(prompt)
        in_memory = reuse > 0
        points = self._save_points(prompt)
        restore_s = 0.0
        if not reuse:
            self.reset()
            t0 = time.perf_counter()
            reuse = self._load_saved(prompt, points)
            restore_s = time.perf_counter() - t0
        logits = yield from self._feed_prompt(prompt, reuse, points, save=not in_memory)
        self._remember_prompt()
        return logits, reuse, restore_s

    def render(self, conversation: Conversation, role: Role | str = Role.ASSISTANT) -> list[int]:
        """The completion prompt of a conversation (ends with `<|start|>assistant`)."""
        return self.encoding.render_conversation_for_completion(conversation, role)

    def check_prompt(self, prompt_ids: Sequence[int]) -> None:
        """InputError when the prompt is empty or leaves no room in the context."""
        n, ctx = len(prompt_ids), self.cache.context
        if n == 0:
            raise InputError("the prompt is empty")
        if n >= ctx:
            raise InputError(
                f"the prompt is {n} tokens, longer than the context of {ctx} tokens"
                " (raise it with -c/--ctx-size or shorten the prompt)"
            )

    def generate(
        self,
        prompt_ids: Sequence[int],
        sampling: SamplingParams | Sampler | None = None,
        *,
        max_tokens: int | None = None,
        role: Role | str = Role.ASSISTANT,
        constraint: TokenConstraint | None = None,
    ) -> "Generation":
        """Start a completion of `prompt_ids` (iterate the result for events).

        sampling: SamplingParams (a fresh seeded Sampler) or a Sampler to keep
        its random state across turns. role: the role the prompt's last
        `<|start|>` opened. constraint: which tokens may come next (structured
        output). Raises InputError at once when the prompt does not fit.
        """
        prompt = [int(t) for t in prompt_ids]
        self.check_prompt(prompt)
        if max_tokens is not None and max_tokens < 1:
            raise InputError(f"max tokens must be at least 1, got {max_tokens}")
        if sampling is None:
            sampling = SamplingParams()
        sampler = sampling if isinstance(sampling, Sampler) else Sampler(sampling)
        return Generation(self, prompt, sampler, max_tokens, role, constraint)


def drain(steps: Iterator[None]) -> Any:
    """Run a stepwise computation (prefill_steps, start_steps) to its end; what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def advance_together(steps: Sequence[tuple[Generator, list[int]]]) -> list[np.ndarray]:
    """Run each generator's next tokens over its own cache, all in one pass of their shared
    model (forward_batch when there are several); each one's last-token logits [vocab]."""
    model = steps[0][0].model
    if any(g.model is not model for g, _ in steps):
        raise ValueError("generators advanced together must share one model")
    for g, _ in steps:
        g._cache_valid = False  # an interrupt inside forward leaves the caches undefined
    if len(steps) == 1:
        outs = [model.forward(steps[0][1], steps[0][0].cache)]
    else:
        outs = model.forward_batch([(ids, g.cache) for g, ids in steps])
    for logits in outs:
        if not np.isfinite(logits).all():
            raise ModelFileError(
                "the model produced non-finite logits (NaN or infinity): its weights are likely damaged"
                " or not a gpt-oss model's"
            )
    for g, ids in steps:
        g._cached.extend(ids)
        g._cache_valid = True
    return outs


class Generation:
    """One completion: iterate it for events (a second loop continues the first); `result` is set when done."""

    def __init__(
        self, generator: Generator, prompt: list[int], sampler: Sampler, max_tokens: int | None, role,
        constraint: TokenConstraint | None = None,
    ):
        self.generator = generator
        self.constraint = constraint
        self.prompt = prompt
        self.sampler = sampler
        self.max_tokens = max_tokens
        enc = generator.encoding
        self.parser = enc.stream_parser(role)
        self._decoder = generator.tokenizer.stream_decoder()
        self._call_id = enc.call_id
        self.result: GenerationResult | None = None
        self._partial = GenerationResult(prompt_tokens=len(prompt))
        self._t_gen: float | None = None
        self._t0: float | None = None
        self._it: Iterator[GenerationEvent] | None = None
        self._history: list[int] = []  # the tokens the repeat penalty looks at

    @property
    def done(self) -> bool:
        return self.result is not None

    def __iter__(self) -> Iterator[GenerationEvent]:
        if self._it is None:  # iterating again continues where the last loop stopped
            self._it = self._steps()
        return self._it

    def run(self, on_event: Callable[[GenerationEvent], None] | None = None) -> GenerationResult:
        """Consume every event (passing each to on_event); Ctrl-C ends it as 'interrupted'."""
        try:
            for ev in self:
                if on_event is not None:
                    on_event(ev)
        except KeyboardInterrupt:
            for ev in self.interrupt():
                if on_event is not None:
                    on_event(ev)
        assert self.result is not None
        return self.result

    def interrupt(self) -> list[GenerationEvent]:
        """End the generation now (after a KeyboardInterrupt): the closing events, Done last."""
        if self.result is not None:
            return []
        if self._it is not None:
            self._it.close()
        return self._finish(INTERRUPTED)

    # -- internals ----------------------------------------------------------------------

    def _observe(self, events: list, out: list) -> None:
        r = self._partial
        for ev in events:
            if isinstance(ev, MessageEnd):
                r.messages.append(ev.message)
                r.end_tokens.append(ev.end_token)
                r.raw.append(ev.raw)
                m = ev.message
                if (
                    not ev.raw
                    and ev.end_token == self._call_id
                    and m.author.role == Role.ASSISTANT
                    and message_kind(m.channel, m.recipient) == "tool_call"
                ):
                    r.tool_calls.append(ToolCall.from_message(m))
            out.append(ev)

    def _finish(self, reason: str) -> list[GenerationEvent]:
        now = time.perf_counter()
        r = self._partial
        if self._t_gen is not None:
            r.gen_s = now - self._t_gen
        elif self._t0 is not None:
            r.prompt_s = now - self._t0
        out: list[GenerationEvent] = []
        tail = self._decoder.flush()
        if tail:
            out.append(Token(None, tail))
        self._observe(self.parser.process_eos(), out)
        r.stop_reason = reason
        self.result = r
        out.append(Done(r))
        return out

    def start(self) -> tuple[list[GenerationEvent], np.ndarray]:
        """Process the prompt: the PromptProcessed event and the last prompt token's logits.

        With `accept` this is the loop one step at a time, for a scheduler that
        advances many generations in one forward pass (iterate instead for one).
        """
        return drain(self.start_steps())

    def start_steps(self) -> Iterator[None]:
        """`start` one forward pass of the prompt at a time: yields after each, returns what start returns."""
        gen = self.generator
        r = self._partial
        self._history = [t for t in self.prompt if not gen.tokenizer.is_special(t)]
        self._t0 = time.perf_counter()
        logits, reuse, r.restore_s = yield from gen.prefill_steps(self.prompt)
        t1 = time.perf_counter()
        r.prompt_s = t1 - self._t0
        r.cached_tokens = reuse
        self._t_gen = t1
        return [PromptProcessed(len(self.prompt), reuse, r.prompt_s)], logits

    def accept(self, logits: np.ndarray) -> tuple[list[GenerationEvent], int | None]:
        """Sample the next token from `logits`: its events, and the token to run through the
        model next, or None when the generation has ended (the events then end with Done)."""
        gen, r = self.generator, self._partial
        if self.constraint is None:
            t = self.sampler.sample(logits, self._history)
        else:
            t = self.sampler.sample(logits, self._history, allowed=self.constraint.allowed())
            self.constraint.consume(t)
        r.tokens.append(t)
        if not gen.tokenizer.is_special(t):
            self._history.append(t)
        events: list[GenerationEvent] = [Token(t, self._decoder.feed(t))]
        self._observe(self.parser.process(t), events)
        reason = None
        if t in gen.stop_tokens:
            reason = TOOL_CALL if t == self._call_id else STOP
        elif self.max_tokens is not None and len(r.tokens) >= self.max_tokens:
            reason = MAX_TOKENS
        elif gen.cache.n_past >= gen.cache.context:
            reason = CONTEXT_FULL
        if reason is None:
            return events, t
        return events + self._finish(reason), None

    def _steps(self) -> Iterator[GenerationEvent]:
        events, logits = self.start()
        yield from events
        while True:
            events, t = self.accept(logits)
            if t is None:  # Done is the last event: the result is set before it is seen
                yield from events
                return
            yield from events
            logits = self.generator.advance([t])
