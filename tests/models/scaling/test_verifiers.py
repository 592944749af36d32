"""Imperfect verifiers: closed forms on hand-computed cases, and the Bayesian fit."""

import functools

import jax
import numpy as np
import pytest

from models.scaling.verifiers import (
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
