"""The LLM-as-a-judge selection model: closed-form posterior, exact selection, the 1/k^2 decay,
a finite optimal k and an optimal temperature with a misspecified judge, determinism."""

import functools

import jax
import numpy as np
import pytest

from ppl_models.scaling.judge_selection import (
    blr_posterior,
    fit_judge_decay,
    judge_optimal_k,
    judge_optimal_temperature,
    blr_predictive,
    selection_errors,
    simulate_judge_selection,
)

# One grid of k and T for every simulation below, so they share one compiled program.
KS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TEMPS = (0.0, 0.1, 0.3, 1.0, 3.0, np.inf)
SIZES = dict(dim=16, num_train=64, noise=0.5, num_datasets=256, num_test=32, batch=128)


@functools.lru_cache(maxsize=None)
def _sim(seed: int, reward_overlap: float):
    return simulate_judge_selection(jax.random.key(seed), KS, TEMPS,
                                    reward_overlap=reward_overlap, **SIZES)


def test_posterior_matches_numpy():
    rng = np.random.default_rng(0)
    n, d, sigma, gamma = 12, 5, 0.7, 1.3
    X = rng.normal(size=(3, n, d))
    y = rng.normal(size=(3, n))
    post = blr_posterior(X.astype(np.float32), y.astype(np.float32), noise=sigma,
                         prior_scale=gamma)
    xs = rng.normal(size=(3, 4, d))
    m, v = blr_predictive(post, xs.astype(np.float32), noise=sigma)
    for b in range(3):
        prec = X[b].T @ X[b] / (d * sigma**2) + np.eye(d) / gamma**2
        cov = np.linalg.inv(prec)
        mean = cov @ X[b].T @ y[b] / (np.sqrt(d) * sigma**2)
        np.testing.assert_allclose(post.cov[b], cov, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(post.mean[b], mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(m[b], xs[b] @ mean / np.sqrt(d), rtol=1e-4, atol=1e-5)
        var = np.einsum("mi,ij,mj->m", xs[b], cov, xs[b]) / d + sigma**2
        np.testing.assert_allclose(v[b], var, rtol=1e-4)
    # one input per posterior
    m1, v1 = blr_predictive(post, xs[:, 0].astype(np.float32), noise=sigma)
    np.testing.assert_allclose(m1, m[:, 0], rtol=1e-5)
    np.testing.assert_allclose(v1, v[:, 0], rtol=1e-5)


def test_selection_errors_against_direct_softmax():
    rng = np.random.default_rng(1)
    c = rng.normal(size=(3, 7))
    truth, judge = rng.normal(size=3), rng.normal(size=3)
    temps = [0.0, 0.05, 1.0, np.inf]
    got = np.asarray(selection_errors(c, truth, judge, temps))  # [3, nT, 7]
    assert got.shape == (3, 4, 7)
    for i in range(3):
        err = (c[i] - truth[i]) ** 2
        R = -((c[i] - judge[i]) ** 2)
        for t, T in enumerate(temps):
            for k in range(1, 8):
                if T == 0:
                    want = err[np.argmax(R[:k])]
                elif np.isinf(T):
                    want = err[:k].mean()
                else:
                    w = np.exp((R[:k] - R[:k].max()) / T)
                    want = w @ err[:k] / w.sum()
                assert got[i, t, k - 1] == pytest.approx(want, rel=1e-4)


def test_teacher_best_of_k_decays_as_one_over_k_squared():
    r = _sim(0, 1.0)
    fit = fit_judge_decay(r, key=jax.random.key(1), k_min=32, num_boot=300)
    assert fit.slope == pytest.approx(-2.0, abs=0.1)
    assert fit.ci_low < fit.slope < fit.ci_high and fit.ci_high - fit.ci_low < 0.2
    # the leading coefficient: k^2 E(k) -> C = E[pi s^2 exp(z^2)]
    assert r.error[0, -1] * KS[-1] ** 2 == pytest.approx(r.bok_coefficient, rel=0.2)
    # k = 1 (and T = inf for every k) is the closed form E[(m - y*)^2 + s^2]
    assert r.error[0, 0] == pytest.approx(r.k1_error, abs=4 * r.se[0, 0])
    assert np.allclose(r.error[-1], r.k1_error, atol=4 * r.se[-1].max())
    # with the teacher the error falls with k at every temperature but T = inf
    assert np.all(np.diff(r.error[:-1], axis=1) < 0)


def test_misspecified_judge_has_finite_optimal_k_and_temperature():
    r = _sim(0, 0.8)
    best = judge_optimal_k(r, key=jax.random.key(2), num_boot=300)
    assert best.interior and best.prob_interior > 0.95
    assert 1 < best.value < KS[-1]
    assert r.error[0, -1] > best.error + 10 * r.se[0, -1]  # more samples hurt
    assert r.error[0, -1] == pytest.approx(r.judge_error, rel=0.05)  # k -> inf: the judge's error
    t = judge_optimal_temperature(r, key=jax.random.key(3), k=64, num_boot=300)
    assert t.interior and 0 < t.value < np.inf and t.prob_interior > 0.95


def test_determinism_for_a_fixed_key():
    small = dict(SIZES, num_datasets=128)
    a = simulate_judge_selection(jax.random.key(7), KS, TEMPS, **small)
    b = simulate_judge_selection(jax.random.key(7), KS, TEMPS, **small)
    c = simulate_judge_selection(jax.random.key(8), KS, TEMPS, **small)
    np.testing.assert_array_equal(a.per_dataset, b.per_dataset)
    assert a.bok_coefficient == b.bok_coefficient
    assert not np.array_equal(a.per_dataset, c.per_dataset)
    f1 = fit_judge_decay(a, key=jax.random.key(1), num_boot=50)
    f2 = fit_judge_decay(a, key=jax.random.key(1), num_boot=50)
    assert f1 == f2


@pytest.mark.parametrize("kwargs, field", [
    (dict(noise=0.0), "noise"),
    (dict(prior_scale=-1.0), "prior_scale"),
    (dict(reward_overlap=1.5), "reward_overlap"),
    (dict(reward_norm=-0.1), "reward_norm"),
    (dict(dim=0), "dim"),
    (dict(num_train=2.5), "num_train"),
    (dict(num_datasets=1), "num_datasets"),
    (dict(ks=[4, 2]), "ks"),
    (dict(ks=[0, 1]), "ks"),
    (dict(temperatures=[-1.0]), "temperatures"),
])
def test_input_errors_name_the_field(kwargs, field):
    args = dict(ks=[1, 2], temperatures=[0.0])
    args.update(kwargs)
    ks, temps = args.pop("ks"), args.pop("temperatures")
    with pytest.raises(ValueError, match=field):
        simulate_judge_selection(jax.random.key(0), ks, temps, **args)


def test_summary_input_errors():
    r = _sim(0, 1.0)
    with pytest.raises(ValueError, match="k="):
        judge_optimal_temperature(r, key=jax.random.key(0), k=3)
    with pytest.raises(ValueError, match="k_min"):
        fit_judge_decay(r, key=jax.random.key(0), k_min=1000)
    with pytest.raises(ValueError, match="level"):
        judge_optimal_k(r, key=jax.random.key(0), level=1.5)
    with pytest.raises(ValueError, match="y must have shape"):
        blr_posterior(np.zeros((4, 2)), np.zeros(3), noise=1.0)
