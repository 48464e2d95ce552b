"""Causal grouped-query attention with per-head sinks and an optional sliding window.

Query t of the block sits at absolute position p = start + t and sees keys at
positions max(0, p - window + 1) .. p (window > 0) or 0 .. p (window == 0).
Keys of the current block come from ``k_new``/``v_new``; earlier ones from the
cache (head-major, ``[Hkv, S, D]``), position j in slot j % S (a ring for
sliding layers; for full layers S covers every position, so slot == position). Call it before writing the
block into the cache: with a ring, the block's own keys may reuse the slots
of keys that early queries of the block still see.

Softmax over the scaled scores plus the head's sink logit (unscaled, no value
vector): ``w_j = exp(s_j - m) / (exp(sink - m) + sum_i exp(s_i - m))`` with m
the maximum over scores and sink. Scores, exponentials and the weighted value
sums are float32; the denominator is summed in float32 over runs of 64 keys
and in float64 across them.

One parallel task per (KV head, query): the task handles the query heads that
share that KV head, so every key and value row is read once per group, not
once per query head. The heads sit in the lanes of an 8-float vector
(:mod:`head_lanes`): a score is a chain of multiply-adds of the heads' query
elements with one broadcast key element, eight keys at a time, and the value
sums keep 16 output elements x 8 heads in registers while the keys stream
past, so nothing is summed across lanes. Head-major storage makes each head's
keys one contiguous stream (a [S, Hkv, D] cache strides 2 KB between them,
which the hardware prefetcher does not follow: 38 vs 20 ms at 32k keys). Groups of more than 8 heads take
several passes. Tasks run KV-head-major so threads get equal shares of the
causal triangle. Scratch per task is ``8 x visible`` floats. Keys are walked
as at most three contiguous runs (cache before and after the ring's wrap,
then the block).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import head_lanes as hl
from .simd import tload8, tstore8
from .validate import as_input, check_output, readonly

L = hl.HEAD_LANES
SUM_RUN = 64  # keys whose exponentials are summed in float32 before the float64 total


@njit(cache=True)
def _qk_run(qT, src, i0, cnt, hk, scale, sc, j0, m):
    """sc[(j0+i)*L : +L] = scale * (heads' q) . src[hk, i0+i] for i < cnt; returns the lane-wise max with m."""
    D = src.shape[2]
    z = hl.hsplat(np.float32(0.0))
    sv = hl.hsplat(scale)
    i = 0
    while i + 8 <= cnt:
        a0 = z
        a1 = z
        a2 = z
        a3 = z
        a4 = z
        a5 = z
        a6 = z
        a7 = z
        r = i0 + i
        for d in range(D):
            qd = tload8(qT, d * L)
            a0 = hl.hmuladd(a0, qd, src[hk, r, d])
            a1 = hl.hmuladd(a1, qd, src[hk, r + 1, d])
            a2 = hl.hmuladd(a2, qd, src[hk, r + 2, d])
            a3 = hl.hmuladd(a3, qd, src[hk, r + 3, d])
            a4 = hl.hmuladd(a4, qd, src[hk, r + 4, d])
            a5 = hl.hmuladd(a5, qd, src[hk, r + 5, d])
            a6 = hl.hmuladd(a6, qd, src[hk, r + 6, d])
            a7 = hl.hmuladd(a7, qd, src[hk, r + 7, d])
        o = (j0 + i) * L
        a0 = hl.hmul(a0, sv)
        a1 = hl.hmul(a1, sv)
        a2 = hl.hmul(a2, sv)
        a3 = hl.hmul(a3, sv)
        a4 = hl.hmul(a4, sv)
        a5 = hl.hmul(a5, sv)
        a6 = hl.hmul(a6, sv)
        a7 = hl.hmul(a7, sv)
        tstore8(sc, o, a0)
        tstore8(sc, o + L, a1)
        tstore8(sc, o + 2 * L, a2)
        tstore8(sc, o + 3 * L, a3)
        tstore8(sc, o + 4 * L, a4)
        tstore8(sc, o + 5 * L, a5)
        tstore8(sc, o + 6 * L, a6)
        tstore8(sc, o + 7 * L, a7)
        m = hl.hmax(hl.hmax(hl.hmax(m, a0), hl.hmax(a1, a2)), hl.hmax(hl.hmax(a3, a4), hl.hmax(a5, hl.hmax(a6, a7))))
        i += 8
    while i < cnt:
        a0 = z
        for d in range(D):
            a0 = hl.hmuladd(a0, tload8(qT, d * L), src[hk, i0 + i, d])
        a0 = hl.hmul(a0, sv)
        tstore8(sc, (j0 + i) * L, a0)
        m = hl.hmax(m, a0)
        i += 1
    return m


@njit(cache=True)
def _exp_in_place(sc, n, m, total, tmp):
    """sc[j*L : +L] = exp(sc[j*L : +L] - m) for j < n; adds each lane's sum to total (float64)."""
    z = hl.hsplat(np.float32(0.0))
    for j0 in range(0, n, SUM_RUN):
        part = z
        for j in range(j0, min(n, j0 + SUM_RUN)):
            e = hl.hexp(hl.hsub(tload8(sc, j * L), m))
            tstore8(sc, j * L, e)
            part = hl.hadd(part, e)
        tstore8(tmp, 0, part)
        for lane in range(L):
            total[lane] += np.float64(tmp[lane])


@njit(cache=True)
def _pv_run(sc, j0, src, i0, cnt, hk, accT):
    """accT[d*L : +L] += sum_i sc[(j0+i)*L : +L] * src[hk, i0+i, d] for every d (16 at a time)."""
    D = src.shape[2]
    d0 = 0
    while d0 + 16 <= D:
        c0 = tload8(accT, (d0 + 0) * L)
        c1 = tload8(accT, (d0 + 1) * L)
        c2 = tload8(accT, (d0 + 2) * L)
        c3 = tload8(accT, (d0 + 3) * L)
        c4 = tload8(accT, (d0 + 4) * L)
        c5 = tload8(accT, (d0 + 5) * L)
        c6 = tload8(accT, (d0 + 6) * L)
        c7 = tload8(accT, (d0 + 7) * L)
        c8 = tload8(accT, (d0 + 8) * L)
        c9 = tload8(accT, (d0 + 9) * L)
        c10 = tload8(accT, (d0 + 10) * L)
        c11 = tload8(accT, (d0 + 11) * L)
        c12 = tload8(accT, (d0 + 12) * L)
        c13 = tload8(accT, (d0 + 13) * L)
        c14 = tload8(accT, (d0 + 14) * L)
        c15 = tload8(accT, (d0 + 15) * L)
        for i in range(cnt):
            p = tload8(sc, (j0 + i) * L)
            r = i0 + i
            c0 = hl.hmuladd(c0, p, src[hk, r, d0])
            c1 = hl.hmuladd(c1, p, src[hk, r, d0 + 1])
            c2 = hl.hmuladd(c2, p, src[hk, r, d0 + 2])
            c3 = hl.hmuladd(c3, p, src[hk, r, d0 + 3])
            c4 = hl.hmuladd(c4, p, src[hk, r, d0 + 4])
            c5 = hl.hmuladd(c5, p, src[hk, r, d0 + 5])
            c6 = hl.hmuladd(c6, p, src[hk, r, d0 + 6])
            c7 = hl.hmuladd(c7, p, src[hk, r, d0 + 7])
            c8 = hl.hmuladd(c8, p, src[hk, r, d0 + 8])
            c9 = hl.hmuladd(c9, p, src[hk, r, d0 + 9])
            c10 = hl.hmuladd(c10, p, src[hk, r, d0 + 10])
            c11 = hl.hmuladd(c11, p, src[hk, r, d0 + 11])
            c12 = hl.hmuladd(c12, p, src[hk, r, d0 + 12])
            c13 = hl.hmuladd(c13, p, src[hk, r, d0 + 13])
            c14 = hl.hmuladd(c14, p, src[hk, r, d0 + 14])
            c15 = hl.hmuladd(c15, p, src[hk, r, d0 + 15])
        tstore8(accT, (d0 + 0) * L, c0)
        tstore8(accT, (d0 + 1) * L, c1)
        tstore8(accT, (d0 + 2) * L, c2)
        tstore8(accT, (d0 + 3) * L, c3)
        tstore8(accT, (d0 + 4) * L, c4)
        tstore8(accT, (d0 + 5) * L, c5)
        tstore8(accT, (d0 + 6) * L, c6)
        tstore8(accT, (d0 + 7) * L, c7)
        tstore8(accT, (d0 + 8) * L, c8)
        tstore8(accT, (d0 + 9) * L, c9)
        tstore8(accT, (d0 + 10) * L, c10)
        tstore8(accT, (d0 + 11) * L, c11)
        tstore8(accT, (d0 + 12) * L, c12)
        tstore8(accT, (d0 + 13) * L, c13)
        tstore8(accT, (d0 + 14) * L, c14)
        tstore8(accT, (d0 + 15) * L, c15)
        d0 += 16
    for d in range(d0, D):  # head sizes that are not a multiple of 16
        c = tload8(accT, d * L)
        for i in range(cnt):
            c = hl.hmuladd(c, tload8(sc, (j0 + i) * L), src[hk, i0 + i, d])
        tstore8(accT, d * L, c)


@njit(cache=True)
def _segments(lo, p, start, S):
    """Split visible positions lo..p into contiguous runs of storage rows.

    Returns (slot, count) for up to two runs in the cache (the ring wraps at
    most once, since the cache holds every earlier position the block sees)
    and (row, count) for the run in the block's own keys.
    """
    c_end = min(p + 1, start)  # cached positions are lo .. c_end-1
    n_cached = max(0, c_end - lo)
    s0 = lo % S if n_cached > 0 else 0
    n0 = min(n_cached, S - s0) if n_cached > 0 else 0
    n1 = n_cached - n0
    new_lo = max(lo, start)
    return s0, n0, n1, new_lo - start, p - new_lo + 1


@njit(cache=True)
def _attend_one(q, k_new, v_new, k_cache, v_cache, start, window, sinks, scale, out, hk, t):
    D = q.shape[2]
    G = q.shape[1] // k_new.shape[0]
    S = k_cache.shape[1]
    p = start + t
    lo = max(0, p - window + 1) if window > 0 else 0
    n = p - lo + 1
    s0, n0, n1, r0, nr = _segments(lo, p, start, S)
    qT = np.empty(D * L, np.float32)  # qT[d*L + g]: the lane heads' query elements
    accT = np.empty(D * L, np.float32)
    sc = np.empty(n * L, np.float32)
    total = np.empty(L, np.float64)
    tmp = np.empty(L, np.float32)
    for h0 in range(hk * G, (hk + 1) * G, L):  # heads h0 .. h0+lanes-1 in the lanes
        lanes = min(L, (hk + 1) * G - h0)
        for d in range(D):
            for g in range(L):
                qT[d * L + g] = q[t, h0 + g, d] if g < lanes else np.float32(0.0)
        for g in range(L):
            tmp[g] = sinks[h0 + g] if g < lanes else np.float32(0.0)
        sink = tload8(tmp, 0)
        m = _qk_run(qT, k_cache, s0, n0, hk, scale, sc, 0, sink)
        m = _qk_run(qT, k_cache, 0, n1, hk, scale, sc, n0, m)
        m = _qk_run(qT, k_new, r0, nr, hk, scale, sc, n0 + n1, m)
        tstore8(tmp, 0, hl.hexp(hl.hsub(sink, m)))
        for g in range(L):
            total[g] = np.float64(tmp[g])
        _exp_in_place(sc, n, m, total, tmp)
        accT[:] = 0.0
        _pv_run(sc, 0, v_cache, s0, n0, hk, accT)
        _pv_run(sc, n0, v_cache, 0, n1, hk, accT)
        _pv_run(sc, n0 + n1, v_new, r0, nr, hk, accT)
        for g in range(lanes):
            inv = 1.0 / total[g]
            for d in range(D):
                out[t, h0 + g, d] = np.float32(accT[d * L + g] * inv)


@njit(parallel=True, cache=True)
def _attention(q, k_new, v_new, k_cache, v_cache, start, window, sinks, scale, out):
    """All arrays as for attention(), except k_new and v_new head-major: [Hkv, T, D]."""
    T = q.shape[0]
    for task in prange(k_new.shape[0] * T):
        hk = task // T
        _attend_one(q, k_new, v_new, k_cache, v_cache, start, window, sinks, scale, out, hk, task - hk * T)


def attention(
    q: np.ndarray,
    k_new: np.ndarray,
    v_new: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    start: int,
    window: int,
    sinks: np.ndarray,
    scale: float,
    out: np.ndarray,
) -> None:
    """Attention of a block of T queries over the cache and the block itself.

    q ``[T, Hq, D]``; k_new, v_new ``[T, Hkv, D]``; k_cache, v_cache ``[Hkv, S, D]``
    (head-major, so that a head's keys are one contiguous stream); sinks ``[Hq]``;
    out ``[T, Hq, D]`` (written). ``window`` 0 means full attention.
    """
    q = as_input(q, "q")
    if q.ndim != 3:
        raise ValueError(f"q must be [T, Hq, D], got shape {q.shape}")
    T, Hq, D = q.shape
    k_new = as_input(k_new, "k_new")
    if k_new.ndim != 3 or k_new.shape[0] != T or k_new.shape[2] != D:
        raise ValueError(f"k_new must be [{T}, Hkv, {D}], got shape {k_new.shape}")
    Hkv = k_new.shape[1]
    if Hkv == 0 or Hq % Hkv:
        raise ValueError(f"{Hq} query heads cannot share {Hkv} KV heads evenly")
    v_new = as_input(v_new, "v_new", k_new.shape)
    k_cache = as_input(k_cache, "k_cache")
    if k_cache.ndim != 3 or k_cache.shape[0] != Hkv or k_cache.shape[2] != D:
        raise ValueError(f"k_cache must be [{Hkv}, S, {D}], got shape {k_cache.shape}")
    v_cache = as_input(v_cache, "v_cache", k_cache.shape)
    sinks = as_input(sinks, "sinks", (Hq,))
    check_output(out, "out", q.shape)
    start, window = int(start), int(window)
    if start < 0 or window < 0:
        raise ValueError("start and window must be >= 0")
    S = k_cache.shape[1]
    needed = min(start, window - 1) if window > 0 else start  # cached positions the block sees
    if S < needed:
        raise ValueError(f"cache of {S} slots cannot hold the {needed} earlier positions this block attends to")
    if T:
        k_heads = readonly(np.ascontiguousarray(k_new.transpose(1, 0, 2)))
        v_heads = readonly(np.ascontiguousarray(v_new.transpose(1, 0, 2)))
        _attention(q, k_heads, v_heads, k_cache, v_cache, start, window, sinks, np.float32(scale), out)
