"""POST /v1/completions: a raw prompt (text or token ids) continued as it is, no Harmony around it.

For evaluation harnesses: `echo` puts the prompt before the text, and
`logprobs: k` gives each token's log-probability and the k most likely;
with `echo` the prompt's tokens are scored too (the first has none, as in
OpenAI's API), by a pass over a fresh KV cache on the model thread, in
chunks so that the [tokens, vocabulary] logits stay small. `max_tokens: 0`
with `echo` only scores the prompt. Special tokens spelled out in a text
prompt (`<|start|>` ...) are read as the special tokens.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Any, AsyncIterator

import numpy as np

from ..events import Done, Token
from .errors import APIError
from .fields import Fields, bad_param
from .logprobs import token_text
from .output import CONTENT, Delta
from .params import check_model, check_n, sampling, stop_strings
from .pipe import Pipe, run_to_end, stream_items
from .scheduler import Job, LogProb
from .sse import sse_data
from .stops import StopStrings

__all__ = ["parse_completion", "completion", "completion_chunks", "RawText", "score_prompt"]

SCORE_CHUNK = 64  # prompt tokens scored per pass: 64 x 201088 float32 logits = 51 MB


class RawText:
    """The OutputMapper of raw completions: every token's text, cut at a stop string."""

    def __init__(self, stop: list[str]) -> None:
        self._stops = StopStrings(stop)
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.calls: list[Any] = []
        self.reasoning_tokens = 0

    @property
    def stopped(self) -> bool:
        return self._stops.hit

    @property
    def content_text(self) -> str:
        return "".join(self.content)

    def feed(self, events: list[Any]) -> list[Delta]:
        out = []
        for ev in events:
            text = self._stops.feed(ev.text) if isinstance(ev, Token) else self._stops.flush() if isinstance(ev, Done) else ""
            if text:
                self.content.append(text)
                out.append(Delta(CONTENT, text, token=getattr(ev, "id", None)))
        return out

    def finish_reason(self, stop_reason: str) -> str:
        return "length" if stop_reason in ("max_tokens", "context_full") and not self.stopped else "stop"


def _prompt_ids(f: Fields, state: Any) -> list[int]:
    p = f.raw("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], (str, list)):
        p = p[0]  # a batch of one
    if isinstance(p, str):
        ids = state.tokenizer.encode(p, allow_special=True)
    elif isinstance(p, list) and p and all(isinstance(t, int) and not isinstance(t, bool) for t in p):
        vocab = state.tokenizer.vocab_size
        bad = next((t for t in p if not 0 <= t < vocab), None)
        if bad is not None:
            raise bad_param("prompt", f"token id {bad} is outside the vocabulary (0 .. {vocab - 1})")
        ids = list(p)
    elif isinstance(p, list) and len(p) > 1:
        raise bad_param("prompt", "one prompt per request (an array of several prompts is not supported)")
    else:
        raise bad_param("prompt", "'prompt' must be a string or an array of token ids", "invalid_type")
    state.check_length(ids)
    return ids


def parse_completion(data: Any, state: Any) -> dict[str, Any]:
    f = Fields(data)
    check_model(f, state.model_names)
    check_n(f)
    if f.has("best_of") and f.int("best_of") != 1:
        raise bad_param("best_of", "'best_of' must be 1")
    prompt = _prompt_ids(f, state)
    echo = f.bool("echo")
    max_tokens = f.int("max_tokens", 16, lo=0)
    if max_tokens == 0 and not echo:
        raise bad_param("max_tokens", "'max_tokens' must be >= 1 (0 only with 'echo', to score the prompt)")
    return {
        "prompt": prompt, "echo": echo, "max_tokens": max_tokens, "logprobs": f.int("logprobs", None, lo=0, hi=20),
        "sampling": sampling(f, state.settings), "stop": stop_strings(f), "stream": f.bool("stream"),
        "text": state.tokenizer.decode(prompt),
    }


def score_prompt(lm: Any, prompt: list[int], k: int) -> list[LogProb | None]:
    """Each prompt token's log-probability given the ones before it (None for the first)."""
    cache = lm.new_cache()
    out: list[LogProb | None] = [None]
    for start in range(0, len(prompt) - 1, SCORE_CHUNK):
        piece = prompt[start : start + SCORE_CHUNK]
        logits = np.asarray(lm.forward(piece, cache, all_logits=True), dtype=np.float64).reshape(len(piece), -1)
        for i, row in enumerate(logits):
            j = start + i + 1
            if j >= len(prompt):
                break
            m = row.max()
            lse = m + math.log(np.exp(row - m).sum())
            top = []
            if k:
                ids = np.argpartition(-row, k - 1)[:k]
                top = [(int(t), float(row[t] - lse)) for t in ids[np.argsort(-row[ids], kind="stable")]]
            out.append(LogProb(prompt[j], float(row[prompt[j]] - lse), top))
    return out


def _logprobs_obj(tokenizer: Any, tokens: list[int], lps: list[LogProb | None], start_offset: int = 0) -> dict:
    texts, offsets, offset = [], [], start_offset
    for t in tokens:
        text, _ = token_text(tokenizer, t)
        texts.append(text)
        offsets.append(offset)
        offset += len(text)
    return {
        "tokens": texts,
        "token_logprobs": [None if lp is None else lp.logprob for lp in lps],
        "top_logprobs": [None if lp is None else {token_text(tokenizer, t)[0]: v for t, v in lp.top} for lp in lps],
        "text_offset": offsets,
    }


class _Scored:
    """The consumer of a scoring job: its value arrives through finished()."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()

    def _set(self, fn: Any, value: Any) -> None:
        def done() -> None:
            if not self.future.done():
                fn(value)

        try:
            self.loop.call_soon_threadsafe(done)
        except RuntimeError:
            pass

    def step(self, events: Any, logprob: Any) -> bool:
        return False

    def finished(self, value: Any, stopped: bool) -> None:
        self._set(self.future.set_result, value)

    def failed(self, error: APIError) -> None:
        self._set(self.future.set_exception, error)


async def _score(req: dict[str, Any], state: Any) -> list[LogProb | None]:
    consumer = _Scored(asyncio.get_running_loop())
    k = req["logprobs"] or 0
    job = Job(req["prompt"], req["sampling"], None, consumer, work=lambda lm: score_prompt(lm, req["prompt"], k))
    state.scheduler.submit(job)
    try:
        return await consumer.future
    finally:
        job.cancel()


def _job(req: dict[str, Any], pipe: Pipe) -> Job:
    return Job(req["prompt"], req["sampling"], req["max_tokens"], pipe, logprobs=req["logprobs"])


def _usage(n_prompt: int, result: Any) -> dict[str, Any]:
    done = result.completion_tokens if result is not None else 0
    cached = result.cached_tokens if result is not None else 0
    return {"prompt_tokens": n_prompt, "completion_tokens": done, "total_tokens": n_prompt + done,
            "prompt_tokens_details": {"cached_tokens": cached}}


async def completion(req: dict[str, Any], state: Any, receive: Any) -> dict[str, Any]:
    prompt_lps = await _score(req, state) if req["echo"] and req["logprobs"] is not None else None
    text, result, reason, tokens, lps = "", None, "length", [], []
    if req["max_tokens"] > 0:
        mapper = RawText(req["stop"])
        pipe = Pipe(asyncio.get_running_loop(), mapper, all_logprobs=True)  # type: ignore[arg-type]
        result = await run_to_end(pipe, _job(req, pipe), state.scheduler, receive)
        text, reason = mapper.content_text, mapper.finish_reason(result.stop_reason)
        tokens, lps = list(result.tokens), list(pipe.logprobs)
    logprobs = None
    if req["logprobs"] is not None:
        if prompt_lps is not None:
            logprobs = _logprobs_obj(state.tokenizer, req["prompt"] + tokens, prompt_lps + lps)
        else:
            logprobs = _logprobs_obj(state.tokenizer, tokens, lps)
    return {
        "id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion", "created": int(time.time()),
        "model": state.model_id, "system_fingerprint": state.fingerprint,
        "choices": [{"index": 0, "text": (req["text"] if req["echo"] else "") + text, "logprobs": logprobs,
                     "finish_reason": reason}],
        "usage": _usage(len(req["prompt"]), result),
    }


def submit_completion(req: dict[str, Any], state: Any) -> tuple[Pipe, Job]:
    pipe = Pipe(asyncio.get_running_loop(), RawText(req["stop"]), all_logprobs=True)  # type: ignore[arg-type]
    job = _job(req, pipe)
    state.scheduler.submit(job)
    return pipe, job


async def completion_chunks(req: dict[str, Any], state: Any, pipe: Pipe, job: Job) -> AsyncIterator[str]:
    """Streamed text_completion objects (prompt logprobs are not streamed), then `data: [DONE]`."""
    base = {"id": "cmpl-" + uuid.uuid4().hex, "object": "text_completion", "created": int(time.time()),
            "model": state.model_id, "system_fingerprint": state.fingerprint}

    def chunk(text: str, finish: str | None = None, logprobs: Any = None) -> str:
        return sse_data(dict(base, choices=[{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}]))

    if req["echo"]:
        yield chunk(req["text"])
    async for kind, value, lps in stream_items(pipe, job, state.scheduler):
        if kind == "deltas":
            for d in value:
                lp = _logprobs_obj(state.tokenizer, [lp.token for lp in lps], list(lps)) if req["logprobs"] is not None else None
                yield chunk(d.text, logprobs=lp)
        elif kind == "done":
            yield chunk("", pipe.mapper.finish_reason(value.stop_reason))
        else:
            yield sse_data(value.body())
    yield "data: [DONE]\n\n"
