"""Beta-Binomial coverage and the exp(a k^b) law: closed forms, and recovery of known
parameters from data simulated from each model."""

import functools

import jax
import numpy as np
import pytest
from scipy import integrate, stats

from ppl_models.scaling.coverage import (
    beta_coverage,
    fit_beta_binomial,
    fit_coverage_power_law,
    fit_power_law_to_pass_at_k,
)
from ppl_models.scaling.passk import pass_at_k_curve

from . import sim


def test_beta_coverage_is_one_minus_expected_failure():
    for a, b, k in [(0.3, 1.5, 1), (0.3, 1.5, 37), (2.0, 5.0, 4), (0.05, 0.7, 1000)]:
        want, _ = integrate.quad(lambda p: (1 - p) ** k * stats.beta.pdf(p, a, b), 0, 1,
                                 limit=200, points=[1e-6, 1e-3])
        assert beta_coverage(k, a, b) == pytest.approx(1 - want, rel=1e-6, abs=1e-9)
    assert beta_coverage(0, 0.5, 0.5) == 0.0


def test_power_law_tail_of_a_beta_law():
    # 1 - coverage(k) ~ Gamma(a+b)/Gamma(b) k^-a: the heavy left tail behind exp(a k^b).
    from scipy.special import gammaln

    a, b = 0.3, 2.0
    k = 1e6
    approx = np.exp(gammaln(a + b) - gammaln(b)) * k ** (-a)
    assert 1 - beta_coverage(k, a, b) == pytest.approx(approx, rel=1e-3)


@functools.lru_cache(maxsize=None)
def _bb_fit(seed=0):
    _, problem, correct, *_ = sim.samples(seed)
    n = np.bincount(problem)
    c = np.bincount(problem, weights=correct).astype(int)
    return fit_beta_binomial(n, c, key=jax.random.key(seed), **sim.DRAWS)


@pytest.mark.slow  # 11 s statistical recovery
def test_beta_binomial_recovers_known_parameters():
    fit = _bb_fit(0)
    assert int(np.sum(fit.result.diagnostics["divergences"])) == 0
    s = fit.summary(level=0.95)
    assert s["alpha"]["ci_low"] < sim.ALPHA < s["alpha"]["ci_high"]
    assert s["beta"]["ci_low"] < sim.BETA < s["beta"]["ci_high"]
    # The benchmark's coverage, extrapolated 60x beyond the 16 samples drawn, covers the coverage
    # of the problems' true rates (the population curve is checked by the calibration test).
    p = sim.samples(0)[0]
    k = np.array([1, 16, 100, 1000])
    band = fit.coverage(k, level=0.95)
    truth = np.mean(1 - (1 - p[:, None]) ** k[None, :], axis=0)
    assert np.all((band.lo < truth) & (truth < band.hi)), (band, truth)


@pytest.mark.slow  # 10-13 s: a NUTS fit compared with the unbiased estimator
def test_benchmark_coverage_agrees_with_pass_at_k_within_samples():
    fit = _bb_fit(0)
    k = np.array([1, 4, 16])
    pk = pass_at_k_curve(fit.n, fit.correct, k)
    band = fit.coverage(k, level=0.99)
    # The model's benchmark curve smooths the unbiased estimator: close, not equal.
    np.testing.assert_allclose(band.mean, pk.estimate, atol=0.02)
    assert band.mean[0] == pytest.approx(pk.estimate[0], abs=0.005)  # k=1: the mean of c/n
    # The benchmark band (these problems) is narrower than the population band (new problems).
    pop = fit.coverage(k, population=True, level=0.99)
    assert np.all(band.hi - band.lo < pop.hi - pop.lo)


def _calibration(reps, level=0.8):
    hits = 0
    total = 0
    for r in range(reps):
        rng = np.random.default_rng(1000 + r)
        p = rng.beta(sim.ALPHA, sim.BETA, sim.P)
        c = rng.binomial(sim.N, p)
        fit = fit_beta_binomial(np.full(sim.P, sim.N), c, key=jax.random.key(r), **sim.DRAWS)
        s = fit.summary(level)
        truth = {"alpha": sim.ALPHA, "beta": sim.BETA,
                 "mean": sim.ALPHA / (sim.ALPHA + sim.BETA)}
        for name, t in truth.items():
            hits += s[name]["ci_low"] < t < s[name]["ci_high"]
            total += 1
        band = fit.coverage([1000], population=True, level=level)
        hits += band.lo[0] < beta_coverage(1000, sim.ALPHA, sim.BETA) < band.hi[0]
        total += 1
    return hits, total


def test_beta_binomial_intervals_calibrated_over_simulations():
    _bb_fit(0)  # compiled once; refits of the same shapes reuse it
    hits, total = _calibration(8)
    assert 0.55 * total <= hits <= total, (hits, total)  # nominal 0.8 on 32 correlated checks


@pytest.mark.slow
def test_beta_binomial_intervals_calibrated_over_many_simulations():
    hits, total = _calibration(40)
    assert 0.7 * total <= hits <= 0.9 * total, (hits, total)


def _simulate_power_law(rng, a, b, k, sd):
    y = np.log(-a) + b * np.log(k) + rng.normal(0, sd, k.size)
    return np.exp(-np.exp(y))  # coverage points whose log(-log) has noise sd


def _power_law_se(cov, sd):
    return sd * cov * -np.log(cov)  # the delta method, inverted


@functools.lru_cache(maxsize=None)
def _power_law_fit(seed):
    rng = np.random.default_rng(seed)
    k = np.unique(np.round(np.geomspace(1, 64, 12)))
    a, b, sd = -1.2, -0.45, 0.05
    cov = _simulate_power_law(rng, a, b, k, sd)
    return fit_coverage_power_law(k, cov, _power_law_se(cov, sd), key=jax.random.key(seed),
                                  **sim.DRAWS), (a, b)


@pytest.mark.slow  # 7 s statistical recovery
def test_power_law_recovers_known_parameters_and_extrapolates():
    fit, (a, b) = _power_law_fit(0)
    s = fit.summary(level=0.95)
    assert s["a"]["ci_low"] < a < s["a"]["ci_high"]
    assert s["b"]["ci_low"] < b < s["b"]["ci_high"]
    k = np.array([1000, 10_000])
    band = fit.coverage(k, level=0.95)
    truth = np.exp(a * k**b)
    assert np.all((band.lo < truth) & (truth < band.hi))
    assert np.all(band.hi - band.lo > 0)


def test_power_law_intervals_calibrated_over_simulations():
    hits = total = 0
    for seed in range(8):
        fit, (a, b) = _power_law_fit(seed)
        s = fit.summary(level=0.8)
        hits += (s["a"]["ci_low"] < a < s["a"]["ci_high"]) + (s["b"]["ci_low"] < b < s["b"]["ci_high"])
        total += 2
    assert 0.55 * total <= hits <= total, (hits, total)


def test_power_law_exponent_tracks_the_beta_tail():
    # With a heavy left tail (p ~ Beta(alpha, beta)) the fitted b is near -alpha.
    fit = _bb_fit(0)
    pk = pass_at_k_curve(fit.n, fit.correct)
    pl = fit_power_law_to_pass_at_k(pk, key=jax.random.key(3), **sim.DRAWS)
    b = pl.summary(0.95)["b"]
    assert -sim.ALPHA - 0.2 < b["mean"] < -sim.ALPHA + 0.2


def test_power_law_needs_three_points():
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_coverage_power_law([1, 2, 4], [0.5, 1.0, 1.0], key=jax.random.key(0))


@pytest.mark.slow
def test_zero_inflated_recovers_unsolvable_fraction_and_plateau():
    rng = np.random.default_rng(5)
    P, n, pi0 = 300, 32, 0.25
    p = np.where(rng.random(P) < pi0, 0.0, rng.beta(1.0, 2.0, P))
    c = rng.binomial(n, p)
    fit = fit_beta_binomial(np.full(P, n), c, key=jax.random.key(0), zero_inflated=True,
                            **sim.DRAWS)
    s = fit.summary(0.95)
    assert s["unsolvable"]["ci_low"] < pi0 < s["unsolvable"]["ci_high"]
    band = fit.coverage([100_000], population=True, level=0.95)
    assert band.lo[0] < 1 - pi0 < band.hi[0]
