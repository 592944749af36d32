"""Imperfect verifiers: closed forms on hand-computed cases, and the Bayesian fit."""

import functools

import jax
import numpy as np
import pytest

from ppl_models.scaling.verifiers import (
    accuracy_at_k,
    accuracy_ceiling,
    expected_utility,
    fit_verifier,
    marginal_utility,
    optimal_k,
    rejection_prob,
    verifier_data,
)

from . import sim

# Two task types, p = (1/2, 1/2), r = (0.8, 0.1), c = 0.9, s = 0.7:
#   type 1: u = 0.9*0.8 - 0.3*0.2 = 0.66,  beta = 1 - 0.72 - 0.06 = 0.22
#   type 2: u = 0.9*0.1 - 0.3*0.9 = -0.18, beta = 1 - 0.09 - 0.27 = 0.64
#   Delta(1) = 0.24, Delta(2) = (0.66*0.22 - 0.18*0.64)/2 = 0.015,
#   Delta(3) = (0.66*0.0484 - 0.18*0.4096)/2 = -0.020892  -> K* = 2, U(2) = 0.255
#   A_inf = (0.72/0.78 + 0.09/0.36)/2 = 0.5865384615...
R, P_, C, S = np.array([0.8, 0.1]), np.array([0.5, 0.5]), 0.9, 0.7


def test_hand_computed_case():
    assert accuracy_ceiling(R, C, S, P_) == pytest.approx((0.72 / 0.78 + 0.09 / 0.36) / 2)
    np.testing.assert_allclose(rejection_prob(R, C, S), [0.22, 0.64])
    np.testing.assert_allclose(marginal_utility([1, 2, 3], R, C, S, P_),
                               [0.24, 0.015, -0.020892], atol=1e-12)
    np.testing.assert_allclose(expected_utility([0, 1, 2, 3], R, C, S, P_),
                               [0.0, 0.24, 0.255, 0.234108], atol=1e-12)
    assert optimal_k(R, C, S, P_) == 2


def test_single_type_ceiling():
    # r = 0.5, c = 0.9, s = 0.8: 0.45 / (0.45 + 0.1).
    assert accuracy_ceiling([0.5], 0.9, 0.8) == pytest.approx(0.45 / 0.55)
    # A perfect verifier solves every solvable type; r = 0 types stay unsolved.
    assert accuracy_ceiling([0.3, 0.0], 1.0, 1.0) == pytest.approx(0.5)


def test_utility_is_the_sum_of_marginals_and_accuracy_tends_to_ceiling():
    rng = np.random.default_rng(0)
    r = rng.random(5)
    c, s = 0.8, 0.75
    K = np.arange(1, 41)
    np.testing.assert_allclose(expected_utility(K, r, c, s, value_false_positive=-2.0),
                               np.cumsum(marginal_utility(K, r, c, s, value_false_positive=-2.0)),
                               atol=1e-12)
    assert accuracy_at_k(10_000, r, c, s)[0] == pytest.approx(accuracy_ceiling(r, c, s))


def test_utility_against_simulation():
    rng = np.random.default_rng(1)
    r, c, s, K, vfp = np.array([0.6, 0.2]), 0.85, 0.6, 3, -1.5
    M = 200_000
    typ = rng.integers(0, 2, M)
    total = np.zeros(M)
    done = np.zeros(M, bool)
    for _ in range(K):
        correct = rng.random(M) < r[typ]
        accept = np.where(correct, rng.random(M) < c, rng.random(M) < 1 - s) & ~done
        total += accept * np.where(correct, 1.0, vfp)
        done |= accept
    assert total.mean() == pytest.approx(expected_utility(K, r, c, s, value_false_positive=vfp)[0],
                                         abs=4 * total.std() / np.sqrt(M))


def test_optimal_k_is_the_argmax_of_utility_and_edge_cases():
    rng = np.random.default_rng(2)
    for _ in range(50):
        r = rng.random(3)
        c, s = rng.uniform(0.5, 1), rng.uniform(0.3, 1)
        k = optimal_k(r, c, s, value_false_positive=-3.0)
        U = expected_utility(np.arange(0, 2001), r, c, s, value_false_positive=-3.0)
        if np.isfinite(k):
            assert U[int(k)] == pytest.approx(U.max(), abs=1e-12)
        else:
            assert np.all(np.diff(U) > -1e-15)
    assert optimal_k([0.9], 0.9, 0.9) == np.inf  # every attempt has positive value
    assert optimal_k([0.05], 0.9, 0.5) == 0  # the first attempt already loses: abstain
    with pytest.raises(ValueError):
        accuracy_ceiling([1.2], 0.9, 0.9)
    with pytest.raises(ValueError):
        expected_utility(1, [0.5], 0.9, 0.9, value_false_positive=1.0)


def test_verifier_data_counts():
    d = verifier_data(["a", "a", "b", "b", "b"], [1, 0, 1, 1, 0], [1, 1, 0, 1, 0])
    assert d.names == ["a", "b"]
    np.testing.assert_array_equal(d.n, [2, 3])
    np.testing.assert_array_equal(d.correct, [1, 2])
    np.testing.assert_array_equal(d.accepted_correct, [1, 1])
    np.testing.assert_array_equal(d.accepted_incorrect, [1, 0])
    with pytest.raises(ValueError, match="0/1"):
        verifier_data([0], [2], [1])


@functools.lru_cache(maxsize=None)
def _fit():
    p, problem, correct, accepted, _ = sim.samples(0)
    return fit_verifier(verifier_data(problem, correct, accepted), key=jax.random.key(0),
                        **sim.DRAWS), p


@pytest.mark.slow  # 27 s statistical recovery; the model's pieces are tested above
def test_fit_recovers_rates_ceiling_and_optimal_k():
    fit, p = _fit()
    s = fit.summary(0.95)
    assert s["c"]["ci_low"] < sim.C_TRUE < s["c"]["ci_high"]
    assert s["s"]["ci_low"] < sim.S_TRUE < s["s"]["ci_high"]
    ceil = fit.ceiling(0.95)
    truth = accuracy_ceiling(p, sim.C_TRUE, sim.S_TRUE)
    assert ceil["ci_low"] < truth < ceil["ci_high"]
    k = fit.optimal_k(0.95)
    kt = optimal_k(p, sim.C_TRUE, sim.S_TRUE)
    assert k["ci_low"] <= kt <= k["ci_high"]
    assert fit.draws["r"].shape[1] == sim.P  # padding types dropped



@pytest.mark.slow
def test_fit_intervals_calibrated_over_simulations():
    # 90% intervals of c, s and the ceiling A_inf over 10 independent simulated data sets: each
    # covers its truth with probability 0.9 if the posterior is calibrated (expect 27 of 30).
    hits = total = 0
    for seed in range(1, 11):
        p, problem, correct, accepted, _ = sim.samples(seed)
        fit = fit_verifier(verifier_data(problem, correct, accepted), key=jax.random.key(seed), **sim.DRAWS)
        s = fit.summary(0.9)
        ceil = fit.ceiling(0.9)
        truth = accuracy_ceiling(p, sim.C_TRUE, sim.S_TRUE)
        hits += s["c"]["ci_low"] < sim.C_TRUE < s["c"]["ci_high"]
        hits += s["s"]["ci_low"] < sim.S_TRUE < s["s"]["ci_high"]
        hits += ceil["ci_low"] < truth < ceil["ci_high"]
        total += 3
    assert 0.7 * total <= hits, (hits, total)


def test_per_type_model_likelihood_is_per_type_binomials():
    # The per-type model's log density at fixed values, against scipy: priors + per-type
    # Binomial(correct_j, c_j) and Binomial(n_j - correct_j, 1 - s_j); padding types add 0.
    from numpyro.infer.util import log_density
    from scipy import stats

    from ppl_models.scaling.verifiers import verifier_model

    n, cor = np.array([10, 20, 0]), np.array([4, 15, 0])
    ac, ai = np.array([3, 12, 0]), np.array([2, 1, 0])
    mask = np.array([True, True, False])
    v = {"mean": 0.4, "concentration": 3.0, "c_mean": 0.7, "c_concentration": 5.0,
         "s_mean": 0.8, "s_concentration": 6.0, "r": np.array([0.3, 0.7, 0.5]),
         "c": np.array([0.9, 0.6, 0.5]), "s": np.array([0.75, 0.95, 0.5])}
    got, _ = log_density(verifier_model, (n, cor, ac, ai, mask), {"per_type": True}, v)
    # Beta(1, 1) priors of mean, c_mean, s_mean add 0; LogNormal(1, 1.5) and LogNormal(2, 1.5)
    want = (stats.lognorm.logpdf(3.0, 1.5, scale=np.e)
            + stats.lognorm.logpdf(5.0, 1.5, scale=np.e ** 2)
            + stats.lognorm.logpdf(6.0, 1.5, scale=np.e ** 2)
            + stats.beta.logpdf(v["r"], 0.4 * 3, 0.6 * 3).sum()
            + stats.beta.logpdf(v["c"], 0.7 * 5, 0.3 * 5).sum()
            + stats.beta.logpdf(v["s"], 0.8 * 6, 0.2 * 6).sum()
            + stats.binom.logpmf(cor[:2], n[:2], v["r"][:2]).sum()
            + stats.binom.logpmf(ac[:2], cor[:2], v["c"][:2]).sum()
            + stats.binom.logpmf(ai[:2], n[:2] - cor[:2], 1 - v["s"][:2]).sum())
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_type_rates_broadcast_shared_and_per_type_draws():
    from ppl_models.scaling.verifiers import VerifierFit

    data = verifier_data(["a", "b"], [1, 0], [1, 0])
    S = 1000
    r = np.tile([0.2, 0.6], (S, 1))
    shared = VerifierFit(None, data, {"r": r, "c": np.full(S, 0.8), "s": np.full(S, 0.7)})
    per = VerifierFit(None, data, {"r": r, "c": np.tile([0.9, 0.5], (S, 1)),
                                   "s": np.tile([0.6, 0.95], (S, 1))}, per_type=True)
    assert shared.type_rates()["b"]["c"]["mean"] == pytest.approx(0.8)
    assert per.type_rates()["b"]["c"]["mean"] == pytest.approx(0.5)
    assert per.type_rates()["a"]["s"]["mean"] == pytest.approx(0.6)
    truth = accuracy_ceiling([0.2, 0.6], np.array([0.9, 0.5]), np.array([0.6, 0.95]))
    assert per.ceiling()["mean"] == pytest.approx(float(truth))
    assert per.ceiling()["mean"] != pytest.approx(shared.ceiling()["mean"])


@pytest.mark.slow
def test_per_type_fit_recovers_per_type_rates():
    # Four task types whose verifier behaves differently (~20 s: one NUTS compile).
    rng = np.random.default_rng(3)
    r_true = np.array([0.3, 0.5, 0.6, 0.4])
    c_true = np.array([0.95, 0.6, 0.85, 0.7])
    s_true = np.array([0.9, 0.7, 0.5, 0.95])
    per_type = 500
    typ = np.repeat(np.arange(4), per_type)
    correct = (rng.random(typ.size) < r_true[typ]).astype(np.int64)
    u = rng.random(typ.size)
    accepted = np.where(correct == 1, u < c_true[typ], u < 1 - s_true[typ]).astype(np.int64)
    data = verifier_data(np.array(["a", "b", "c", "d"])[typ], correct, accepted)
    fit = fit_verifier(data, key=jax.random.key(1), per_type=True, **sim.DRAWS)
    assert fit.draws["c"].shape[1] == 4  # padding types dropped
    rates = fit.type_rates(0.99)
    for j, name in enumerate("abcd"):
        for site, truth in (("c", c_true[j]), ("s", s_true[j])):
            d = rates[name][site]
            assert d["ci_low"] < truth < d["ci_high"], (name, site, d, truth)
            assert abs(d["mean"] - truth) < 0.06, (name, site, d, truth)
    truth = accuracy_ceiling(r_true, c_true, s_true)
    ceil = fit.ceiling(0.99)
    assert ceil["ci_low"] < truth < ceil["ci_high"]
    assert set(fit.summary()) >= {"c_mean", "s_mean"}
    # one shared c could not hold type a's (0.95) and type b's (0.6): the per-type intervals
    # are apart
    assert rates["b"]["c"]["ci_high"] < rates["a"]["c"]["ci_low"]
