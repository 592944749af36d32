"""Compute-optimal allocation: the dynamic programme against brute-force enumeration."""

import itertools

import numpy as np
import pytest

from ppl_models.scaling.allocation import allocate, difficulty_bins


def _brute(acc, counts, budgets, total):
    M, B, G = acc.shape
    P = counts.sum()
    best = -1
    for combo in itertools.product(range(M * G), repeat=B):
        cost = sum(counts[b] * budgets[o % G] for b, o in enumerate(combo))
        if cost <= total * P + 1e-9:
            val = sum(counts[b] * acc[o // G, b, o % G] for b, o in enumerate(combo)) / P
            best = max(best, val)
    return best


def test_dp_matches_enumeration():
    rng = np.random.default_rng(0)
    budgets = np.array([1, 2, 4, 8])
    for _ in range(20):
        M, B = rng.integers(1, 3), rng.integers(1, 4)
        acc = np.sort(rng.random((M, B, budgets.size)), axis=-1)  # more budget, more accuracy
        counts = rng.integers(1, 6, B)
        total = rng.uniform(1, 8)
        res = allocate(acc, counts, budgets, total)
        assert res.accuracy == pytest.approx(_brute(acc, counts, budgets, total), abs=1e-12)
        assert res.spent <= total + 1e-9
        # the reported allocation achieves the reported accuracy
        g = [list(budgets).index(b) for b in res.budget]
        got = sum(counts[b] * acc[res.method[b], b, g[b]] for b in range(B)) / counts.sum()
        assert got == pytest.approx(res.accuracy)
        assert res.gain >= -1e-12


def test_hand_case_and_errors():
    acc = np.array([[[0.1, 0.3, 0.5], [0.8, 0.9, 0.95]]])
    res = allocate(acc, [10, 10], [1, 2, 4], 2.5)
    assert res.budget.tolist() == [4, 1]
    assert res.accuracy == pytest.approx(0.65)
    assert res.uniform_budget == 2 and res.uniform_accuracy == pytest.approx(0.6)
    with pytest.raises(ValueError):
        allocate(acc, [10, 10], [1, 2, 4], 0.5)
    with pytest.raises(ValueError):
        allocate(acc[:, :1], [10, 10], [1, 2, 4], 2)


def test_difficulty_bins_are_quantiles():
    b = difficulty_bins(np.array([0.9, 0.1, 0.5, 0.3, 0.7]), 5)
    assert b.tolist() == [4, 0, 2, 1, 3]
    assert np.bincount(difficulty_bins(np.random.default_rng(0).random(100), 5)).tolist() == [20] * 5


def _null_outcomes(seed, P=200):
    """Three methods at four budgets, each solving problem i with the same probability p_i (no
    method and no budget is better): every allocation has expected gain 0, so any in-sample
    gain over uniform best-of-N is selection noise."""
    from ppl_models.scaling.allocation import allocate_from_outcomes

    rng = np.random.default_rng(seed)
    budgets = np.array([1, 2, 4, 8])
    p1 = rng.beta(0.5, 1.0, P)  # per-problem success probability
    outcomes = (rng.random((3, budgets.size, P)) < p1).astype(float)
    return allocate_from_outcomes(outcomes, budgets, p1, 3.0, num_bins=5, num_bootstrap=200, seed=seed)


def test_cross_fitted_gain_is_honest_under_the_null():
    # The in-sample gain picks the luckiest method per bin and scores it on the same problems:
    # optimistic. The cross-fitted gain is scored on problems its choice never saw, so under the
    # null its interval covers 0 and it is below the in-sample gain.
    covered = 0
    for seed in range(4):
        alloc, _ = _null_outcomes(seed)
        lo, hi = alloc.heldout_gain_interval
        assert lo < hi
        assert alloc.heldout_gain < alloc.gain
        assert alloc.gain_interval[0] > 0  # the in-sample interval claims a gain that is not there
        covered += lo <= 0 <= hi
        d = alloc.to_dict()
        assert d["heldout_gain_ci"] == [lo, hi] and d["heldout_gain"] == alloc.heldout_gain
    assert covered == 4
