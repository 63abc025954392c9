"""Statistics of `rolevec sweep`: bootstrap CIs, exact McNemar, Holm."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from rolevec_lmeval.sweep_stats import accuracy, bits, holm, paired


def test_bits():
    assert bits("0110").tolist() == [0, 1, 1, 0]


def test_accuracy_ci_brackets_the_mean():
    x = (np.random.default_rng(0).random(200) < 0.3).astype(np.int8)
    a = accuracy(x, seed=1)
    assert a.n == 200 and a.lo < a.acc < a.hi
    assert a.hi - a.lo == pytest.approx(2 * 1.96 * np.sqrt(0.3 * 0.7 / 200), rel=0.3)
    assert accuracy(x, seed=1) == a  # seeded


def test_accuracy_degenerate_and_empty():
    assert accuracy(np.ones(5, np.int8)) == (accuracy(np.ones(5, np.int8)))
    one = accuracy(np.ones(5, np.int8))
    assert (one.acc, one.lo, one.hi) == (1.0, 1.0, 1.0)
    assert np.isnan(accuracy(np.zeros(0, np.int8)).acc)


def test_paired_mcnemar_is_exact_binomial_on_discordant_pairs():
    base = np.array([1, 1, 0, 0, 0, 0, 0, 0, 1, 0] * 5, np.int8)
    steer = np.array([1, 0, 1, 1, 1, 0, 1, 0, 1, 1] * 5, np.int8)
    p = paired(steer, base, seed=0)
    assert (p.gained, p.lost) == (25, 5)
    assert p.p == pytest.approx(stats.binomtest(25, 30, 0.5).pvalue)
    assert p.delta == pytest.approx(0.4) and p.lo < p.delta < p.hi


def test_paired_identical_is_null():
    x = np.array([1, 0, 1, 1], np.int8)
    p = paired(x, x)
    assert (p.delta, p.p, p.lo, p.hi) == (0.0, 1.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        paired(x, x[:2])


def _holm_reference(ps, alpha):
    """Brute force: reject H_(i) iff for all j <= i, p_(j) <= alpha / (m - j + 1)."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    reject = [False] * len(ps)
    for rank, i in enumerate(order):
        if ps[i] > alpha / (len(ps) - rank):
            break
        reject[i] = True
    return reject


@pytest.mark.parametrize("ps", [[0.01, 0.04, 0.03, 0.005], [0.5, 0.001, 0.02], [0.2]])
def test_holm_matches_the_step_down_definition(ps):
    adj = holm(ps)
    for alpha in (0.01, 0.025, 0.05, 0.1):
        assert [a <= alpha for a in adj] == _holm_reference(ps, alpha)
    assert all(a >= p for a, p in zip(adj, ps, strict=True)) and max(adj) <= 1


def test_holm_is_monotone_in_p():
    ps = [0.03, 0.001, 0.2, 0.04, 0.04]
    adj = holm(ps)
    for i, j in itertools.combinations(range(len(ps)), 2):
        if ps[i] <= ps[j]:
            assert adj[i] <= adj[j]
    assert holm([]) == []


def test_direction_sha_depends_only_on_the_used_directions():
    import torch

    from rolevec_lmeval.sweep_stats import direction_sha
    from rolevec_lmeval.vectors import RoleVector

    d = torch.randn(3, 4, 8)
    full = RoleVector("r", d, d - 1)
    trimmed = RoleVector("r", d[1:].clone(), meta={"note": "fewer positions, other metadata"})
    assert direction_sha(full, -1) == direction_sha(trimmed, -1) != direction_sha(full, -2)
    assert direction_sha(full, -1, "centered") != direction_sha(full, -1)
