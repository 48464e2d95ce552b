"""The generation loop: prompt tokens in, a stream of Harmony events out.

Shared by `gptoss run` and `gptoss chat`. The model is a parameter (anything
with `feed(ids) -> logits`, `reset()`, `n_past` and `context`), so tests can
drive the loop with a scripted fake model. Nothing here prints.

    lm = open_model("gpt-oss-20b.gguf", threads=4, context=8192, notice=print)
    gen = lm.generator()                       # keeps the KV cache between turns
    conv = build_conversation("Hello")         # gptoss_cli.prompt
    g = gen.generate(gen.render(conv), SamplingParams(seed=1), max_tokens=512)
    try:
        for ev in g:                           # PromptProcessed, Token, MessageStart,
            ...                                # TextDelta, MessageEnd, Done
    except KeyboardInterrupt:
        for ev in g.interrupt():               # the rest of the stream, then Done
            ...
    result = g.result                          # GenerationResult: messages, final,
                                               # analysis, tool_calls, usage, timings

Every completion token yields a `Token` (its id and raw text, special tokens
spelled out), then whatever Harmony events it causes (`MessageStart`,
`TextDelta`, `MessageEnd` from gptoss_cli.harmony.parse). The last event is
always `Done` with the GenerationResult.

Generation ends at a stop token for assistant actions (`<|return|>`: stop
reason "stop"; `<|call|>`: "tool_call"), after `max_tokens` tokens
("max_tokens"), when the context is full ("context_full"), or on Ctrl-C
("interrupted").

KV cache reuse: a Generator remembers which tokens its model's cache holds.
When the next prompt starts with exactly those tokens (a chat continuing after
a tool call, say), only the new tokens are processed. A fresh process can
start from a snapshot on disk instead (gptoss_cli.prompt_cache: the system
message of a run, or the same prompt again); the prompt is always fed in the
same pieces, split at the snapshot points, so output never depends on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, Union

from .errors import InputError, ModelFileError
from .harmony.model import Conversation, Message, Role
from .harmony.parse import MessageEnd, MessageStart, TextDelta
from .harmony.render import HarmonyEncoding
from .sampling import Sampler, SamplingParams
from .prompt_cache import PromptCache, default_dir, model_key, save_points

__all__ = [
    "LanguageModel",
    "Generator",
    "Generation",
    "GenerationResult",
    "ToolCall",
    "PromptProcessed",
    "Token",
    "Done",
    "MessageStart",
    "TextDelta",
    "MessageEnd",
    "GenerationEvent",
    "message_kind",
    "LoadedModel",
    "open_model",
    "STOP",
    "TOOL_CALL",
    "MAX_TOKENS",
    "CONTEXT_FULL",
    "INTERRUPTED",
]

# stop reasons
STOP = "stop"
TOOL_CALL = "tool_call"
MAX_TOKENS = "max_tokens"
CONTEXT_FULL = "context_full"
INTERRUPTED = "interrupted"


class LanguageModel(Protocol):
    """What the loop needs from a model (gptoss_cli.api.Model has it)."""

    context: int

    @property
    def n_past(self) -> int: ...

    def feed(self, token_ids: Sequence[int]) -> Any: ...  # logits of the last token, [vocab]

    def reset(self) -> None: ...


# -- events ---------------------------------------------------------------------------


@dataclass
class PromptProcessed:
    """The prompt has been run through the model (first event of a generation)."""

    prompt_tokens: int  # length of the prompt
    cached_tokens: int  # of those, how many were already in the KV cache
    seconds: float


@dataclass
class Token:
    """One completion token: its id and its raw text (special tokens spelled out).

    Bytes of an unfinished UTF-8 character are held back until the character is
    complete; id None carries bytes still held back when generation ends.
    """

    id: int | None
    text: str


@dataclass
class Done:
    result: "GenerationResult"


GenerationEvent = Union[PromptProcessed, Token, MessageStart, TextDelta, MessageEnd, Done]


def message_kind(channel: str | None, recipient: str | None = None, raw: bool = False) -> str:
    """How a message should be shown: 'final', 'analysis', 'commentary', 'tool_call', 'raw' or 'other'.

    Accepts a MessageStart's or a Message's fields. Only the final channel is
    'final'; text that is not valid Harmony is 'raw'; a message without a
    channel (gpt-oss always names one) or on an unknown channel is 'other'.
    """
    if raw:
        return "raw"
    if recipient is not None and recipient != "all":
        return "tool_call"
    if channel in ("final", "analysis", "commentary"):
        return channel
    return "other"


# -- results ----------------------------------------------------------------------------


@dataclass
class ToolCall:
    """A function call the model made (an assistant message to a recipient, ended by <|call|>)."""

    recipient: str  # e.g. "functions.get_weather"
    name: str  # "get_weather"
    namespace: str | None  # "functions"
    arguments: Any  # the parsed JSON arguments, or None when they are not valid JSON
    arguments_text: str
    channel: str | None = None
    content_type: str | None = None
    error: str | None = None

    @classmethod
    def from_message(cls, msg: Message) -> "ToolCall":
        recipient = msg.recipient or ""
        namespace, dot, name = recipient.partition(".")
        if not dot:
            namespace, name = None, recipient
        text = msg.text
        error = None
        try:
            args = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as e:
            args, error = None, f"arguments are not valid JSON: {e.msg}"
        return cls(recipient, name, namespace, args, text, msg.channel, msg.content_type, error)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "namespace": self.namespace,
            "recipient": self.recipient,
            "arguments": self.arguments,
            "arguments_text": self.arguments_text,
            "channel": self.channel,
            "content_type": self.content_type,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


def _rate(n: int, seconds: float) -> float | None:
    return round(n / seconds, 3) if n and seconds > 0 else None


@dataclass
class GenerationResult:
    prompt_tokens: int
    cached_tokens: int = 0
    tokens: list[int] = field(default_factory=list)  # completion tokens, stop token included
    messages: list[Message] = field(default_factory=list)
    end_tokens: list[int | None] = field(default_factory=list)  # per message: the token that ended it
    raw: list[bool] = field(default_factory=list)  # per message: not valid Harmony
    stop_reason: str = STOP
    prompt_s: float = 0.0
    gen_s: float = 0.0
    tool_calls: list[ToolCall] = field(default_factory=list)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    def texts(self, kind: str) -> list[str]:
        """Texts of the messages of one message_kind, in order."""
        return [
            m.text
            for m, raw in zip(self.messages, self.raw)
            if message_kind(m.channel, m.recipient, raw) == kind
        ]

    @property
    def final(self) -> str:
        return "\n".join(self.texts("final"))

    @property
    def analysis(self) -> str:
        return "\n".join(self.texts("analysis"))

    @property
    def prompt_tok_s(self) -> float | None:
        return _rate(self.prompt_tokens - self.cached_tokens, self.prompt_s)

    @property
    def gen_tok_s(self) -> float | None:
        return _rate(self.completion_tokens, self.gen_s)

    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}

    def timings(self, load_s: float | None = None) -> dict[str, Any]:
        return {
            "load_s": None if load_s is None else round(load_s, 3),
            "prompt_s": round(self.prompt_s, 3),
            "prompt_tok_s": self.prompt_tok_s,
            "gen_s": round(self.gen_s, 3),
            "gen_tok_s": self.gen_tok_s,
        }


# -- the loop ---------------------------------------------------------------------------------


class Generator:
    """Generates completions with one model; remembers what its KV cache holds."""

    def __init__(
        self,
        model: LanguageModel,
        encoding: HarmonyEncoding,
        *,
        stop_tokens: Sequence[int] | None = None,
        prompt_cache: PromptCache | None = None,
    ):
        self.model = model
        self.encoding = encoding
        self.tokenizer = encoding.tokenizer
        # snapshots of prompt prefixes on disk (models with cache_snapshot / load_cache_snapshot)
        self._can_snapshot = hasattr(model, "cache_snapshot") and hasattr(model, "load_cache_snapshot")
        self.prompt_cache = prompt_cache if self._can_snapshot else None
        try:
            self._end_id: int | None = self.tokenizer.token_id("<|end|>")
        except Exception:
            self._end_id = None
        self.stop_tokens = frozenset(stop_tokens if stop_tokens is not None else encoding.stop_tokens_for_assistant_actions())
        self._cached: list[int] = []  # tokens in the model's KV cache, valid when _cache_valid
        self._cache_valid = False
        # (checkpoint, tokens) taken after the last prompt, for models that support rollback:
        # a chat's next prompt extends the last prompt but not the reply (analysis is dropped).
        self._prompt_checkpoint: tuple[Any, list[int]] | None = None

    # -- cache bookkeeping --------------------------------------------------------

    @property
    def cached_tokens(self) -> list[int]:
        """Tokens the model's KV cache holds (empty when unknown)."""
        return list(self._cached) if self._cache_valid else []

    def reset(self) -> None:
        self.model.reset()
        self._cached = []
        self._cache_valid = True
        self._prompt_checkpoint = None

    def _remember_prompt(self) -> None:
        checkpoint = getattr(self.model, "checkpoint", None)
        if checkpoint is not None and self._cache_valid:
            self._prompt_checkpoint = (checkpoint(), list(self._cached))

    def _feed(self, ids: list[int]):
        self._cache_valid = False  # an interrupt inside feed leaves the cache undefined
        logits = self.model.feed(ids)
        self._cached.extend(ids)
        self._cache_valid = True
        return logits

    def _reusable(self, prompt: list[int]) -> int:
        """How many leading prompt tokens the cache already holds (rolling back if that helps)."""
        c = self._cached
        if self._cache_valid and c and self.model.n_past == len(c) and len(c) < len(prompt) and prompt[: len(c)] == c:
            return len(c)
        cp = self._prompt_checkpoint
        if cp is not None and self._cache_valid and self.model.n_past >= len(cp[1]):
            tokens = cp[1]
            if 0 < len(tokens) < len(prompt) and prompt[: len(tokens)] == tokens:
                self.model.rollback(cp[0])
                self._cached = list(tokens)
                return len(tokens)
        return 0

    def _save_points(self, prompt: list[int]) -> list[int]:
        """Where the prompt is split (see prompt_cache.save_points); none for models without snapshots."""
        return save_points(prompt, self._end_id) if self._can_snapshot else []

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
                self.model.load_cache_snapshot(p, layers)  # type: ignore[attr-defined]
            except ValueError:  # saved with another context size or shape
                continue
            self._cached = list(prompt[:p])
            self._cache_valid = True
            return p
        return 0

    def _feed_prompt(self, prompt: list[int], reuse: int, points: list[int], save: bool = True):
        """Feed prompt[reuse:], stopping at the save points (for a model that can snapshot, the
        same split whether or not anything is saved, so results never depend on the cache);
        saves new snapshots when `save` (a prompt started fresh or from disk: a chat's later
        turns continue the cache in memory and would only fill the directory)."""
        pc = self.prompt_cache if save else None
        start, logits = reuse, None
        for p in points + [len(prompt)]:
            if p <= start:
                continue
            logits = self._feed(prompt[start:p])
            start = p
            if pc is not None and p < len(prompt) and not pc.has(prompt[:p]):
                snap = self.model.cache_snapshot(pc.max_entry_bytes)  # type: ignore[attr-defined]
                if snap is not None:  # None: too big to be worth a file
                    pc.save(prompt[:p], snap)
        return logits

    # -- public ---------------------------------------------------------------------------

    def render(self, conversation: Conversation, role: Role | str = Role.ASSISTANT) -> list[int]:
        """The completion prompt of a conversation (ends with `<|start|>assistant`)."""
        return self.encoding.render_conversation_for_completion(conversation, role)

    def check_prompt(self, prompt_ids: Sequence[int]) -> None:
        """InputError when the prompt is empty or leaves no room in the context."""
        n, ctx = len(prompt_ids), self.model.context
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
    ) -> "Generation":
        """Start a completion of `prompt_ids` (iterate the result for events).

        sampling: SamplingParams (a fresh seeded Sampler) or a Sampler to keep
        its random state across turns. role: the role the prompt's last
        `<|start|>` opened. Raises InputError at once when the prompt does not fit.
        """
        prompt = [int(t) for t in prompt_ids]
        self.check_prompt(prompt)
        if max_tokens is not None and max_tokens < 1:
            raise InputError(f"max tokens must be at least 1, got {max_tokens}")
        if sampling is None:
            sampling = SamplingParams()
        sampler = sampling if isinstance(sampling, Sampler) else Sampler(sampling)
        return Generation(self, prompt, sampler, max_tokens, role)


class Generation:
    """One completion: iterate it for events (a second loop continues the first); `result` is set when done."""

    def __init__(self, generator: Generator, prompt: list[int], sampler: Sampler, max_tokens: int | None, role):
        self.generator = generator
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

    def _steps(self) -> Iterator[GenerationEvent]:
        gen = self.generator
        model = gen.model
        prompt = self.prompt
        r = self._partial
        tok = gen.tokenizer
        stops = gen.stop_tokens
        history = [t for t in prompt if not tok.is_special(t)]

        self._t0 = time.perf_counter()
        reuse = gen._reusable(prompt)
        in_memory = reuse > 0
        points = gen._save_points(prompt)
        if not reuse:
            gen.reset()
            reuse = gen._load_saved(prompt, points)
        logits = gen._feed_prompt(prompt, reuse, points, save=not in_memory)
        gen._remember_prompt()
        t1 = time.perf_counter()
        r.prompt_s = t1 - self._t0
        r.cached_tokens = reuse
        self._t_gen = t1
        yield PromptProcessed(len(prompt), reuse, r.prompt_s)

        reason = None
        while reason is None:
            t = self.sampler.sample(logits, history)
            r.tokens.append(t)
            if not tok.is_special(t):
                history.append(t)
            events: list[GenerationEvent] = [Token(t, self._decoder.feed(t))]
            self._observe(self.parser.process(t), events)
            if t in stops:
                reason = TOOL_CALL if t == self._call_id else STOP
            elif self.max_tokens is not None and len(r.tokens) >= self.max_tokens:
                reason = MAX_TOKENS
            elif model.n_past >= model.context:
                reason = CONTEXT_FULL
            yield from events
            if reason is None:
                logits = gen._feed([t])
        yield from self._finish(reason)


# -- loading, with the first-run compile notice ------------------------------------------------------


@dataclass
class LoadedModel:
    """A model ready to generate: weights, tokenizer, Harmony encoding, and how long loading took."""

    path: Path
    model: Any  # gptoss_cli.api.Model
    tokenizer: Any  # gptoss_cli.tokenizer.Tokenizer
    encoding: HarmonyEncoding
    load_s: float
    compile_s: float | None = None  # set when this start compiled the kernels
    prompt_cache: PromptCache | None = None  # saved prompt prefixes of this model file

    def generator(self) -> Generator:
        return Generator(self.model, self.encoding, prompt_cache=self.prompt_cache)

    def close(self) -> None:
        self.model.close()


def _kernel_sources() -> list[Path]:
    import gptoss_kernels

    return sorted(Path(gptoss_kernels.__file__).parent.glob("*.py"))


def compile_marker_dir() -> Path:
    """Where the "kernels compiled" markers live: beside Numba's own cache of our kernels."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return Path(env) / "gptoss"
    import gptoss_kernels

    in_tree = Path(gptoss_kernels.__file__).parent / "__pycache__"
    if os.access(in_tree if in_tree.exists() else in_tree.parent, os.W_OK):
        return in_tree
    from .registry import user_cache_dir

    return user_cache_dir()


def kernel_fingerprint(weight_types: Sequence[int] = ()) -> str:
    """Changes whenever Numba would have to compile again or the float32 rounding could differ:
    Python, Numba, kernel sources, weight types, the CPU Numba compiles for and the kernel path
    in use (each path sums in its own order, so a prompt-cache snapshot from another one would
    not be this machine's arithmetic)."""
    import numba

    from gptoss_kernels.linear import kernel_path
    from gptoss_kernels.simd import host_cpu_name

    h = hashlib.sha256()
    h.update(f"{sys.version}|{numba.__version__}|{platform.machine()}|{sorted(set(weight_types))}".encode())
    cfg = numba.config
    h.update(f"|{host_cpu_name()}|{cfg.CPU_NAME}|{cfg.CPU_FEATURES}|{kernel_path()}".encode())
    for p in _kernel_sources():
        st = p.stat()
        h.update(f"|{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _weight_types(model: Any) -> list[int]:
    try:
        return sorted({t.ggml_type for t in model.gguf.tensors.values()})
    except AttributeError:
        return []


def warm_up(model: Any) -> None:
    """Run the kernels once (a 2-token prompt and one decode step), then empty the cache."""
    model.reset()
    model.feed([0, 1])
    model.feed([2])
    model.reset()


def ensure_compiled(
    model: Any,
    notice: Callable[[str], None] | None = None,
    marker_dir: str | Path | None = None,
    notice_delay: float = 0.5,
) -> float | None:
    """Compile the kernels now if they never ran here; returns the compile's seconds (None: no compile).

    A marker file keyed by kernel_fingerprint() records a completed warm-up.
    When it is missing, the kernels run once on a 2-token prompt and a decode
    step (Numba compiles them; cache=True keeps the machine code). If that
    takes longer than notice_delay, notice() is told "compiling kernels, first
    run only ..." while it runs and how long it took when it is done.
    """
    mdir = Path(marker_dir) if marker_dir is not None else compile_marker_dir()
    marker = mdir / f"gptoss-compiled-{kernel_fingerprint(_weight_types(model))}"
    if marker.exists():
        return None
    told = threading.Event()

    def tell() -> None:
        told.set()
        if notice is not None:
            notice("compiling kernels, first run only ...")

    # Numba may find everything in its cache already: then the warm-up takes a
    # moment and nothing is said. Only a real compile outlasts the delay.
    timer = threading.Timer(notice_delay, tell)
    timer.daemon = True
    t0 = time.perf_counter()
    timer.start()
    try:
        warm_up(model)
    finally:
        timer.cancel()
    seconds = time.perf_counter() - t0
    if told.is_set() and notice is not None:
        notice(f"kernels compiled in {seconds:.1f} s")
    try:
        mdir.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"seconds": round(seconds, 2), "time": time.time()}) + "\n")
    except OSError:
        pass  # read-only location: the warm-up runs again next time, which is harmless
    return seconds if told.is_set() else None


def _vocabulary(gguf: Any, path: str | os.PathLike[str], cache_dir: Path | None) -> Any:
    """The model's checked tokenizer.VocabParts: from the cache directory when saved there,
    else from the file (then saved there)."""
    from . import vocab_cache
    from .tokenizer import vocab_parts
    from .tokenizer_arrays import tokenizer_arrays_from_gguf

    key = model_key(path, "vocabulary")
    parts = vocab_cache.load(cache_dir, key) if cache_dir is not None else None
    if parts is None:
        parts = vocab_parts(tokenizer_arrays_from_gguf(gguf, with_merges=False))
        if cache_dir is not None:
            vocab_cache.save(cache_dir, key, parts)
    return parts


def open_model(
    path: str | os.PathLike[str],
    *,
    threads: int | None = None,
    context: int | None = None,
    notice: Callable[[str], None] | None = None,
    marker_dir: str | Path | None = None,
    prompt_cache: bool | str | os.PathLike[str] = False,
) -> LoadedModel:
    """Load a gpt-oss GGUF with its tokenizer, compiling the kernels first if they never ran.

    load_s counts opening the file and the tokenizer, not the compile. prompt_cache:
    True keeps snapshots of prompt prefixes in prompt_cache.default_dir(), a path in
    that directory, False none.
    """
    from .api import load_model
    from .tokenizer import Tokenizer

    t0 = time.perf_counter()
    model = load_model(path, threads=threads, context=context)
    cache_dir = None
    if prompt_cache:
        cache_dir = default_dir() if prompt_cache is True else Path(prompt_cache)
    try:
        tokenizer = Tokenizer(_vocabulary(model.gguf, path, cache_dir))
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ModelFileError(
                f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary "
                f"has {model.config.vocab_size}"
            )
        encoding = HarmonyEncoding(tokenizer)
    except BaseException:
        model.close()
        raise
    load_s = time.perf_counter() - t0
    compile_s = ensure_compiled(model, notice, marker_dir)
    cache = None
    if cache_dir is not None:
        cache = PromptCache(cache_dir, model_key(path, kernel_fingerprint(_weight_types(model))))
    return LoadedModel(Path(path), model, tokenizer, encoding, load_s, compile_s, cache)
