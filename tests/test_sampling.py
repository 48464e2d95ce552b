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
