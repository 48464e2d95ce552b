"""Expert paging: run a model whose file is larger than the memory budget.

A token reads 4 of each layer's experts (120b: 4 of 128, about 1.9 GB of the 61 GB
of experts); the rest of the file need not be in memory. The pager is the model's
expert hook (gptoss_cli.model.ExpertHook), told each layer's routed experts after
the router chose them and before their weights are read:

- routed experts that are mapped (the hot set) are hits (checked with mincore: one
  whose pages the kernel reclaimed is read in again rather than faulted in page by
  page); the others are read in at once by the helper thread (gptoss_cli.page_io)
  and the layer waits for them;
- the next layer's experts are predicted with that layer's router from the same
  hidden states (the residual stream changes little between layers) and read in
  behind them while this layer computes, as long as such predictions keep being
  right at least half the time (a wrong one costs a read the disk could have spent
  on a routed expert);
- the hot set is as large as the budget leaves beside everything else the
  process holds (measured at every layer); the least recently used
  experts are released with MADV_DONTNEED (on the helper thread, before the reads
  that need their room): their pages leave the RSS but stay in the page cache, so
  the kernel can still serve them without the disk.

Paging is memory management only: the same bytes are read, the logits are the
same bit for bit. The counters (`PagerCounters`) are cumulative; a command takes
the difference over the span it reports.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from . import page_io
from .page_io import MADV_DONTNEED, MADV_RANDOM, PageJob, PageReader, Ranges, view_range

__all__ = ["ExpertPager", "PagerCounters", "pager_for", "dense_views", "memory_line", "summary", "summary_line"]

Slot = tuple[int, int]  # (layer, expert)

# Predicted experts are read ahead while at least this share of the last AHEAD_WINDOW layers'
# predictions was right: a wrong one costs a whole read, a right one saves only the wait for it.
AHEAD_MIN_PRECISION = 0.5
AHEAD_WINDOW = 64


@dataclass
class PagerCounters:
    """Cumulative counts since the pager started. An expert is counted once per layer per block."""

    tokens: int = 0  # rows of the blocks run (prompt tokens and decoded ones)
    requested: int = 0  # routed experts
    hits: int = 0  # of those, already mapped (hot set)
    prefetch_hits: int = 0  # of the hits, read in by a prediction not yet used
    loaded: int = 0  # experts read in because they were routed and not mapped
    reloaded: int = 0  # routed experts of the hot set read in again: the kernel had reclaimed pages of them
    predicted: int = 0  # experts read in ahead on a prediction
    guessed: int = 0  # experts the next layer's router was predicted to choose (read ahead or not)
    guessed_right: int = 0  # of those, chosen when the layer ran
    evicted: int = 0
    bytes_requested: int = 0  # bytes of the experts read in (loaded and predicted)
    disk_bytes: int = 0  # bytes the process read from storage (/proc/self/io), paging or not
    stall_s: float = 0.0  # time the model waited for pages
    over_budget: int = 0  # layers whose routed experts alone exceeded the hot set
    failed_advice: int = 0  # madvise calls that failed (pages then fault in as usual)

    def __sub__(self, other: "PagerCounters") -> "PagerCounters":
        return PagerCounters(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def __add__(self, other: "PagerCounters") -> "PagerCounters":
        return PagerCounters(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def copy(self) -> "PagerCounters":
        return PagerCounters(**{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass
class _Entry:
    job: PageJob | None  # None once the pages are known to be mapped
    fresh: bool  # read in on a prediction and not used since


def _expert_views(layer: Any, e: int) -> list[np.ndarray]:
    return [layer.gate.data[e], layer.up.data[e], layer.down.data[e]]


def dense_views(weights: Any) -> list[np.ndarray]:
    """Every weight a token reads whole, whichever experts it routes to (the embedding is read by row)."""
    views: list[np.ndarray] = [weights.output.data, weights.output_norm]
    for lw in weights.layers:
        views += [lw.attn_norm, lw.wq.data, lw.bq, lw.wk.data, lw.bk, lw.wv.data, lw.bv, lw.wo.data, lw.bo,
                  lw.sinks, lw.post_norm, lw.router.data, lw.router_b, lw.gate_b, lw.up_b, lw.down_b]
    return views


def _check_in_maps(views: list[np.ndarray], maps: list[np.ndarray]) -> None:
    """Releasing pages is only harmless for a file's pages (MADV_DONTNEED zeroes anonymous memory)."""
    spans = [view_range(m) for m in maps]
    for v in views:
        a, n = view_range(v)
        if not any(lo <= a and a + n <= lo + size for lo, size in spans):
            raise ValueError("expert weights outside the model's file maps cannot be paged")


class ExpertPager:
    """The expert hook that keeps a budget's worth of experts mapped and reads the others in ahead of use.

    Give `slots` (a fixed hot set, in experts) or `plan` (a memory_budget.BudgetPlan: the hot
    set follows the process's RSS). `predict` predicts each next layer's experts, which are read
    ahead while at least `ahead_min` of the recent predictions were right; `evict_advice` is
    MADV_DONTNEED (pages stay cached) or MADV_PAGEOUT (dropped from the page cache too).
    """

    def __init__(
        self, cfg: Any, weights: Any, maps: list[np.ndarray], *, slots: int | None = None, plan: Any = None,
        predict: bool = True, ahead_min: float = AHEAD_MIN_PRECISION, evict_advice: int = MADV_DONTNEED,
        reader: PageReader | None = None,
    ) -> None:
        if (slots is None) == (plan is None):
            raise ValueError("give slots or plan")
        self.cfg, self.w = cfg, weights
        self.plan = plan
        self.predict = predict
        self.ahead_min = ahead_min
        self.evict_advice = evict_advice
        views = [v for lw in weights.layers for e in range(cfg.n_experts) for v in _expert_views(lw, e)]
        _check_in_maps(views + dense_views(weights), maps)
        self._spans = [[[view_range(v) for v in _expert_views(lw, e)] for e in range(cfg.n_experts)]
                       for lw in weights.layers]
        self.slot_bytes = Ranges.of(self._spans[0][0]).nbytes
        self.total_slots = cfg.n_layers * cfg.n_experts
        self.capacity = slots if slots is not None else plan.hot_slots(plan.base)
        self.counters = PagerCounters()  # disk_bytes is filled in by snapshot()
        self._io0 = page_io.io_read_bytes()
        self._hot: OrderedDict[Slot, _Entry] = OrderedDict()  # least recently used first
        self._reading: list[tuple[PageJob, list[Slot]]] = []  # jobs not yet seen done
        self._guesses: dict[int, list[Slot]] = {}  # layer -> its predicted experts, until it runs
        self._recent: deque[tuple[int, int]] = deque(maxlen=AHEAD_WINDOW)  # (guessed, right) per layer
        self._reader = reader or PageReader()
        # no readahead past an expert: a page the helper has not read is fetched alone
        expert_tensors = [view_range(m.data) for lw in weights.layers for m in (lw.gate, lw.up, lw.down)]
        self.counters.failed_advice += page_io.advise(Ranges.of(expert_tensors), MADV_RANDOM)
        self.counters.failed_advice += page_io.advise(Ranges.of([view_range(weights.token_embd.data)]), MADV_RANDOM)
        # the dense weights stay mapped: read them in now, before the first token
        dense = Ranges.of([view_range(v) for v in dense_views(weights)])
        self.counters.failed_advice += self._reader.run_now(dense).failed

    # -- the hook ---------------------------------------------------------------------

    def __call__(self, layer: int, experts: np.ndarray, g: np.ndarray) -> None:
        c = self.counters
        if layer == 0:
            c.tokens += g.shape[0]
        demand = [(layer, int(e)) for e in experts]
        protect = set(demand)
        self._follow_budget(protect)
        c.requested += len(demand)
        waits: list[PageJob] = []
        missing: list[Slot] = []
        dropped: list[Slot] = []
        for s in demand:
            entry = self._hot.get(s)
            if entry is None:
                missing.append(s)
                continue
            self._hot.move_to_end(s)
            if entry.job is not None and not entry.job.done.is_set():
                waits.append(entry.job)
            elif page_io.absent_pages(Ranges.of(self._slot_spans(s))):
                dropped.append(s)  # the kernel reclaimed some of its pages: read them in again, in one go
                continue
            c.hits += 1
            c.prefetch_hits += entry.fresh
            entry.fresh = False
        self._make_room(len(missing), protect)
        if len(self._hot) + len(missing) > self.capacity:
            c.over_budget += 1
        if missing or dropped:
            waits.append(self._load(missing + dropped, urgent=True, fresh=False))
            c.loaded += len(missing)
            c.reloaded += len(dropped)
        self._score_guess(layer, protect)
        if self.predict and layer + 1 < self.cfg.n_layers:
            self._prefetch(layer + 1, g, protect)
        t = time.perf_counter()
        for job in waits:
            self._reader.promote(job)
        for job in waits:
            job.wait()
        c.stall_s += time.perf_counter() - t

    def snapshot(self) -> PagerCounters:
        """The counters now, with the bytes this process has read from storage since the pager started."""
        c = self.counters.copy()
        c.disk_bytes = page_io.io_read_bytes() - self._io0
        return c

    # -- internals --------------------------------------------------------------------

    def _load(self, slots: list[Slot], *, urgent: bool, fresh: bool) -> PageJob:
        job = self._reader.submit(Ranges.of([sp for s in slots for sp in self._slot_spans(s)]), urgent=urgent)
        for s in slots:
            self._hot[s] = _Entry(job, fresh)
        self._reading.append((job, slots))
        self.counters.bytes_requested += len(slots) * self.slot_bytes
        return job

    def _slot_spans(self, s: Slot) -> list[tuple[int, int]]:
        return self._spans[s[0]][s[1]]

    def _score_guess(self, layer: int, demand: set[Slot]) -> None:
        guess = self._guesses.pop(layer, None)
        if guess is None:
            return
        right = sum(1 for s in guess if s in demand)
        self.counters.guessed += len(guess)
        self.counters.guessed_right += right
        self._recent.append((len(guess), right))

    def reading_ahead(self) -> bool:
        """Whether predictions are read in: while the recent ones were right often enough to pay for their reads."""
        if len(self._recent) < self._recent.maxlen // 4:
            return True
        guessed = sum(n for n, _ in self._recent)
        return sum(r for _, r in self._recent) >= self.ahead_min * guessed

    def _prefetch(self, layer: int, g: np.ndarray, protect: set[Slot]) -> None:
        """Predict `layer`'s experts from `g` with its router; read them in, most chosen first, as far as
        there is room and while predictions have been paying off."""
        from gptoss_kernels.moe import router_topk

        from .model import linear

        lw = self.w.layers[layer]
        chosen, _ = router_topk(linear(g, lw.router, lw.router_b), self.cfg.n_experts_used)
        ids, votes = np.unique(chosen, return_counts=True)
        ranked = [(layer, int(e)) for e in ids[np.argsort(-votes, kind="stable")]]
        self._guesses[layer] = ranked
        if not self.reading_ahead():
            return
        for s in ranked:
            if s in self._hot:
                self._hot.move_to_end(s)
        want = [s for s in ranked if s not in self._hot]
        keep = protect | set(ranked)
        self._make_room(len(want), keep)
        want = want[: max(0, self.capacity - len(self._hot))]
        if want:
            self._load(want, urgent=False, fresh=True)
            self.counters.predicted += len(want)

    def _make_room(self, n: int, protect: set[Slot]) -> None:
        """Release least recently used experts (not `protect`, not being read) until n more fit."""
        excess = len(self._hot) + n - self.capacity
        if excess <= 0:
            return
        drop: list[Slot] = []
        for s, entry in self._hot.items():
            if len(drop) == excess:
                break
            if s not in protect and (entry.job is None or entry.job.done.is_set()):
                drop.append(s)
        for s in drop:
            del self._hot[s]
        if drop:  # released on the helper thread, before any read queued after this
            spans = [sp for s in drop for sp in self._slot_spans(s)]
            self._reading.append((self._reader.submit(Ranges.of(spans, inward=True), urgent=True,
                                                      advice=self.evict_advice), []))
            self.counters.evicted += len(drop)

    def _follow_budget(self, protect: set[Slot]) -> None:
        """Settle finished reads; with a budget, size the hot set from the RSS now.

        Experts still being read count as the rest of the process (their pages mapped so
        far are in the RSS), so a read in flight never makes the hot set look smaller.
        """
        reading = 0
        for job, slots in list(self._reading):
            if job.done.is_set():
                self._reading.remove((job, slots))
                self.counters.failed_advice += job.failed
                for s in slots:
                    entry = self._hot.get(s)
                    if entry is not None and entry.job is job:
                        entry.job = None
            else:
                reading += sum(1 for s in slots if s in self._hot)
        if self.plan is None:
            return
        from .memory_budget import rss_bytes

        other = max(0, rss_bytes() - (len(self._hot) - reading) * self.slot_bytes)
        self.capacity = self.plan.hot_slots(other)
        self._make_room(0, protect)

    def close(self) -> None:
        self._reader.close()


def pager_for(
    model_file: Any, cfg: Any, weights: Any, context: int, mem_budget: str | int | None, sequences: int = 1
) -> tuple[Any, "ExpertPager | None"]:
    """(the BudgetPlan, a pager or None): a pager only where the model could outgrow the budget.

    mem_budget: a size ("16G") or bytes, or None for the default (available memory minus a
    margin); sequences: the KV caches at full context it must hold (a server's slots).
    OptionError when the budget is impossible.
    """
    from .gguf_split import byte_maps
    from .memory_budget import default_budget, parse_budget, plan_budget, rss_bytes

    if mem_budget is None:
        found = default_budget()
        if found is None:
            return None, None
        budget, chosen = found
    else:
        budget, chosen = parse_budget(mem_budget), "--mem-budget"
    maps = byte_maps(model_file)
    dense = Ranges.of([view_range(v) for v in dense_views(weights)]).nbytes
    slot = Ranges.of([view_range(v) for v in _expert_views(weights.layers[0], 0)]).nbytes
    from .model import PREFILL_CHUNK

    plan = plan_budget(
        budget, chosen, rss=rss_bytes(), dense_bytes=dense,
        needed=sum(int(m.nbytes) for m in maps) + sequences * _kv_bytes(cfg, context),
        slot_bytes=slot, min_slots=min(cfg.n_experts, cfg.n_experts_used * PREFILL_CHUNK),
    )
    if not plan.paging:
        return plan, None
    # The compute threads now wait for the disk; OpenMP workers that spin meanwhile take the core
    # the page reads need (120b on 2 cores: 1.0-1.2 s of CPU a token spinning, 0.35-0.45 s without).
    # It takes effect where Numba's thread pool has not started yet; a user's setting stands.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return plan, ExpertPager(cfg, weights, maps, plan=plan)


def _kv_bytes(cfg: Any, context: int) -> int:
    """The KV cache at full context (float32 keys and values; sliding layers keep a ring)."""
    per_slot = 2 * cfg.kv_dim * 4
    sliding = (cfg.n_layers + 1) // 2
    return sliding * min(cfg.sliding_window, context) * per_slot + (cfg.n_layers - sliding) * context * per_slot


def summary(c: PagerCounters, seconds: float, pager: ExpertPager) -> dict[str, Any]:
    """The counters over a span of `seconds`, per token: what bench reports and -v prints."""
    tokens = max(c.tokens, 1)
    return {
        "hot_experts": pager.capacity, "experts": pager.total_slots, "expert_mb": round(pager.slot_bytes / 1e6, 2),
        "tokens": c.tokens, "hit_rate": round(c.hits / c.requested, 4) if c.requested else None,
        "prefetch_hits": c.prefetch_hits, "loaded": c.loaded, "reloaded": c.reloaded, "predicted": c.predicted,
        "evicted": c.evicted,
        "guess_precision": round(c.guessed_right / c.guessed, 4) if c.guessed else None,
        "requested_mb_per_token": round(c.bytes_requested / tokens / 1e6, 1),
        "disk_mb_per_token": round(c.disk_bytes / tokens / 1e6, 1),
        "disk_gb_s": round(c.disk_bytes / seconds / 1e9, 3) if seconds > 0 else None,
        "stall_s_per_token": round(c.stall_s / tokens, 4), "over_budget": c.over_budget,
    }


def summary_line(s: dict[str, Any]) -> str:
    """The -v line of a summary."""
    hit = "n/a" if s["hit_rate"] is None else f"{100 * s['hit_rate']:.0f}%"
    return (
        f"experts: hot set {s['hot_experts']} of {s['experts']} ({s['expert_mb']} MB each), hit rate {hit} "
        f"({s['prefetch_hits']} read ahead), read in {s['requested_mb_per_token']} MB/token, "
        f"from disk {s['disk_mb_per_token']} MB/token at {s['disk_gb_s']} GB/s, "
        f"waited {s['stall_s_per_token']:.3f} s/token"
    )


def memory_line(lm: Any, seconds: float) -> str:
    """run -v's memory line: peak RSS against the budget, and the pager's counters over the run."""
    from .byte_sizes import format_bytes
    from .memory_budget import peak_rss_bytes

    plan = lm.budget
    line = f"gptoss: memory: peak RSS {format_bytes(peak_rss_bytes())}"
    if plan is None:
        return line + " (no budget: the OS gives no available-memory figure)"
    line += f", budget {format_bytes(plan.budget)} ({plan.chosen})"
    if lm.pager is None:
        return line + ", the model fits: no paging"
    return line + " | " + summary_line(summary(lm.pager.snapshot(), seconds, lm.pager))
