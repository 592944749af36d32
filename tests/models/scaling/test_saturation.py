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
