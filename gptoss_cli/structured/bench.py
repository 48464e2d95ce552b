"""What structured output costs: decode with and without a schema, side by side, and the mask alone.

    python -m gptoss_cli.structured.bench MODEL.gguf SCHEMA.json [--tg 64] [--reps 3] [-t N]
    python -m gptoss_cli.structured.bench MODEL.gguf SCHEMA.json --mask-only [--reps 20]

Each repetition decodes `tg` tokens twice from the same prompt, sampled at
temperature 1 as `gptoss run` does: once freely, once inside the final
message's value under the schema's mask (a value that ends starts again), in
alternating order so a drifting machine slows both alike. Reported: both
tok/s and the slowdown, the mask's own time per token (compute, unpack,
consume), and the one-time costs before a first constrained token (indexing
the vocabulary, once per process; compiling the schema and making the
constraint, once per request). `--mask-only` needs no weights: it writes
values at random under the mask (random logits) and times the constraint alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

__all__ = ["bench_structured", "bench_mask", "main"]


def _decode(model: Any, prompt: Any, tg: int, sampler: Any, plan: Any | None) -> tuple[float, float, float]:
    """(decode seconds, seconds in the constraint, seconds to the first sampled token) for tg tokens."""
    cache = model.new_cache()
    logits = model.forward(prompt, cache)
    header = model.tokenizer.encode("<|channel|>final<|message|>", allow_special=True)
    t_start = time.perf_counter()
    in_constraint, first = 0.0, 0.0
    c = None
    for i in range(tg):
        if plan is None:
            token = sampler.sample(logits)
        else:
            t0 = time.perf_counter()
            if c is None or c.phase == "done":
                c = plan.constraint()
                for h in header:
                    c.consume(h)
            mask = c.allowed()
            in_constraint += time.perf_counter() - t0
            token = sampler.sample(logits, allowed=mask)
            t0 = time.perf_counter()
            c.consume(token)
            in_constraint += time.perf_counter() - t0
        if i == 0:
            first = time.perf_counter() - t_start
        logits = model.forward([token], cache)
    return time.perf_counter() - t_start, in_constraint, first


def bench_structured(path: str, schema_file: str, tg: int = 64, threads: int | None = None, reps: int = 3,
                     prompt_tokens: int = 64) -> dict[str, Any]:
    """Side-by-side decode figures (see the module notes) as a dict."""
    import numpy as np

    from ..loader import load_model
    from ..sampling import Sampler, SamplingParams
    from .constraint import make_plan
    from .formats import load_format_file
    from .vocabulary import ll_tokenizer

    load_format_file("json_schema", schema_file)  # refuse a bad schema before the load
    model = load_model(path, threads=threads, context=prompt_tokens + tg + 8, warm_up=True)
    try:
        t0 = time.perf_counter()
        ll_tokenizer(model.tokenizer)
        vocabulary_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        plan = make_plan(model.tokenizer, load_format_file("json_schema", schema_file))
        c = plan.constraint()
        for h in model.tokenizer.encode("<|channel|>final<|message|>", allow_special=True):
            c.consume(h)
        c.allowed()
        plan_ms = (time.perf_counter() - t0) * 1000
        prompt = np.random.default_rng(0).integers(0, model.config.vocab_size, prompt_tokens)
        _decode(model, prompt, 2, Sampler(SamplingParams(seed=0)), plan)  # warm-up
        free, constrained, mask_ms, first_free, first_constrained = [], [], [], [], []
        for r in range(reps):
            for use in ((None, plan) if r % 2 == 0 else (plan, None)):
                s, in_c, first = _decode(model, prompt, tg, Sampler(SamplingParams(seed=r)), use)
                (free if use is None else constrained).append(tg / s)
                (first_free if use is None else first_constrained).append(first * 1000)
                if use is not None:
                    mask_ms.append(in_c / tg * 1000)
        f, c = statistics.median(free), statistics.median(constrained)
        return {
            "model": str(path), "schema": str(schema_file), "threads": model.threads, "tg": tg, "reps": reps,
            "tg_tok_s_free": round(f, 3), "tg_tok_s_constrained": round(c, 3),
            "slowdown_pct": round((f / c - 1) * 100, 2),
            "constraint_ms_per_token": round(statistics.median(mask_ms), 4),
            "first_token_ms_free": round(statistics.median(first_free), 2),
            "first_token_ms_constrained": round(statistics.median(first_constrained), 2),
            "plan_ms": round(plan_ms, 2), "vocabulary_s": round(vocabulary_s, 3),
            "rounds": {"free": free, "constrained": constrained},
        }
    finally:
        model.close()


def bench_mask(path: str, schema_file: str, reps: int = 20, max_tokens: int = 2000) -> dict[str, Any]:
    """The constraint's own time per token (mask, unpack, consume) over `reps` random values."""
    import numpy as np

    from ..loader import load_model
    from ..sampling import Sampler, SamplingParams
    from .constraint import make_plan
    from .formats import load_format_file
    from .vocabulary import ll_tokenizer

    load_format_file("json_schema", schema_file)  # the first call in a process also loads llguidance
    lm = load_model(path, weights=False)
    try:
        tok = lm.tokenizer
        t0 = time.perf_counter()
        ll_tokenizer(tok)
        vocabulary_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        plan = make_plan(tok, load_format_file("json_schema", schema_file))  # read, compile and check
        compile_ms = (time.perf_counter() - t0) * 1000
        header = tok.encode("<|channel|>final<|message|>", allow_special=True)
        rng = np.random.default_rng(0)
        pool = rng.standard_normal((16, tok.vocab_size)).astype(np.float32) * 2
        per_token, first_ms, lengths = [], [], []
        for r in range(reps):
            sampler = Sampler(SamplingParams(seed=r))
            t0 = time.perf_counter()
            c = plan.constraint()
            for h in header:
                c.consume(h)
            mask = c.allowed()
            first_ms.append((time.perf_counter() - t0) * 1000)
            n = 0
            while c.phase != "done" and n < max_tokens:
                token = sampler.sample(pool[rng.integers(16)], allowed=mask)
                t0 = time.perf_counter()
                c.consume(token)
                mask = c.allowed()
                per_token.append(time.perf_counter() - t0)
                n += 1
            lengths.append(n)
        ms = np.asarray(per_token) * 1000
        return {
            "model": str(path), "schema": str(schema_file), "reps": reps, "tokens": int(ms.size),
            "constraint_ms_per_token_mean": round(float(ms.mean()), 4),
            "constraint_ms_per_token_median": round(float(np.median(ms)), 4),
            "constraint_ms_per_token_p99": round(float(np.percentile(ms, 99)), 4),
            "first_mask_ms_median": round(statistics.median(first_ms), 3), "compile_ms": round(compile_ms, 2),
            "vocabulary_s": round(vocabulary_s, 3), "value_tokens_median": statistics.median(lengths),
        }
    finally:
        lm.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m gptoss_cli.structured.bench", description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("schema")
    ap.add_argument("--tg", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("--mask-only", action="store_true", help="time the constraint alone (no weights needed)")
    a = ap.parse_args(argv)
    if a.mask_only:
        print(json.dumps(bench_mask(a.model, a.schema, a.reps), indent=2))
    else:
        print(json.dumps(bench_structured(a.model, a.schema, a.tg, a.threads, a.reps), indent=2))


if __name__ == "__main__":
    main()
