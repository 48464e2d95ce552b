"""Continuous batching: requests in slots decode together, one forward pass per step, on one thread.

The model runs on this module's worker thread only (the Numba kernels use
every core already, and two forward passes at once would share a cache
pool they do not lock). The HTTP side only submits Jobs and reads what
their Consumer passes on. Each step of the loop:

1. waiting jobs take free slots (the slot whose cache shares the longest
   prefix of the prompt, gptoss_cli.serve.slots) and join the prompts being
   processed;
2. the first of those prompts goes one forward pass further (one chunk of
   the model's prefill, Generation.start_steps); when it is done its job is
   active. So a long prompt delays the running requests by one chunk per
   token, not by the whole prompt, and computes exactly what it would alone;
3. every active job samples its next token from its logits
   (Generation.accept) and hands the events to its consumer; a job whose
   client went away or whose consumer saw a stop string ends here;
4. the tokens of every job still running go through the model in ONE
   forward pass (advance_together -> forward_batch).

A cancelled job therefore stops within one token (or one prompt chunk). Jobs past --parallel wait
in a bounded queue; past --max-queue, submit refuses with 429.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol, Sequence

import numpy as np

from ..errors import GptossError
from ..events import GenerationEvent, GenerationResult, PromptProcessed, Token
from ..generation import Generation, advance_together
from ..sampling import SamplingParams
from .errors import APIError
from .metrics import Metrics
from .slots import Slot, choose_slot

__all__ = ["Job", "Consumer", "Scheduler", "LogProb"]


@dataclass
class LogProb:
    """The sampled token's log-probability under the model's distribution, and the k most likely tokens."""

    token: int
    logprob: float
    top: list[tuple[int, float]]


class Consumer(Protocol):
    """What the worker thread tells a job's owner; every method must return quickly and never block."""

    def step(self, events: list[GenerationEvent], logprob: LogProb | None) -> bool: ...  # True: stop now

    def finished(self, result: GenerationResult, stopped: bool) -> None: ...  # stopped: step() asked to stop

    def failed(self, error: APIError) -> None: ...


#: (logits, tokens generated so far) -> logits: how a request constrains its next token (tool_choice)
LogitsAdjust = Callable[[np.ndarray, Sequence[int]], np.ndarray]


@dataclass
class Job:
    prompt: list[int]
    sampling: SamplingParams
    max_tokens: int | None
    consumer: Consumer
    logprobs: int | None = None  # None: none; k >= 0: the sampled token's and the top k
    adjust: LogitsAdjust | None = None
    #: structured output (a gptoss_cli.generation.TokenConstraint for this one generation), or None
    constraint: Any = None
    cancelled: bool = False
    cancel_reason: APIError | None = None  # sent to the consumer; None: the client went away
    #: instead of a generation: work(lm) runs on the model thread and its value goes to finished()
    work: Callable[[Any], Any] | None = None
    #: set once the job has a slot: the tokens its prompt reused
    cached_tokens: int | None = None
    submitted: float = field(default_factory=time.monotonic)

    def cancel(self, reason: APIError | None = None) -> None:
        """Stop at the next step (any thread): the client went away (reason None) or the server is stopping."""
        if not self.cancelled:
            self.cancel_reason = reason
            self.cancelled = True


@dataclass
class _Prompt:
    """A job whose prompt is being processed, one forward pass per scheduler step."""

    job: Job
    slot: Slot
    generation: Generation
    steps: Iterator[None]


@dataclass
class _Active:
    job: Job
    slot: Slot
    generation: Generation
    logits: np.ndarray
    tokens: list[int] = field(default_factory=list)  # generated so far


def _logprob(logits: np.ndarray, token: int, k: int) -> LogProb:
    z = np.asarray(logits, dtype=np.float64)
    m = z.max()
    lse = m + math.log(np.exp(z - m).sum())
    top: list[tuple[int, float]] = []
    if k > 0:
        ids = np.argpartition(-z, k - 1)[:k]
        ids = ids[np.argsort(-z[ids], kind="stable")]
        top = [(int(i), float(z[i] - lse)) for i in ids]
    return LogProb(token, float(z[token] - lse), top)


class Scheduler:
    """The slots, the queue and the worker thread that runs the model."""

    def __init__(self, lm: Any, parallel: int, max_queue: int, metrics: Metrics | None = None) -> None:
        self.lm = lm
        self.max_queue = max_queue
        self.metrics = metrics if metrics is not None else Metrics()
        self.slots = [Slot(i, lm.generator()) for i in range(parallel)]
        self.metrics.slots = parallel
        self._queue: deque[Job] = deque()
        self._active: list[_Active] = []
        self._prompts: deque[_Prompt] = deque()  # prompts being processed, first come first
        self._cond = threading.Condition()
        self._closing: APIError | None = None  # set when new jobs are refused
        self._deadline: float | None = None  # after this, running jobs are cancelled
        self._stop = False
        self._uses = 0
        self._thread = threading.Thread(target=self._run, name="gptoss-model", daemon=True)
        self._step_s: deque[float] = deque(maxlen=64)  # recent step times, for Retry-After

    # -- the HTTP side -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> None:
        """Queue a job; APIError 503 when shutting down, 429 with Retry-After when the queue is full."""
        with self._cond:
            if self._closing is not None:
                raise self._closing
            free = sum(1 for s in self.slots if not s.busy) - len(self._queue)
            if free <= 0 and len(self._queue) >= self.max_queue:
                raise APIError(
                    429,
                    f"the server is busy: {len(self.slots)} requests running and {len(self._queue)} waiting"
                    " (--parallel / --max-queue); retry later",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": str(self._retry_after())},
                )
            self._queue.append(job)
            self.metrics.queue_depth = len(self._queue)
            self._cond.notify()

    def _retry_after(self) -> int:
        """Seconds until a slot is likely free: a rough guess from recent step times."""
        step = sum(self._step_s) / len(self._step_s) if self._step_s else 0.05
        return max(1, min(60, math.ceil(step * 100)))

    def wake(self) -> None:
        """A job was cancelled: let the worker see it even when idle."""
        with self._cond:
            self._cond.notify()

    def shutdown(self, grace_s: float) -> None:
        """Refuse new jobs, cancel the waiting ones, and cancel running ones after grace_s seconds."""
        err = APIError(503, "the server is shutting down", code="server_shutting_down")
        with self._cond:
            if self._closing is None:
                self._closing = err
                self._deadline = time.monotonic() + grace_s
            waiting = list(self._queue)
            self._queue.clear()
            self.metrics.queue_depth = 0
            self._cond.notify()
        for job in waiting:
            job.consumer.failed(err)

    def stop(self, timeout: float | None = 10.0) -> None:
        """End the worker thread (after shutdown(); running jobs are cancelled)."""
        self.shutdown(0.0)
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the worker thread ---------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._queue and not self._active and not self._prompts:
                    self._cond.wait()
                if self._stop and not self._active and not self._prompts:
                    return
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    assert self._closing is not None
                    for job in [a.job for a in self._active] + [p.job for p in self._prompts]:
                        job.cancel(self._closing)
                admit = self._take_admissions()
            for job, slot, _ in admit:
                if slot is None:
                    self._work(job)
                else:
                    self._start(job, slot)
            if self._prompts:
                self._prompt_step()
            if self._active:
                t0 = time.perf_counter()
                self._step()
                self._step_s.append(time.perf_counter() - t0)

    def _take_admissions(self) -> list[tuple[Job, Slot | None, int]]:
        out = []
        while self._queue:
            free = [s for s in self.slots if not s.busy]
            if not free:
                break
            job = self._queue.popleft()
            if job.cancelled:  # the client went away while it waited
                continue
            if job.work is not None:
                out.append((job, None, 0))
                continue
            slot, reuse = choose_slot(free, job.prompt)
            slot.busy = True
            out.append((job, slot, reuse))
        self.metrics.queue_depth = len(self._queue)
        return out

    def _consumer_call(self, job: Job, method: str, *args: Any) -> Any:
        """Call the consumer; a failing consumer ends its own job only."""
        try:
            return getattr(job.consumer, method)(*args)
        except Exception:
            job.cancel()
            return True

    def _start(self, job: Job, slot: Slot) -> None:
        self._uses += 1
        slot.last_used = self._uses
        try:
            generation = slot.generator.generate(job.prompt, job.sampling, max_tokens=job.max_tokens,
                                                 constraint=job.constraint)
        except GptossError as e:
            self._release(slot)
            self._consumer_call(job, "failed", APIError(400, str(e), code="invalid_prompt"))
            return
        self._prompts.append(_Prompt(job, slot, generation, generation.start_steps()))

    def _prompt_step(self) -> None:
        """The first waiting prompt one forward pass further; its job becomes active when it is done."""
        p = self._prompts[0]
        job = p.job
        if job.cancelled:  # the client went away, or the server is stopping
            self._prompts.popleft()
            p.steps.close()
            p.generation.interrupt()
            self._release(p.slot)
            if job.cancel_reason is not None:
                self._consumer_call(job, "failed", job.cancel_reason)
            elif p.generation.result is not None:
                self._consumer_call(job, "finished", p.generation.result, False)
            return
        try:
            next(p.steps)
            return
        except StopIteration as done:
            events, logits = done.value
        except GptossError as e:
            self._prompts.popleft()
            self._release(p.slot)
            self._consumer_call(job, "failed", APIError(400, str(e), code="invalid_prompt"))
            return
        except Exception as e:  # the model failed: this request fails, the server goes on
            self._prompts.popleft()
            self._release(p.slot)
            self._consumer_call(job, "failed", _internal(e))
            return
        self._prompts.popleft()
        job.cached_tokens = next((e.cached_tokens for e in events if isinstance(e, PromptProcessed)), 0)
        self.metrics.prompt(len(job.prompt), job.cached_tokens or 0)
        self._consumer_call(job, "step", events, None)
        self._active.append(_Active(job, p.slot, p.generation, logits))
        self.metrics.active = len(self._active)

    def _work(self, job: Job) -> None:
        assert job.work is not None
        try:
            value = job.work(self.lm)
        except GptossError as e:
            self._consumer_call(job, "failed", APIError(400, str(e), code="invalid_prompt"))
        except Exception as e:
            self._consumer_call(job, "failed", _internal(e))
        else:
            self._consumer_call(job, "finished", value, False)

    def _release(self, slot: Slot) -> None:
        with self._cond:
            slot.busy = False

    def _end(self, a: _Active, stopped: bool) -> None:
        self._release(a.slot)
        result = a.generation.result
        if a.job.cancelled and a.job.cancel_reason is not None:
            self._consumer_call(a.job, "failed", a.job.cancel_reason)
        elif result is not None:
            self._consumer_call(a.job, "finished", result, stopped)

    def _step(self) -> None:
        still: list[_Active] = []
        batch = []
        decoded = 0
        for a in self._active:
            g = a.generation
            if a.job.cancelled:
                g.interrupt()
                self._end(a, False)
                continue
            try:
                logits = a.logits if a.job.adjust is None else a.job.adjust(a.logits, a.tokens)
                events, token = g.accept(logits)
            except Exception as e:
                self._release(a.slot)
                self._consumer_call(a.job, "failed", _internal(e))
                continue
            decoded += 1
            sampled = next(e.id for e in events if isinstance(e, Token))
            a.tokens.append(sampled)
            lp = None if a.job.logprobs is None else _logprob(a.logits, sampled, a.job.logprobs)
            stop = self._consumer_call(a.job, "step", events, lp)
            if token is None:
                self._end(a, False)
            elif stop or a.job.cancelled:
                if a.job.cancel_reason is None:
                    self._consumer_call(a.job, "step", g.interrupt(), None)
                else:
                    g.interrupt()
                self._end(a, bool(stop))
            else:
                still.append(a)
                batch.append((g.generator, [token]))
        if decoded:
            self.metrics.decoded(decoded)
        self._active = still
        self.metrics.active = len(still)
        if not batch:
            return
        try:
            outs = advance_together(batch)
        except Exception as e:  # non-finite logits or a kernel failure: these requests fail
            err = _internal(e)
            for a in still:
                a.generation.interrupt()
                self._release(a.slot)
                self._consumer_call(a.job, "failed", err)
            self._active = []
            self.metrics.active = 0
            return
        for a, logits in zip(still, outs):
            a.logits = logits


def _internal(e: Exception) -> APIError:
    msg = str(e) if isinstance(e, GptossError) else f"the model failed: {type(e).__name__}"
    return APIError(500, msg, code="model_error")
