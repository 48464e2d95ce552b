"""Sampling: greedy, seeds, and that each filter removes what it should."""

from __future__ import annotations

import numpy as np
import pytest

from gptoss_cli.sampling import Sampler, SamplingParams


def _draws(params: SamplingParams, logits: np.ndarray, n: int = 400) -> np.ndarray:
    s = Sampler(params)
    return np.array([s.sample(logits) for _ in range(n)])


LOGITS = np.log(np.array([0.5, 0.2, 0.15, 0.1, 0.05]))


def test_greedy_takes_the_argmax():
    assert Sampler(SamplingParams(temperature=0)).sample(np.array([0.1, 3.0, 2.9])) == 1


def test_same_seed_same_draws_other_seed_differs():
    a = _draws(SamplingParams(seed=7), LOGITS)
    b = _draws(SamplingParams(seed=7), LOGITS)
    c = _draws(SamplingParams(seed=8), LOGITS)
    assert (a == b).all() and (a != c).any()


def test_unfiltered_sampling_follows_the_distribution():
    d = _draws(SamplingParams(seed=0), LOGITS, 20000)
    freq = np.bincount(d, minlength=5) / d.size
    np.testing.assert_allclose(freq, np.exp(LOGITS), atol=0.015)


def test_top_k_top_p_min_p_cut_the_tail():
    assert set(_draws(SamplingParams(top_k=2, seed=1), LOGITS)) == {0, 1}
    assert set(_draws(SamplingParams(top_p=0.69, seed=1), LOGITS)) == {0, 1}
    assert set(_draws(SamplingParams(top_p=0.71, seed=1), LOGITS)) == {0, 1, 2}
    assert set(_draws(SamplingParams(min_p=0.25, seed=1), LOGITS)) == {0, 1, 2}


def test_repeat_penalty_demotes_recent_tokens():
    s = Sampler(SamplingParams(temperature=0, repeat_penalty=2.0))
    assert s.sample(np.array([2.0, 1.5]), history=[0]) == 1
    assert s.sample(np.array([-1.0, -1.5]), history=[1]) == 0


@pytest.mark.parametrize(
    "kwargs, word",
    [({"temperature": -1}, "temperature"), ({"top_p": 0}, "top-p"), ({"top_k": -2}, "top-k"),
     ({"min_p": 2}, "min-p"), ({"repeat_penalty": 0}, "repeat-penalty")],
)
def test_impossible_values_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        Sampler(SamplingParams(**kwargs))


def _reference_sample(params: SamplingParams, rng: np.random.Generator, z: np.ndarray) -> int:
    """The filters over a full stable sort, written plainly."""
    order = np.argsort(-z, kind="stable")
    if params.top_k:
        order = order[: params.top_k]
    cand = z[order]
    probs = np.exp(cand - cand[0])
    probs /= probs.sum()
    if params.top_p < 1.0:
        keep = int(np.searchsorted(np.cumsum(probs), params.top_p) + 1)
        order, cand, probs = order[:keep], cand[:keep], probs[:keep]
    if params.min_p > 0.0:
        keep = probs >= params.min_p * probs[0]
        order, cand = order[keep], cand[keep]
    final = np.exp((cand - cand[0]) / params.temperature)
    return int(order[rng.choice(len(order), p=final / final.sum())])


@pytest.mark.parametrize("spread", [0.1, 1.0, 8.0])
@pytest.mark.parametrize(
    "kwargs",
    [{"top_k": 40}, {"top_p": 0.9}, {"top_p": 0.3}, {"min_p": 0.05}, {"top_p": 0.95, "min_p": 0.01},
     {"top_k": 2000, "top_p": 0.8, "temperature": 0.7}],
)
def test_partial_sort_draws_what_a_full_sort_draws(kwargs, spread):
    z = np.random.default_rng(3).standard_normal(50000) * spread
    params = SamplingParams(seed=11, **kwargs)
    fast, ref_rng = Sampler(params), np.random.default_rng(11)
    assert [fast.sample(z) for _ in range(30)] == [_reference_sample(params, ref_rng, z) for _ in range(30)]


def test_unfiltered_draws_on_a_large_vocabulary_are_valid():
    z = np.random.default_rng(0).standard_normal(201088).astype(np.float32) * 3
    s = Sampler(SamplingParams(seed=1))
    draws = [s.sample(z) for _ in range(20)]
    assert all(0 <= d < z.size for d in draws)


# -- the allowed mask (structured output) ---------------------------------------------------


def _mask(n: int, allowed) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[list(allowed)] = True
    return m


def test_greedy_with_a_mask_takes_the_best_allowed_token():
    s = Sampler(SamplingParams(temperature=0))
    assert s.sample(np.array([0.1, 3.0, 2.9, 2.9]), allowed=_mask(4, [0, 2, 3])) == 2  # tie: the lower id


def test_masked_draws_keep_the_allowed_tokens_proportions():
    s = Sampler(SamplingParams(seed=0))
    d = np.array([s.sample(LOGITS, allowed=_mask(5, [1, 3, 4])) for _ in range(20000)])
    assert set(d) == {1, 3, 4}
    p = np.exp(LOGITS[[1, 3, 4]])
    np.testing.assert_allclose(np.bincount(d, minlength=5)[[1, 3, 4]] / d.size, p / p.sum(), atol=0.015)


def test_filters_see_only_the_allowed_tokens():
    mask = _mask(5, [1, 2, 3, 4])
    s = Sampler(SamplingParams(top_k=2, seed=1))
    assert {s.sample(LOGITS, allowed=mask) for _ in range(300)} == {1, 2}
    s = Sampler(SamplingParams(min_p=0.6, seed=1))  # 0.15 / 0.2 passes, 0.1 / 0.2 does not
    assert {s.sample(LOGITS, allowed=mask) for _ in range(300)} == {1, 2}


def test_repeat_penalty_applies_to_allowed_tokens_by_id():
    s = Sampler(SamplingParams(temperature=0, repeat_penalty=4.0))
    z = np.array([5.0, 2.0, 1.5, 1.0])
    assert s.sample(z, history=[1, 0], allowed=_mask(4, [1, 2, 3])) == 2
    assert s.sample(z, history=[0], allowed=_mask(4, [1, 2, 3])) == 1  # a disallowed recent token changes nothing


def test_an_all_true_mask_draws_exactly_what_no_mask_draws():
    z = np.random.default_rng(5).standard_normal(3000) * 2
    for kwargs in ({}, {"top_k": 40}, {"top_p": 0.8}, {"min_p": 0.05, "repeat_penalty": 1.3}):
        a, b = Sampler(SamplingParams(seed=3, **kwargs)), Sampler(SamplingParams(seed=3, **kwargs))
        hist = [1, 2, 3]
        assert [a.sample(z, hist) for _ in range(30)] == [b.sample(z, hist, allowed=np.ones(z.size, bool)) for _ in range(30)]


@pytest.mark.parametrize("kwargs", [{"top_k": 40}, {"top_p": 0.9}, {"min_p": 0.05}, {"top_p": 0.8, "temperature": 0.7}])
def test_masked_draws_match_a_full_sort_with_disallowed_tokens_at_minus_infinity(kwargs):
    rng = np.random.default_rng(8)
    z = rng.standard_normal(20000) * 2
    mask = rng.random(z.size) < 0.3
    params = SamplingParams(seed=11, **kwargs)
    fast, ref_rng = Sampler(params), np.random.default_rng(11)
    cut = np.where(mask, z, -np.inf)
    draws = [fast.sample(z, allowed=mask) for _ in range(30)]
    assert all(mask[d] for d in draws)
    assert draws == [_reference_sample(params, ref_rng, cut) for _ in range(30)]


@pytest.mark.parametrize("mask, word", [(np.zeros(5, bool), "allows no token"), (np.ones(4, bool), "shape"),
                                        (np.ones(5, np.int8), "booleans")])
def test_unusable_masks_are_refused(mask, word):
    with pytest.raises(ValueError, match=word):
        Sampler(SamplingParams(seed=0)).sample(LOGITS, allowed=mask)
