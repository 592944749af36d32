"""pass@k: the estimator against enumeration of subsets; the average and its interval."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from ppl_models.scaling.passk import default_k_grid, pass_at_k, pass_at_k_curve


def _enumerate(outcomes, k):
    """Fraction of k-subsets of the samples that contain a correct one."""
    subsets = list(itertools.combinations(range(len(outcomes)), k))
    return sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_matches_enumeration_of_subsets(n):
    rng = np.random.default_rng(n)
    for c in range(n + 1):
        outcomes = rng.permutation([1] * c + [0] * (n - c))
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_enumerate(outcomes, k), abs=1e-12)


def test_vectorised_over_problems_and_k():
    n = np.array([5, 6, 7])
    c = np.array([0, 2, 7])
    k = np.array([1, 3])
    got = pass_at_k(n[:, None], c[:, None], k[None, :])
    want = [[_enumerate([1] * ci + [0] * (ni - ci), kk) for kk in k] for ni, ci in zip(n, c)]
    np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("n,c,k", [(10_000, 1, 5_000), (10_000, 3, 1), (5_000, 4_000, 999),
                                   (2_000, 17, 1_500), (100_000, 2, 10)])
def test_large_n_matches_exact_rationals(n, c, k):
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-12, abs=1e-15)


def test_edge_cases():
    assert pass_at_k(10, 0, 4) == 0.0
    assert pass_at_k(10, 10, 4) == 1.0
    assert pass_at_k(10, 7, 4) == 1.0  # n - c < k: every subset holds a correct sample
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    for bad in [(10, 3, 0), (10, 3, 11), (10, 11, 1), (0, 0, 1), (10, -1, 1), (10, 2.5, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)


def test_unbiased_for_one_minus_one_minus_p_to_the_k():
    # E over Binomial(n, p) of the estimator equals 1 - (1-p)^k exactly.
    n, p = 12, 0.23
    c = np.arange(n + 1)
    w = stats.binom.pmf(c, n, p)
    for k in (1, 4, 12):
        assert w @ pass_at_k(n, c, k) == pytest.approx(1 - (1 - p) ** k, abs=1e-12)


def test_curve_mean_and_t_interval():
    n = np.array([8, 8, 8, 8, 10])
    c = np.array([0, 1, 4, 8, 3])
    res = pass_at_k_curve(n, c, [1, 2, 8], level=0.95)
    per = pass_at_k(n[:, None], c[:, None], np.array([[1, 2, 8]]))
    np.testing.assert_allclose(res.estimate, per.mean(0))
    half = stats.t.ppf(0.975, 4) * per.std(0, ddof=1) / np.sqrt(5)
    np.testing.assert_allclose(res.ci_low, np.clip(per.mean(0) - half, 0, 1))
    np.testing.assert_allclose(res.ci_high, np.clip(per.mean(0) + half, 0, 1))
    d = res.to_dict()
    assert set(d) >= {"k", "estimate", "ci_low", "ci_high"} and d["k"] == [1, 2, 8]
    with pytest.raises(ValueError, match="k must satisfy"):
        pass_at_k_curve(n, c, [9])


def test_interval_covers_population_mean_at_nominal_rate():
    # Problems drawn from Beta(0.5, 1): the population pass@k is 1 - B(a, b+k)/B(a, b).
    from ppl_models.scaling.coverage import beta_coverage

    rng = np.random.default_rng(0)
    k = np.array([1, 4, 10])
    truth = beta_coverage(k, 0.5, 1.0)
    hits = {"t": 0, "bootstrap": 0}
    reps = 200
    for r in range(reps):
        p = rng.beta(0.5, 1.0, 60)
        c = rng.binomial(10, p)
        for method in hits:
            res = pass_at_k_curve(np.full(60, 10), c, k, level=0.9, interval=method,
                                  num_bootstrap=300, seed=r)
            hits[method] += np.all((res.ci_low <= truth) & (truth <= res.ci_high))
    for method, h in hits.items():
        # jointly over 3 correlated k's: between the marginal 0.9 and 0.9^3; allow MC error.
        assert 0.7 * reps <= h <= 0.97 * reps, (method, h)


def test_default_grid():
    g = default_k_grid(100)
    assert g[0] == 1 and g[-1] == 100 and np.all(np.diff(g) > 0) and set(range(1, 17)) <= set(g)
    assert default_k_grid(3).tolist() == [1, 2, 3]
