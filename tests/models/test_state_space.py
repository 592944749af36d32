"""The linear-Gaussian model's three engine forms agree with its Kalman filter."""

import jax
import numpy as np
import pytest

import ppl
from ppl_models.state_space import LinearGaussian


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


def test_multivariate_kalman_matches_a_direct_gaussian_computation():
    """The vector model's log p(y): the joint Gaussian of y_{0:T-1} (Cov(x_s, x_t) = F^(t-s) P_s),
    built without the recursion, and the scalar model's Kalman filter when every matrix is 1x1."""
    from ppl_models.state_space import MultivariateLinearGaussian

    F = np.array([[0.8, -0.3], [0.2, 0.7]])
    G = np.array([[1.0, 0.5], [0.0, 1.0], [0.3, -0.2]])
    Q, R, P0 = np.array([[0.5, 0.1], [0.1, 0.3]]), 0.4 * np.eye(3) + 0.1, np.array([[1.0, 0.2], [0.2, 0.8]])
    m0 = np.array([0.3, -0.1])
    mlg = MultivariateLinearGaussian(F=F, G=G, Q=Q, R=R, m0=m0, P0=P0)
    ys = mlg.simulate(5, seed=2).astype(np.float64)
    T, dx = len(ys), 2
    P = [P0]
    for _ in range(1, T):
        P.append(F @ P[-1] @ F.T + Q)
    cov_x = np.zeros((T * dx, T * dx))
    for s in range(T):
        for t in range(s, T):
            block = np.linalg.matrix_power(F, t - s) @ P[s]  # Cov(x_t, x_s)
            cov_x[t * dx:(t + 1) * dx, s * dx:(s + 1) * dx] = block
            cov_x[s * dx:(s + 1) * dx, t * dx:(t + 1) * dx] = block.T
    Gb = np.kron(np.eye(T), G)
    cov_y = Gb @ cov_x @ Gb.T + np.kron(np.eye(T), R)
    mean = np.concatenate([G @ np.linalg.matrix_power(F, t) @ m0 for t in range(T)])
    diff = ys.reshape(-1) - mean
    log_z = -0.5 * (diff @ np.linalg.solve(cov_y, diff) + np.linalg.slogdet(2 * np.pi * cov_y)[1])
    np.testing.assert_allclose(mlg.kalman_log_evidence(ys), log_z, rtol=1e-10)

    lg = LinearGaussian(a=0.7, q=0.5, r=0.3, m0=0.2, p0=1.5)
    one = MultivariateLinearGaussian(F=np.array([[0.7]]), G=np.eye(1), Q=np.array([[0.5]]),
                                     R=np.array([[0.3]]), m0=np.array([0.2]), P0=np.array([[1.5]]))
    y1 = lg.simulate(6, seed=3)
    np.testing.assert_allclose(one.kalman_log_evidence(y1[:, None]), lg.kalman_filter(y1).log_evidence,
                               rtol=1e-10)
    with pytest.raises(ValueError, match="R"):
        MultivariateLinearGaussian(F=F, G=G, Q=Q, R=-np.eye(3), m0=m0, P0=P0)
    with pytest.raises(ValueError, match="G"):
        MultivariateLinearGaussian(F=F, G=np.eye(2, 3), Q=Q, R=R, m0=m0, P0=P0)
