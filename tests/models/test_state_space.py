"""The linear-Gaussian model's three engine forms agree with its Kalman filter."""

import jax
import numpy as np
import pytest

import ppl
from models.state_space import LinearGaussian


def test_kalman_filter_matches_a_direct_gaussian_computation():
    """log p(y) from the joint Gaussian of y_{0:T-1}, built independently of the recursion."""
    lg = LinearGaussian(a=0.7, q=0.5, r=0.3, m0=0.2, p0=1.5)
    ys = lg.simulate(6, seed=3).astype(np.float64)
    T = len(ys)
    var_x = np.zeros(T)
    cov = np.zeros((T, T))
    var_x[0] = lg.p0
    for t in range(1, T):
        var_x[t] = lg.a**2 * var_x[t - 1] + lg.q
    for s in range(T):
        for t in range(s, T):
            cov[s, t] = cov[t, s] = lg.a ** (t - s) * var_x[s]
    mean = lg.m0 * lg.a ** np.arange(T)
    cov_y = cov + lg.r * np.eye(T)
    diff = ys - mean
    log_z = -0.5 * (diff @ np.linalg.solve(cov_y, diff) + np.linalg.slogdet(2 * np.pi * cov_y)[1])
    np.testing.assert_allclose(lg.kalman_filter(ys).log_evidence, log_z, rtol=1e-10)


def test_step_program_form_matches_kalman():
    lg = LinearGaussian(a=0.9, q=0.5, r=0.25, m0=0.0, p0=1.0)
    ys = lg.simulate(15, seed=1)
    exact = lg.kalman_filter(ys).log_evidence
    res = ppl.run_smc(lg.step_program(ys), 4096, key=jax.random.split(jax.random.key(0), 8))
    lz = np.asarray(res.log_evidence, np.float64)
    assert abs(lz.mean() - exact) < 4 * lz.std(ddof=1) / np.sqrt(8) + 0.01


def test_invalid_parameters():
    with pytest.raises(ValueError, match="r"):
        LinearGaussian(r=0.0)
    with pytest.raises(ValueError, match="step_program"):
        LinearGaussian(q=1.0, p0=1.0).step_program(np.zeros(3))
