"""Saturation F(N) = F_max (1 - (1-p)^N): the budget N* by hand, and the fit's recovery."""

import jax
import numpy as np
import pytest

from ppl_models.scaling.saturation import fit_saturation, saturation_budget, saturation_curve

from . import sim


def test_budget_hand_computed():
    # ln(0.001 / 0.08) / ln(0.9) = 41.59... -> 42
    assert saturation_budget(0.8, 0.1, 1e-3) == 42
    gain = lambda N: saturation_curve(N + 1, 0.8, 0.1) - saturation_curve(N, 0.8, 0.1)  # noqa
    assert gain(41) > 1e-3 > gain(42)
    assert saturation_budget(0.5, 0.01, 0.1) == 0  # F_max p <= eps: no sample is worth it
    assert saturation_budget(0.9, 1.0, 1e-3) == 1
    with pytest.raises(ValueError):
        saturation_budget(0.9, 0.0, 1e-3)


def test_budget_is_first_n_with_small_gain():
    rng = np.random.default_rng(0)
    for _ in range(100):
        f, p, eps = rng.uniform(0.1, 1), rng.uniform(0.001, 0.9), 10 ** rng.uniform(-5, -1)
        n = int(saturation_budget(f, p, eps))
        gains = f * p * (1 - p) ** np.arange(n + 1)  # gain of sample N+1 at N = 0..n
        assert gains[n] < eps * (1 + 1e-9)
        if n > 0:
            assert gains[n - 1] >= eps * (1 - 1e-9)


@pytest.mark.slow  # 8-10 s statistical recovery; the budget rule is hand-checked above
def test_fit_recovers_parameters_and_budget():
    hits = total = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        N = 2.0 ** np.arange(8)
        f, p, se = 0.7, 0.15, 0.01
        acc = saturation_curve(N, f, p) + rng.normal(0, se, N.size)
        fit = fit_saturation(N, acc, se, key=jax.random.key(seed), **sim.DRAWS)
        s = fit.summary(0.9)
        b = fit.budget(1e-3, 0.9)
        nt = saturation_budget(f, p, 1e-3)
        for name, t in (("f_max", f), ("p", p)):
            hits += s[name]["ci_low"] < t < s[name]["ci_high"]
        hits += b["ci_low"] <= nt <= b["ci_high"]
        total += 3
    assert hits >= 0.7 * total, (hits, total)
    band = fit.curve([1, 1000], 0.99)
    assert band.lo[1] < f < band.hi[1]
    with pytest.raises(ValueError):
        fit_saturation([1], [0.5], key=jax.random.key(0))


def test_mixture_curve_and_budget_against_monte_carlo_and_the_single_rate_limit():
    from scipy import stats

    from ppl_models.scaling.saturation import mixture_saturation_budget, mixture_saturation_curve

    N = np.array([1, 4, 16, 64])
    p = stats.beta(0.3, 1.2).rvs(400_000, random_state=0)  # mean 0.2, kappa 1.5
    mc = np.array([0.8 * np.mean(1 - (1 - p) ** n) for n in N])
    assert mixture_saturation_curve(N, 0.8, 0.2, 1.5) == pytest.approx(mc, abs=3e-3)
    # kappa -> infinity: one rate
    assert mixture_saturation_curve(N, 0.8, 0.2, 1e9) == pytest.approx(saturation_curve(N, 0.8, 0.2), rel=1e-4)
    assert mixture_saturation_budget(0.8, 0.2, 1e9, 1e-3) == saturation_budget(0.8, 0.2, 1e-3)
    # N* is the first budget whose next sample gains less than eps
    for f, m, k, eps in ((0.7, 0.1, 0.5, 1e-3), (0.9, 0.4, 3.0, 1e-4), (0.5, 0.05, 0.2, 1e-2)):
        n = mixture_saturation_budget(f, m, k, eps)
        gain = lambda x: mixture_saturation_curve(x + 1, f, m, k) - mixture_saturation_curve(x, f, m, k)  # noqa: E731
        assert gain(n) < eps and (n == 0 or gain(n - 1) >= eps)
    assert mixture_saturation_budget(0.1, 0.5, 2.0, 0.5) == 0  # the first sample already gains < eps
    with pytest.raises(ValueError):
        mixture_saturation_budget(0.5, 0.5, -1.0, 1e-3)


@pytest.mark.slow  # 12 s statistical check, 3 seeds
def test_mixture_predicts_held_out_budgets_of_mixed_difficulty():
    # Problems of four difficulties (pass@1 0.5, 0.08, 0.01 and 0): fitted on budgets 1..16, the
    # single-rate form saturates too early and its band at 64 lies below the truth; the Beta
    # mixture over difficulty covers the expected accuracy at the held-out 32 and 64.
    N = np.array([1, 2, 4, 8, 16, 32, 64.0])
    fit, held = N <= 16, N > 16
    for seed in range(3):
        rng = np.random.default_rng(seed)
        p = rng.choice([0.5, 0.08, 0.01, 0.0], size=400, p=[0.4, 0.3, 0.2, 0.1])
        truth = np.array([np.mean(1 - (1 - p) ** n) for n in N])
        first = rng.geometric(np.maximum(p, 1e-300))  # the first success; nested in the budget
        acc = np.array([np.mean(first <= n) for n in N])
        se = np.sqrt(acc * (1 - acc) / p.size)
        mix = fit_saturation(N[fit], acc[fit], se[fit], key=jax.random.key(seed), mixture=True, **sim.DRAWS)
        band = mix.curve(N[held], 0.9)
        assert np.all((band.lo <= truth[held]) & (truth[held] <= band.hi)), (seed, band, truth[held])
        assert "kappa" in mix.summary() and mix.budget(1e-3)["median"] > 16
        single = fit_saturation(N[fit], acc[fit], se[fit], key=jax.random.key(seed), **sim.DRAWS)
        assert single.curve([64], 0.9).hi[0] < truth[-1]
