"""Expert paging on a tiny model: the logits do not change, and the counters say what was read when.

Every check reads the pager's counters and its requests, never a timing: a hot set
sized in experts (or by a budget against a stand-in RSS), the order in which the
routed and the predicted experts are asked for, and what is released.
"""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from tiny_models import TinySpec, build_tiny_model

from gptoss_cli import load_model
from gptoss_cli import memory_budget
from gptoss_cli.errors import OptionError
from gptoss_cli.expert_pager import ExpertPager, PagerCounters, memory_line, summary
from gptoss_cli.gguf_split import byte_maps
from gptoss_cli.model import Transformer
from gptoss_cli.page_io import PAGE, PageReader, Ranges, view_range

SPEC = TinySpec(n_layers=3, n_experts=8, top_k=2, hidden=64, expert_ffn=64, n_heads=4, n_kv_heads=2, head_dim=16,
                vocab=300, sliding_window=8, context_length=512, seed=11)
PROMPT = np.random.default_rng(1).integers(0, SPEC.vocab, 40)
DECODE = [5, 7, 9, 11, 13, 17]


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    tm = build_tiny_model(SPEC, tmp_path_factory.mktemp("pager"))
    with load_model(tm.gguf_path, threads=1) as m:
        yield m


@pytest.fixture(scope="module")
def reference(lm):
    cache = lm.new_cache(256)
    prompt = lm.forward(PROMPT, cache, all_logits=True)
    return prompt, [lm.forward([t], cache) for t in DECODE]


def _paged(lm, **kw) -> tuple[Transformer, ExpertPager]:
    pager = ExpertPager(lm.config, lm._weights, byte_maps(lm.gguf), **kw)
    return Transformer(lm.config, lm._weights, expert_hook=pager), pager


def _run(model: Transformer) -> tuple[np.ndarray, list[np.ndarray]]:
    cache = model.new_cache(256)
    prompt = model.forward(PROMPT, cache, all_logits=True)
    return prompt, [model.forward([t], cache) for t in DECODE]


@pytest.mark.parametrize("slots", [8, 11, 24])
@pytest.mark.parametrize("predict", [True, False])
def test_paging_leaves_the_logits_bit_identical(lm, reference, slots, predict):
    model, pager = _paged(lm, slots=slots, predict=predict, ahead_min=0.0)
    try:
        prompt, decoded = _run(model)
    finally:
        pager.close()
    assert np.array_equal(prompt, reference[0])
    assert all(np.array_equal(a, b) for a, b in zip(decoded, reference[1]))
    c = pager.snapshot()
    assert c.tokens == PROMPT.size + len(DECODE) and c.failed_advice == 0
    assert c.hits + c.loaded + c.reloaded == c.requested and c.prefetch_hits <= min(c.hits, c.predicted)
    assert (c.predicted > 0) == predict and (c.evicted > 0) == (slots < 24)
    assert c.bytes_requested == (c.loaded + c.predicted) * pager.slot_bytes


def test_a_hot_set_that_holds_every_expert_reads_each_once(lm):
    model, pager = _paged(lm, slots=24, predict=False)
    try:
        _run(model)
        first = pager.snapshot()
        _run(model)
        second = pager.snapshot() - first
    finally:
        pager.close()
    assert first.loaded == len(pager._hot) <= 24 and first.evicted == 0
    assert second.loaded == 0 and second.hits == second.requested > 0


def test_a_hot_expert_whose_pages_the_kernel_reclaimed_is_read_in_again_not_faulted(lm, reference, monkeypatch):
    """Under memory pressure the kernel may drop mapped pages; the model would then fault them in one
    page at a time (MADV_RANDOM). A hit is checked (mincore) and read in again in one request instead."""
    import gptoss_cli.expert_pager as ep

    model, pager = _paged(lm, slots=24, predict=False)
    gate_start = view_range(lm._weights.layers[1].gate.data)[0] // PAGE * PAGE  # layer 1's pages "dropped"
    real = ep.page_io.absent_pages
    monkeypatch.setattr(ep.page_io, "absent_pages",
                        lambda r: 1 if r.starts.size and int(r.starts[0]) == gate_start else real(r))
    try:
        _run(model)  # the first pass reads everything in
        first = pager.snapshot()
        prompt, decoded = _run(model)
        second = pager.snapshot() - first
    finally:
        pager.close()
    assert np.array_equal(prompt, reference[0]) and all(np.array_equal(a, b) for a, b in zip(decoded, reference[1]))
    assert second.reloaded > 0 and second.loaded == 0 and second.hits + second.reloaded == second.requested


def test_the_hot_set_never_outgrows_its_slots_and_drops_the_least_recently_used(lm):
    model, pager = _paged(lm, slots=10, predict=False)
    released = []
    inner = pager.__call__

    def hook(layer, experts, g):
        before = list(pager._hot)  # least recently used first
        inner(layer, experts, g)
        assert len(pager._hot) <= pager.capacity
        routed = {(layer, int(e)) for e in experts}
        gone = [before.index(s) for s in before if s not in pager._hot]
        kept = [before.index(s) for s in before if s in pager._hot and s not in routed]
        if gone and kept:
            assert max(gone) < min(kept)
        released.extend(gone)

    model.expert_hook = hook
    try:
        _run(model)
    finally:
        pager.close()
    assert len(released) == pager.counters.evicted > 0 and pager.counters.over_budget == 0


def test_routed_experts_are_asked_for_first_then_the_next_layers_predicted_ones(lm):
    model, pager = _paged(lm, slots=11, predict=True, ahead_min=0.0)
    asked: list[tuple[int, bool, list]] = []  # (hook layer, urgent, experts)
    layer_now = [0]
    load = pager._load

    def recording_load(slots, *, urgent, fresh):
        asked.append((layer_now[0], urgent, list(slots)))
        return load(slots, urgent=urgent, fresh=fresh)

    pager._load = recording_load
    inner = pager.__call__

    def hook(layer, experts, g):
        layer_now[0] = layer
        n = len(asked)
        inner(layer, experts, g)
        mine = asked[n:]
        urgent = [a for a in mine if a[1]]
        ahead = [a for a in mine if not a[1]]
        assert len(urgent) <= 1 and len(ahead) <= 1
        if urgent:  # the routed experts that were not mapped, in one request, before any prediction
            assert mine[0] is urgent[0] and {s[0] for s in urgent[0][2]} == {layer}
            assert {s[1] for s in urgent[0][2]} <= {int(e) for e in experts}
        if ahead:  # then the next layer's, never past the last layer
            assert layer + 1 < SPEC.n_layers and {s[0] for s in ahead[0][2]} == {layer + 1}

    model.expert_hook = hook
    try:
        _run(model)
    finally:
        pager.close()
    c = pager.snapshot()
    assert c.predicted == sum(len(a[2]) for a in asked if not a[1]) > 0
    assert c.loaded == sum(len(a[2]) for a in asked if a[1])
    assert c.prefetch_hits > 0  # on this model the next layer's router often guesses right


def test_a_prediction_read_ahead_is_a_hit_not_a_second_read(lm):
    """Experts read in on a prediction are never asked for again when the layer routes to them."""
    model, pager = _paged(lm, slots=24, predict=True, ahead_min=0.0)
    requested: list = []
    load = pager._load

    def recording_load(slots, *, urgent, fresh):
        requested.extend(slots)
        return load(slots, urgent=urgent, fresh=fresh)

    pager._load = recording_load
    try:
        _run(model)
    finally:
        pager.close()
    assert len(requested) == len(set(requested))  # nothing read twice: nothing was released
    c = pager.snapshot()
    assert c.loaded + c.predicted == len(requested) and c.prefetch_hits > 0


def test_experts_are_released_on_the_helper_before_the_reads_that_need_their_room(lm):
    model, pager = _paged(lm, slots=9, predict=True, ahead_min=0.0)
    queued: list[tuple[str, bool]] = []
    submit = pager._reader.submit

    def recording_submit(ranges, *, urgent=False, advice=None):
        queued.append(("release" if advice is not None else "read", urgent))
        return submit(ranges, urgent=urgent, advice=advice)

    pager._reader.submit = recording_submit
    try:
        _run(model)
    finally:
        pager.close()
    assert ("release", True) in queued and ("read", True) in queued and ("read", False) in queued
    assert ("release", False) not in queued  # a release never waits behind a read ahead
    assert pager.counters.evicted > 0


def test_predictions_are_read_ahead_only_while_they_are_right_often_enough(lm):
    model, pager = _paged(lm, slots=24, predict=True, ahead_min=1.01)  # never right often enough
    try:
        cache = model.new_cache(256)
        steps = []
        for t in range(60):
            model.forward([t], cache)
            steps.append(pager.snapshot())
    finally:
        pager.close()
    first_judged = pager._recent.maxlen // 4 // (SPEC.n_layers - 1)  # layers scored before the rule applies
    assert steps[first_judged + 1].predicted == steps[-1].predicted  # read ahead no more
    assert steps[-1].guessed > steps[first_judged + 1].guessed  # but still predicted and scored
    assert 0 < steps[-1].guessed_right <= steps[-1].guessed


def test_the_reader_runs_urgent_jobs_first_in_submission_order(monkeypatch):
    gate = threading.Event()
    ran: list[str] = []
    original = PageReader._run

    def run(self, job):
        if not ran:
            gate.wait(10)
        ran.append(job.name)
        original(self, job)

    monkeypatch.setattr(PageReader, "_run", run)
    reader = PageReader()
    try:
        jobs = []
        for name, urgent in (("first", False), ("ahead", False), ("later", False), ("now", True)):
            job = reader.submit(Ranges.of([]), urgent=urgent)
            job.name = name
            jobs.append(job)
            if name == "first":
                while not job.started:
                    threading.Event().wait(0.01)
        reader.promote(jobs[2])  # "later" is needed now too: behind the urgent "now", ahead of "ahead"
        gate.set()
        for job in jobs:
            job.wait()
    finally:
        reader.close()
    assert ran == ["first", "now", "later", "ahead"]


def test_a_budget_follows_the_resident_set(lm, reference, monkeypatch):
    """The hot set is what the budget leaves beside the rest of the process, measured at each block."""
    probe = ExpertPager(lm.config, lm._weights, byte_maps(lm.gguf), slots=1)
    slot = probe.slot_bytes
    probe.close()
    other = [100 * slot]
    plan = memory_budget.BudgetPlan(budget=(100 + 14) * slot, chosen="--mem-budget", base=other[0], needed=1 << 40,
                                    slot_bytes=slot, min_slots=SPEC.n_experts, slack=0)
    model, pager = _paged(lm, plan=plan, predict=False)  # no read in flight: the stand-in RSS is exact
    monkeypatch.setattr(memory_budget, "rss_bytes", lambda: other[0] + len(pager._hot) * slot)
    try:
        cache = model.new_cache(256)
        assert np.array_equal(model.forward(PROMPT, cache, all_logits=True), reference[0])
        assert pager.capacity == 14
        other[0] += 4 * slot  # the KV cache grew: the hot set gives way
        out = [model.forward([t], cache) for t in DECODE]
        assert pager.capacity == 10 and len(pager._hot) <= 10
        other[0] += 100 * slot  # less than one layer is left: one layer's experts still run
        model.forward([3], cache)
        assert pager.capacity == SPEC.n_experts
    finally:
        pager.close()
    assert all(np.array_equal(a, b) for a, b in zip(out, reference[1]))


def test_the_loader_pages_only_a_model_that_could_outgrow_the_budget(lm, monkeypatch):
    big = load_model(lm.path, threads=1, mem_budget="1T")
    assert big.pager is None and big.budget.budget == 10**12 and not big.budget.paging
    assert "the model fits: no paging" in memory_line(big, 1.0)
    big.close()
    with pytest.raises(OptionError) as e:
        load_model(lm.path, threads=1, mem_budget="1M")
    assert e.value.option == "mem_budget" and "needs at least" in e.value.why and "\n" not in str(e.value)
    # a budget between what one layer needs and the whole model: paged, the same logits
    monkeypatch.setenv("OMP_WAIT_POLICY", "unset")  # (restored after the test)
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setattr(memory_budget, "rss_bytes", lambda: 0)
    monkeypatch.setattr(memory_budget, "SLACK_MIN", 0)
    monkeypatch.setattr(memory_budget, "SLACK_SHARE", 0.0)
    probe = load_model(lm.path, threads=1, mem_budget=1 << 40)
    plan = probe.budget
    probe.close()
    paged = load_model(lm.path, threads=1, mem_budget=plan.minimum + 3 * plan.slot_bytes)
    try:
        assert paged.pager is not None and paged.budget.paging
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"  # waiting compute threads do not spin
        cache = paged.new_cache(256)
        want = lm.forward(PROMPT, lm.new_cache(256), all_logits=True)
        assert np.array_equal(paged.forward(PROMPT, cache, all_logits=True), want)
        s = summary(paged.pager.snapshot(), 1.0, paged.pager)
        assert s["tokens"] == PROMPT.size and s["experts"] == SPEC.n_layers * SPEC.n_experts
        assert "hit rate" in memory_line(paged, 1.0)
    finally:
        paged.close()


def test_the_budget_holds_a_kv_cache_per_sequence(lm):
    """A server's --parallel slots each hold a KV cache: the budget counts every one."""
    one = load_model(lm.path, threads=1, mem_budget="1T", context=512)
    three = load_model(lm.path, threads=1, mem_budget="1T", context=512, sequences=3)
    try:
        kv = three.budget.needed - one.budget.needed
        assert kv > 0 and kv == 2 * (one.budget.needed - sum(m.nbytes for m in byte_maps(one.gguf)))
    finally:
        one.close()
        three.close()


def test_weights_outside_a_file_map_are_refused(lm):
    """MADV_DONTNEED on anonymous memory would zero it: only a file's pages may be released."""
    with pytest.raises(ValueError, match="file maps"):
        ExpertPager(lm.config, lm._weights, [np.zeros(4096, dtype=np.uint8)], slots=4)


def test_counters_add_and_subtract():
    a = PagerCounters(tokens=3, requested=8, hits=2, stall_s=0.5)
    b = PagerCounters(tokens=1, requested=4, hits=1, stall_s=0.25)
    assert (a - b) + b == a and (a - b).requested == 4
