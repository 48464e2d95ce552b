"""Causal grouped-query attention with per-head sinks and an optional sliding window.

Query t of the block sits at absolute position p = start + t and sees keys at
positions max(0, p - window + 1) .. p (window > 0) or 0 .. p (window == 0).
Keys of the current block come from ``k_new``/``v_new``; earlier ones from the
cache, position j in slot j % S (a ring for sliding layers; for full layers
S covers every position, so slot == position). Call it before writing the
block into the cache: with a ring, the block's own keys may reuse the slots
of keys that early queries of the block still see.

Softmax over the scaled scores plus the head's sink logit (unscaled, no value
vector): ``w_j = exp(s_j - m) / (exp(sink - m) + sum_i exp(s_i - m))`` with m
the maximum over scores and sink. Scores and the weighted value sums are
float32, the denominator float64.

One parallel task per (KV head, query): the task handles the query heads that
share that KV head, so every key and value row is read once per group, not
once per query head. Tasks run KV-head-major so threads get equal shares of
the causal triangle. Scratch per task is ``group x visible`` floats. Keys are
walked as at most three contiguous runs (cache before and after the ring's
wrap, then the block), four keys per step.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .validate import as_input, check_output

_FASTMATH = {"reassoc", "contract", "nsz"}


@njit(cache=True, fastmath=_FASTMATH)
def _dot4(qrow, k0, k1, k2, k3):
    """Four dot products sharing one query row: independent chains keep the FMA units busy."""
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for d in range(qrow.shape[0]):
        qv = qrow[d]
        s0 += qv * k0[d]
        s1 += qv * k1[d]
        s2 += qv * k2[d]
        s3 += qv * k3[d]
    return s0, s1, s2, s3


@njit(cache=True, fastmath=_FASTMATH)
def _qk_rows(qg, src, i0, cnt, hk, scale, scores, j0):
    """scores[:, j0+i] = scale * qg @ src[i0+i, hk] for i < cnt (a contiguous run of keys)."""
    G = qg.shape[0]
    i = 0
    while i + 4 <= cnt:
        k0 = src[i0 + i, hk]
        k1 = src[i0 + i + 1, hk]
        k2 = src[i0 + i + 2, hk]
        k3 = src[i0 + i + 3, hk]
        for g in range(G):
            s0, s1, s2, s3 = _dot4(qg[g], k0, k1, k2, k3)
            scores[g, j0 + i] = s0 * scale
            scores[g, j0 + i + 1] = s1 * scale
            scores[g, j0 + i + 2] = s2 * scale
            scores[g, j0 + i + 3] = s3 * scale
        i += 4
    while i < cnt:
        k0 = src[i0 + i, hk]
        for g in range(G):
            s = np.float32(0.0)
            for d in range(k0.shape[0]):
                s += qg[g, d] * k0[d]
            scores[g, j0 + i] = s * scale
        i += 1


@njit(cache=True, fastmath=_FASTMATH)
def _pv_rows(probs, j0, src, i0, cnt, hk, acc):
    """acc[g] += sum_i probs[g, j0+i] * src[i0+i, hk], four keys per pass over acc."""
    G, D = acc.shape
    i = 0
    while i + 4 <= cnt:
        v0 = src[i0 + i, hk]
        v1 = src[i0 + i + 1, hk]
        v2 = src[i0 + i + 2, hk]
        v3 = src[i0 + i + 3, hk]
        for g in range(G):
            p0 = probs[g, j0 + i]
            p1 = probs[g, j0 + i + 1]
            p2 = probs[g, j0 + i + 2]
            p3 = probs[g, j0 + i + 3]
            for d in range(D):
                acc[g, d] += (p0 * v0[d] + p1 * v1[d]) + (p2 * v2[d] + p3 * v3[d])
        i += 4
    while i < cnt:
        v0 = src[i0 + i, hk]
        for g in range(G):
            p0 = probs[g, j0 + i]
            for d in range(D):
                acc[g, d] += p0 * v0[d]
        i += 1


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


@njit(cache=True, fastmath=_FASTMATH)
def _attend_one(q, k_new, v_new, k_cache, v_cache, start, window, sinks, scale, out, hk, t):
    D = q.shape[2]
    G = q.shape[1] // k_new.shape[1]
    S = k_cache.shape[0]
    p = start + t
    lo = max(0, p - window + 1) if window > 0 else 0
    n = p - lo + 1
    h0 = hk * G
    s0, n0, n1, r0, nr = _segments(lo, p, start, S)

    qg = np.empty((G, D), np.float32)  # this group's query rows, contiguous
    for g in range(G):
        for d in range(D):
            qg[g, d] = q[t, h0 + g, d]
    scores = np.empty((G, n), np.float32)
    _qk_rows(qg, k_cache, s0, n0, hk, scale, scores, 0)
    _qk_rows(qg, k_cache, 0, n1, hk, scale, scores, n0)
    _qk_rows(qg, k_new, r0, nr, hk, scale, scores, n0 + n1)

    denom = np.empty(G, np.float64)
    for g in range(G):
        sink = sinks[h0 + g]
        m = sink
        for j in range(n):
            m = max(m, scores[g, j])
        total = np.exp(np.float64(sink) - np.float64(m))
        for j in range(n):
            e = np.exp(scores[g, j] - m)
            scores[g, j] = e
            total += e
        denom[g] = total

    acc = np.zeros((G, D), np.float32)
    _pv_rows(scores, 0, v_cache, s0, n0, hk, acc)
    _pv_rows(scores, n0, v_cache, 0, n1, hk, acc)
    _pv_rows(scores, n0 + n1, v_new, r0, nr, hk, acc)
    for g in range(G):
        inv = 1.0 / denom[g]
        for d in range(D):
            out[t, h0 + g, d] = np.float32(acc[g, d] * inv)


@njit(parallel=True, cache=True)
def _attention(q, k_new, v_new, k_cache, v_cache, start, window, sinks, scale, out):
    T = q.shape[0]
    for task in prange(k_new.shape[1] * T):
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

    q ``[T, Hq, D]``; k_new, v_new ``[T, Hkv, D]``; k_cache, v_cache ``[S, Hkv, D]``;
    sinks ``[Hq]``; out ``[T, Hq, D]`` (written). ``window`` 0 means full attention.
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
    if k_cache.ndim != 3 or k_cache.shape[1:] != (Hkv, D):
        raise ValueError(f"k_cache must be [S, {Hkv}, {D}], got shape {k_cache.shape}")
    v_cache = as_input(v_cache, "v_cache", k_cache.shape)
    sinks = as_input(sinks, "sinks", (Hq,))
    check_output(out, "out", q.shape)
    start, window = int(start), int(window)
    if start < 0 or window < 0:
        raise ValueError("start and window must be >= 0")
    S = k_cache.shape[0]
    needed = min(start, window - 1) if window > 0 else start  # cached positions the block sees
    if S < needed:
        raise ValueError(f"cache of {S} slots cannot hold the {needed} earlier positions this block attends to")
    if T:
        _attention(q, k_new, v_new, k_cache, v_cache, start, window, sinks, np.float32(scale), out)
