"""From the worker thread to the request's coroutine: a Consumer that feeds an asyncio queue.

The OutputMapper runs here, on the worker thread, so that a stop string ends
the generation at the token that completed it (usage then counts exactly the
tokens generated). Everything the coroutine needs arrives as items:
("deltas", [Delta], [LogProb]), ("done", GenerationResult) or ("error", APIError).
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable

from ..events import GenerationEvent, GenerationResult
from .errors import APIError
from .output import CONTENT, OutputMapper
from .scheduler import Job, LogProb, Scheduler

__all__ = ["Pipe", "run_to_end", "stream_items"]


class Pipe:
    def __init__(self, loop: asyncio.AbstractEventLoop, mapper: OutputMapper, all_logprobs: bool = False) -> None:
        self.loop = loop
        self.mapper = mapper
        self.queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
        self.logprobs: list[LogProb] = []  # of the answer's tokens (all tokens with all_logprobs)
        self._all = all_logprobs
        self.result: GenerationResult | None = None
        self.error: APIError | None = None

    def _put(self, *item: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    # -- Consumer (the worker thread) -----------------------------------------------

    def step(self, events: list[GenerationEvent], logprob: LogProb | None) -> bool:
        deltas = self.mapper.feed(events)
        lps: list[LogProb] = []
        answer = any(d.kind == CONTENT and d.text and d.token == logprob.token for d in deltas) if logprob else False
        if logprob is not None and (self._all or answer):
            lps.append(logprob)
            self.logprobs.append(logprob)
        if deltas or lps:
            self._put("deltas", deltas, lps)
        return self.mapper.stopped

    def finished(self, result: GenerationResult, stopped: bool) -> None:
        self.result = result
        self._put("done", result, None)

    def failed(self, error: APIError) -> None:
        self.error = error
        self._put("error", error, None)


async def _watch_disconnect(receive: Any, job: Job, scheduler: Scheduler) -> None:
    """Cancel the job when the client goes away (the body was read, so the next message is the disconnect)."""
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            job.cancel()
            scheduler.wake()
            return


async def run_to_end(
    pipe: Pipe, job: Job, scheduler: Scheduler, receive: Any, on_deltas: Callable[[list], Any] | None = None
) -> GenerationResult:
    """Submit the job and wait for its result (non-streaming requests); APIError when it fails.
    on_deltas sees each step's deltas (the Responses API builds its output items from them)."""
    scheduler.submit(job)
    watcher = asyncio.ensure_future(_watch_disconnect(receive, job, scheduler))
    try:
        while True:
            kind, value, _ = await pipe.queue.get()
            if kind == "done":
                return value
            if kind == "error":
                raise value
            if on_deltas is not None:
                on_deltas(value)
    finally:
        watcher.cancel()
        job.cancel()  # a no-op when finished; ends the generation when this coroutine was cancelled
        scheduler.wake()


async def stream_items(pipe: Pipe, job: Job, scheduler: Scheduler) -> AsyncIterator[tuple[str, Any, Any]]:
    """The job's items as they come (the job was submitted); a client that goes away cancels it.

    Starlette cancels a streaming response's iterator when the client
    disconnects; the finally clause then cancels the job, which the worker
    drops before its next token.
    """
    try:
        while True:
            item = await pipe.queue.get()
            yield item
            if item[0] in ("done", "error"):
                return
    finally:
        job.cancel()
        scheduler.wake()
