"""`gptoss bench`: prompt-processing and generation speed, load time and peak memory.

In the spirit of llama-bench: random token ids (speed does not depend on the
text), `pp` tokens prefilled from an empty cache, then `tg` tokens decoded one
at a time, repeated `reps` times; mean and standard deviation of tok/s.
`ctx_depth` first fills the cache with that many tokens, so decode speed at a
long context can be measured. Optionally the same file is run through
llama.cpp (llama-cpp-python, in a subprocess) with the same threads, and the
ratios are reported.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from .errors import GptossError, InputError, OptionError


@dataclass
class BenchResult:
    engine: str
    model: str
    model_size_mb: float
    threads: int
    pp: int
    tg: int
    ctx_depth: int
    reps: int
    load_s: float
    pp_tok_s: float
    pp_tok_s_sd: float
    tg_tok_s: float
    tg_tok_s_sd: float
    peak_rss_mb: float
    extra: dict = field(default_factory=dict)
    precision: str | None = None  # gptoss's "fast" or "exact" (docs/design.md §2.8); None for llama.cpp


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _mean_sd(values: list[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def validate_options(pp: int, tg: int, reps: int, ctx_depth: int) -> None:
    if pp < 0 or tg < 0 or pp + tg == 0:
        raise OptionError("--pp and --tg must be >= 0 and not both 0")
    if reps < 1:
        raise OptionError(f"--reps must be >= 1, got {reps}")
    if ctx_depth < 0:
        raise OptionError(f"--ctx-depth must be >= 0, got {ctx_depth}")


def bench_gptoss(
    path: Path, pp: int = 512, tg: int = 128, threads: int | None = None, reps: int = 3, ctx_depth: int = 0,
    mem_budget: str | int | None = None, precision: str = "fast",
) -> BenchResult:
    """Time gptoss on `path` (loads the model in this process); mem_budget and precision as load_model takes them."""
    import numpy as np

    from .gguf_split import byte_maps, shard_paths
    from .loader import load_model

    validate_options(pp, tg, reps, ctx_depth)
    t0 = time.perf_counter()
    model = load_model(path, threads=threads, context=ctx_depth + max(pp, 2) + tg + 2, mem_budget=mem_budget,
                       precision=precision)
    load_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    rng = np.random.default_rng(0)
    # llama.cpp reads (and repacks) every weight while loading; gptoss only maps the file, so
    # the first tokens would pay the page faults. Touch each page once, timed apart as page_in_s.
    # (A paged model keeps its budget instead: the pager read the dense weights in at load.)
    t0 = time.perf_counter()
    for m in byte_maps(model.gguf) if model.pager is None else []:
        int(m[::4096].sum(dtype=np.int64))
    page_in_s = time.perf_counter() - t0
    # Warm up like llama-bench: one untimed prompt and one generated token, so the
    # kernels are compiled (or loaded from the cache) and the weights are in memory.
    cache = model.new_cache()
    model.forward(rng.integers(0, vocab, max(pp, 2)), cache)
    model.forward(rng.integers(0, vocab, 1), cache)
    pp_rates, tg_rates = [], []
    paging = _PagerSpans(model.pager)
    for _ in range(reps):
        cache.reset()
        if ctx_depth:
            model.forward(rng.integers(0, vocab, ctx_depth), cache)
        if pp:
            ids = rng.integers(0, vocab, pp)
            t = time.perf_counter()
            with paging.span("prefill"):
                model.forward(ids, cache)
            pp_rates.append(pp / (time.perf_counter() - t))
        if tg:
            ids = rng.integers(0, vocab, tg)
            t = time.perf_counter()
            with paging.span("decode"):
                for tok in ids:
                    model.forward(tok[None], cache)
            tg_rates.append(tg / (time.perf_counter() - t))
    pp_m, pp_sd = _mean_sd(pp_rates)
    tg_m, tg_sd = _mean_sd(tg_rates)
    extra = {"page_in_s": round(page_in_s, 3), **_budget_extra(model, paging)}
    if model.pager is not None:
        model.pager.close()  # its thread; the maps go with the model
    return BenchResult(
        engine="gptoss", model=str(path), model_size_mb=sum(p.stat().st_size for p in shard_paths(path)) / 2**20, threads=model.threads,
        pp=pp, tg=tg, ctx_depth=ctx_depth, reps=reps, load_s=load_s, pp_tok_s=pp_m, pp_tok_s_sd=pp_sd,
        tg_tok_s=tg_m, tg_tok_s_sd=tg_sd, peak_rss_mb=_peak_rss_mb(), extra=extra, precision=model.precision,
    )


class _PagerSpans:
    """The pager's counters summed over the timed prompt and decode spans (nothing without a pager)."""

    def __init__(self, pager) -> None:
        self.pager = pager
        self.totals: dict = {}

    @contextmanager
    def span(self, kind: str):
        if self.pager is None:
            yield
            return
        c0, t0 = self.pager.snapshot(), time.perf_counter()
        yield
        delta, seconds = self.pager.snapshot() - c0, time.perf_counter() - t0
        if kind in self.totals:
            c, s = self.totals[kind]
            delta = c + delta
            seconds += s
        self.totals[kind] = (delta, seconds)


def _budget_extra(model, paging: _PagerSpans) -> dict:
    """The budget and, when the experts were paged, the counters of the timed spans (see expert_pager.summary)."""
    plan = model.budget
    if plan is None:
        return {}
    out: dict = {"mem_budget_mb": round(plan.budget / 2**20, 1), "mem_budget_from": plan.chosen,
                 "paging": model.pager is not None}
    if model.pager is not None:
        from .expert_pager import summary

        out["pager"] = {kind: summary(c, s, model.pager) for kind, (c, s) in paging.totals.items()}
    return out


def bench_llama_cpp(
    path: Path, pp: int, tg: int, threads: int, reps: int, ctx_depth: int, python: str | None = None
) -> BenchResult:
    """Time llama.cpp on the same file in a separate process (its memory measured apart from ours)."""
    script = Path(__file__).with_name("bench_llama_cpp.py")
    cmd = [python or sys.executable, str(script), str(path), str(pp), str(tg), str(threads), str(reps), str(ctx_depth)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise GptossError(f"llama.cpp benchmark failed: {last}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return BenchResult(**data)


def merge_rounds(results: list[BenchResult]) -> BenchResult:
    """One engine's rounds as one result: tok/s mean and sd over the rounds' means, the
    slowest load, the highest peak memory; each round's figures kept in extra["rounds"]."""
    if len(results) == 1:
        return results[0]
    pp_m, pp_sd = _mean_sd([r.pp_tok_s for r in results])
    tg_m, tg_sd = _mean_sd([r.tg_tok_s for r in results])
    first = results[0]
    extra = dict(first.extra)
    extra["rounds"] = [{"pp_tok_s": r.pp_tok_s, "tg_tok_s": r.tg_tok_s, "load_s": r.load_s} for r in results]
    return BenchResult(
        engine=first.engine, model=first.model, model_size_mb=first.model_size_mb, threads=first.threads,
        pp=first.pp, tg=first.tg, ctx_depth=first.ctx_depth, reps=sum(r.reps for r in results),
        load_s=max(r.load_s for r in results), pp_tok_s=pp_m, pp_tok_s_sd=pp_sd, tg_tok_s=tg_m, tg_tok_s_sd=tg_sd,
        peak_rss_mb=max(r.peak_rss_mb for r in results), extra=extra, precision=first.precision,
    )


def alternate_rounds(
    ours: Callable[[], BenchResult], theirs: Callable[[], BenchResult], rounds: int
) -> tuple[BenchResult, BenchResult]:
    """Run both engines `rounds` times in the order AB BA AB ..., so a machine whose speed drifts
    (a shared host) slows both alike. Each round's ratios and their medians go in ours.extra."""
    mine: list[BenchResult] = []
    peer: list[BenchResult] = []
    for r in range(rounds):
        if r % 2 == 0:
            mine.append(ours())
            peer.append(theirs())
        else:
            peer.append(theirs())
            mine.append(ours())
    a, b = merge_rounds(mine), merge_rounds(peer)
    if rounds > 1:
        for kind in ("pp", "tg"):
            ratios = [
                getattr(x, f"{kind}_tok_s") / getattr(y, f"{kind}_tok_s")
                for x, y in zip(mine, peer)
                if getattr(y, f"{kind}_tok_s")
            ]
            if ratios:
                a.extra[f"{kind}_ratio_rounds"] = ratios
                a.extra[f"{kind}_ratio_median"] = statistics.median(ratios)
    return a, b


def format_results(results: list[BenchResult], fmt: str) -> str:
    """Render results as json, md or csv (one row per engine, ratios vs llama.cpp when present)."""
    rows = [asdict(r) for r in results]
    base = next((r for r in results if r.engine == "llama.cpp"), None)
    if base is not None:
        for row, r in zip(rows, results):
            row["pp_ratio"] = r.pp_tok_s / base.pp_tok_s if base.pp_tok_s else None
            row["tg_ratio"] = r.tg_tok_s / base.tg_tok_s if base.tg_tok_s else None
    if fmt == "json":
        return json.dumps(rows[0] if len(rows) == 1 else rows, indent=2)
    cols = ["engine", "threads", "pp", "tg", "ctx_depth", "load_s", "pp_tok_s", "tg_tok_s", "peak_rss_mb", "precision"]
    if base is not None:
        cols += ["pp_ratio", "tg_ratio"]

    def cell(row: dict, c: str) -> str:
        v = row.get(c)
        if c in ("pp_tok_s", "tg_tok_s"):
            return f"{v:.2f} ± {row[c + '_sd']:.2f}"
        if isinstance(v, float):
            return f"{v:.2f}"
        return "" if v is None else str(v)

    if fmt == "csv":
        lines = [",".join(cols)] + [",".join(cell(r, c).replace(" ± ", "+-") for c in cols) for r in rows]
        return "\n".join(lines)
    head = "| " + " | ".join(cols) + " |"
    sep = "| " + " | ".join("---" for _ in cols) + " |"
    body = ["| " + " | ".join(cell(r, c) for c in cols) + " |" for r in rows]
    model = results[0]
    title = f"model: {model.model} ({model.model_size_mb:.0f} MiB)"
    return "\n".join([title, "", head, sep, *body])


def synthetic_model_path(shape: str, layers: int | None, cache_dir: Path, split_max_size: int = 0) -> Path:
    """A cached random-weight GGUF of a real gpt-oss shape, written once (tensor by tensor);
    split into shards of at most split_max_size bytes when that is > 0 (the first shard's path)."""
    from .synthetic import shape_config, write_synthetic_gguf

    try:
        cfg = shape_config(shape, layers)
    except ValueError as err:
        raise InputError(str(err)) from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"synthetic-{shape}-{cfg.n_layers}l-q8_0" + (f"-split{split_max_size}" if split_max_size else "")
    path = cache_dir / f"{stem}.gguf"
    if split_max_size:
        written = sorted(cache_dir.glob(f"{stem}-00001-of-*.gguf"))
        if written:
            return written[0]
    elif path.exists():
        return path
    print(f"writing synthetic {shape} model ({cfg.n_layers} layers) to {path} (once)", file=sys.stderr)
    return write_synthetic_gguf(path, cfg, split_max_size=split_max_size)


def default_threads_for_bench(threads: int | None) -> int:
    from .loader import default_threads

    return threads if threads else default_threads()


def bench_command(
    model: str | None,
    synthetic: str | None,
    layers: int | None,
    pp: int,
    tg: int,
    threads: int | None,
    reps: int,
    ctx_depth: int,
    fmt: str,
    vs_llama_cpp: bool,
    llama_python: str | None,
    rounds: int = 1,
    split_max_size: int = 0,
    mem_budget: str | None = None,
    json_schema: str | None = None,
    precision: str = "fast",
) -> None:
    """Everything behind `gptoss bench`: pick the file, time the engines, print one table/object
    (with json_schema: decode with and without that schema's mask, gptoss_cli.structured.bench)."""
    validate_options(pp, tg, reps, ctx_depth)
    if json_schema is not None:
        from .structured.formats import load_format_file

        if vs_llama_cpp or not tg:
            raise OptionError("--json-schema measures gptoss's decode alone: give --tg, not --vs-llama-cpp")
        load_format_file("json_schema", json_schema)  # a bad schema: one line before anything is written
    if rounds < 1:
        raise OptionError(f"--rounds must be >= 1, got {rounds}")
    from .options import problem

    why = problem("precision", precision)
    if why is not None:
        raise OptionError(f"invalid value for --precision: {why}")
    precision = precision.lower()
    if fmt not in ("md", "json", "csv"):
        raise OptionError(f"unknown output format {fmt!r} (md, json, csv)")
    if synthetic and model:
        raise OptionError("give either -m/--model or --synthetic, not both")
    if layers is not None and not synthetic:
        raise OptionError("--layers only applies to --synthetic models")
    if layers is not None and layers < 1:
        raise OptionError(f"--layers must be >= 1, got {layers}")
    if split_max_size and not synthetic:
        raise OptionError("--split-max-size only applies to --synthetic models")
    if mem_budget is not None:
        from .memory_budget import size_problem

        why = size_problem(mem_budget)
        if why is not None:
            raise OptionError(f"invalid value for --mem-budget: {why}")
    if synthetic:
        from .app_paths import app_dir

        path = synthetic_model_path(synthetic, layers, app_dir() / "synthetic", split_max_size)
    else:
        from .model_names import resolve_model

        path = resolve_model(model)
    threads = default_threads_for_bench(threads)
    if json_schema is not None:
        from .structured.bench import bench_structured

        print(json.dumps(bench_structured(str(path), json_schema, tg, threads, reps), indent=2))
        return

    def ours() -> BenchResult:
        try:
            return bench_gptoss(path, pp, tg, threads, reps, ctx_depth, mem_budget, precision)
        except OptionError as e:
            if e.option != "mem_budget":
                raise
            raise OptionError(f"invalid value for --mem-budget: {e.why}") from None

    if vs_llama_cpp:
        results = list(alternate_rounds(
            ours, lambda: bench_llama_cpp(path, pp, tg, threads, reps, ctx_depth, llama_python), rounds
        ))
    else:
        results = [merge_rounds([ours() for _ in range(rounds)])]
    print(format_results(results, fmt))
