"""grouped_matvec and matvecs (batched decode steps) against expert_matvec and matvec, bit for bit.

A server decodes several requests in one pass; each request's logits must be the same bits as
if it ran alone (docs/design.md §2.2). So the grouped kernels must compute every (vector, row)
product exactly as the one-vector kernels do, on every kernel path and in both precisions.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_kernels import TYPES, make_weights, same_bits

import gptoss_kernels as gk
from gptoss_kernels import expert_matvec, grouped_matvec, matvec, matvecs
from gptoss_kernels import kernel_sets
from gptoss_kernels.kernel_sets import PRECISIONS


@pytest.fixture(params=kernel_sets.available_paths())
def kernel_path(request):
    old = gk.set_kernel_path(request.param)
    yield request.param
    gk.set_kernel_path(old)


# rows: not a multiple of the row chunk (8), odd (the last MXFP4 row's masked step); cols: a
# partial integer step (160) and the real width (2880)
@pytest.mark.parametrize("rows, cols", [(45, 160), (13, 2880)])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", list(TYPES))
def test_grouped_matvec_is_expert_matvec_bit_for_bit(kernel_path, precision, name, rows, cols):
    rng = np.random.default_rng(rows + cols)
    w3, _ = make_weights(name, rng, (5, rows, cols))
    groups = np.array([0, 3, 4], dtype=np.int64)
    starts = np.array([0, 2, 3, 7], dtype=np.int64)  # groups of 2, 1 and 4 vectors
    x = (rng.standard_normal((7, cols)) * 10.0 ** rng.uniform(-3, 2, (7, 1))).astype(np.float32)
    got = np.full((7, rows), np.nan, np.float32)
    grouped_matvec(TYPES[name][0], w3, groups, starts, x, got, precision)
    each = np.repeat(groups, np.diff(starts))
    want = np.empty_like(got)
    expert_matvec(TYPES[name][0], w3, each, x, want, precision)
    assert same_bits(got, want)
    alone = np.empty(rows, np.float32)  # and each vector by itself: the decode step of one token
    for p in range(7):
        expert_matvec(TYPES[name][0], w3, each[p : p + 1], x[p : p + 1], alone[None], precision)
        assert same_bits(got[p], alone)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("name", list(TYPES))
def test_matvecs_is_matvec_per_row(kernel_path, precision, name):
    rng = np.random.default_rng(7)
    w, _ = make_weights(name, rng, (45, 160))
    x = rng.standard_normal((5, 160)).astype(np.float32)
    got = np.empty((5, 45), np.float32)
    matvecs(TYPES[name][0], w, x, got, precision)
    for t in range(5):
        one = np.empty(45, np.float32)
        matvec(TYPES[name][0], w, x[t], one, precision)
        assert same_bits(got[t], one)


def test_grouped_matvec_rejects_bad_groups():
    rng = np.random.default_rng(1)
    w3, _ = make_weights("Q8_0", rng, (3, 8, 64))
    x = np.zeros((4, 64), np.float32)
    out = np.zeros((4, 8), np.float32)
    for experts, starts in (([0, 1], [0, 2, 3]), ([0, 1], [0, 3, 2, 4][:3]), ([0, 3], [0, 2, 4]), ([0], [1, 4])):
        with pytest.raises(ValueError):
            grouped_matvec(gk.ggml_types.Q8_0, w3, np.array(experts), np.array(starts), x, out)
