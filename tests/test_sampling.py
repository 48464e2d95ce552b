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
