"""Expert paging measured token by token (docs/performance.md, "Bigger than memory").

    python docs/bench/bigger_than_memory.py MODEL.gguf --mem-budget 16G --pp 16 --tg 16 [--cold]
        [--no-predict | --ahead-min X] [--pageout] [-t 2]

Loads MODEL through gptoss's loader with the budget, prefills `pp` random tokens, then
decodes `tg` one at a time, and prints one JSON object: load time, prefill and decode
tok/s, peak RSS, and for every decoded token the pager's counters (hits, experts read in,
read ahead, bytes from disk, seconds waited). --ahead-min 0 reads every prediction ahead. --cold first drops this model's pages from
the page cache (posix_fadvise DONTNEED on every shard: the other files' caches stay).
--pageout releases cold experts with MADV_PAGEOUT instead of MADV_DONTNEED, so their
pages also leave the page cache and every miss reads the disk: the regime of a file
much larger than RAM, on a file that would fit.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from gptoss_cli import load_model
from gptoss_cli.expert_pager import summary
from gptoss_cli.gguf_split import shard_paths
from gptoss_cli.memory_budget import peak_rss_bytes
from gptoss_cli.page_io import MADV_PAGEOUT


def drop_from_page_cache(path: str) -> None:
    for shard in shard_paths(path):
        fd = os.open(shard, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--mem-budget", default=None)
    ap.add_argument("--pp", type=int, default=16)
    ap.add_argument("--tg", type=int, default=16)
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--no-predict", action="store_true")
    ap.add_argument("--ahead-min", type=float, default=None, help="read ahead while this share of predictions is right")
    ap.add_argument("--pageout", action="store_true")
    a = ap.parse_args()
    if a.cold:
        drop_from_page_cache(a.model)
    t0 = time.perf_counter()
    lm = load_model(a.model, threads=a.threads, context=a.pp + a.tg + 8, mem_budget=a.mem_budget)
    load_s = time.perf_counter() - t0
    pager = lm.pager
    if pager is not None:
        pager.predict = not a.no_predict
        if a.ahead_min is not None:
            pager.ahead_min = a.ahead_min
        if a.pageout:
            pager.evict_advice = MADV_PAGEOUT
    rng = np.random.default_rng(0)
    cache = lm.new_cache()
    out: dict = {"model": a.model, "mem_budget": a.mem_budget, "cold": a.cold, "predict": not a.no_predict,
                 "ahead_min": a.ahead_min,
                 "pageout": a.pageout, "threads": lm.threads, "load_s": round(load_s, 2),
                 "paging": pager is not None, "budget_from": lm.budget.chosen if lm.budget else None}
    if pager is not None:
        out["hot_experts_at_load"] = pager.capacity
    c0 = pager.snapshot() if pager else None
    t = time.perf_counter()
    lm.forward(rng.integers(0, lm.config.vocab_size, a.pp), cache)
    pp_s = time.perf_counter() - t
    out["pp_tok_s"] = round(a.pp / pp_s, 3)
    if pager is not None:
        out["prefill"] = summary(pager.snapshot() - c0, pp_s, pager)
    tokens = []
    t_all = time.perf_counter()
    c_all = pager.snapshot() if pager else None
    for tok in rng.integers(0, lm.config.vocab_size, a.tg):
        c = pager.snapshot() if pager else None
        t = time.perf_counter()
        lm.forward([int(tok)], cache)
        s = time.perf_counter() - t
        row = {"s": round(s, 3)}
        if pager is not None:
            d = pager.snapshot() - c
            row.update(hits=d.hits, of=d.requested, loaded=d.loaded, ahead=d.predicted, ahead_hits=d.prefetch_hits,
                       disk_mb=round(d.disk_bytes / 1e6, 1), waited_s=round(d.stall_s, 3), hot=pager.capacity)
        tokens.append(row)
    tg_s = time.perf_counter() - t_all
    out["tg_tok_s"] = round(a.tg / tg_s, 3)
    if pager is not None:
        out["decode"] = summary(pager.snapshot() - c_all, tg_s, pager)
        half = tokens[len(tokens) // 2:]
        out["decode_second_half_tok_s"] = round(len(half) / sum(r["s"] for r in half), 3)
    out["peak_rss_mb"] = round(peak_rss_bytes() / 2**20, 1)
    out["tokens"] = tokens
    print(json.dumps(out))
    lm.close()


if __name__ == "__main__":
    main()
