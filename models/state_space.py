r"""Linear-Gaussian state-space models: Feynman–Kac forms and their exact Kalman filters.

.. math::

    x_0 \sim \mathcal N(m_0, p_0), \qquad x_t = a\,x_{t-1} + \mathcal N(0, q), \qquad
    y_t = x_t + \mathcal N(0, r).

Its evidence :math:`p(y_{0:T-1})` and filtering distributions :math:`p(x_t \mid y_{0:t})` are
known exactly (the Kalman filter), which makes it the reference model for checking particle
filters. Three equivalent ways to write it for the engine are given: the bootstrap filter
(:meth:`LinearGaussian.bootstrap`), the guided filter with the locally optimal proposal
:math:`q_t(x_t \mid x_{t-1}) = p(x_t \mid x_{t-1}, y_t)` (:meth:`LinearGaussian.guided`), and a
numpyro step program (:meth:`LinearGaussian.step_program`).

:class:`MultivariateLinearGaussian` is the vector form,
:math:`x_t = F x_{t-1} + \mathcal N(0, Q)`, :math:`y_t = G x_t + \mathcal N(0, R)`, written with
numpyro's ``MultivariateNormal`` as a user would write it, with its exact log-evidence.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppl

__all__ = ["LinearGaussian", "MultivariateLinearGaussian", "KalmanResult"]


@dataclasses.dataclass(frozen=True)
class KalmanResult:
    """Exact answers: ``log_evidence`` and the filtering ``means`` / ``variances`` ``[T]``."""

    log_evidence: float
    means: np.ndarray
    variances: np.ndarray


@dataclasses.dataclass(frozen=True)
class LinearGaussian:
    """Parameters :math:`(a, q, r, m_0, p_0)` of a scalar linear-Gaussian state-space model."""

    a: float = 0.9
    q: float = 1.0
    r: float = 0.25
    m0: float = 0.0
    p0: float = 1.0

    def __post_init__(self):
        for name in ("q", "r", "p0"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: a variance must be positive, got {getattr(self, name)!r}")

    # ------------------------------------------------------------------ data and exact answers
    def simulate(self, num_steps: int, seed: int = 0) -> np.ndarray:
        """Observations ``y_{0:T-1}`` (float32) simulated with numpy's generator ``seed``."""
        if int(num_steps) < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
        rng = np.random.default_rng(seed)
        x = rng.normal(self.m0, math.sqrt(self.p0))
        ys = []
        for t in range(int(num_steps)):
            if t:
                x = self.a * x + rng.normal(0.0, math.sqrt(self.q))
            ys.append(x + rng.normal(0.0, math.sqrt(self.r)))
        return np.asarray(ys, dtype=np.float32)

    def kalman_filter(self, ys) -> KalmanResult:
        """The exact log-evidence and filtering moments, in float64 numpy."""
        ys = np.asarray(ys, dtype=np.float64)
        m_pred, p_pred = self.m0, self.p0
        log_z, means, variances = 0.0, [], []
        for t, y in enumerate(ys):
            if t:
                m_pred, p_pred = self.a * m, self.a**2 * p + self.q
            s = p_pred + self.r
            log_z += -0.5 * (math.log(2 * math.pi * s) + (y - m_pred) ** 2 / s)
            gain = p_pred / s
            m = m_pred + gain * (y - m_pred)
            p = (1.0 - gain) * p_pred
            means.append(m)
            variances.append(p)
        return KalmanResult(log_z, np.asarray(means), np.asarray(variances))

    # ------------------------------------------------------------------ engine forms
    def transition(self, x, t, y):
        r""":math:`M_t(x_{t-1}, \cdot) = \mathcal N(a x_{t-1}, q)`."""
        return dist.Normal(self.a * x, math.sqrt(self.q))

    def log_potential(self, x_prev, x, t, y):
        r""":math:`\log G_t = \log \mathcal N(y_t; x_t, r)`."""
        return dist.Normal(x, math.sqrt(self.r)).log_prob(y)

    def optimal_proposal(self, x_prev, t, y):
        r""":math:`p(x_t \mid x_{t-1}, y_t)`; at :math:`t = 0`, :math:`p(x_0 \mid y_0)`."""
        prior_m, prior_v = (self.m0, self.p0) if x_prev is None else (self.a * x_prev, self.q)
        v = 1.0 / (1.0 / prior_v + 1.0 / self.r)
        return dist.Normal(v * (prior_m / prior_v + y / self.r), math.sqrt(v))

    def bootstrap(self, ys) -> ppl.FeynmanKac:
        """The bootstrap filter: particles move with the model's own transition."""
        return ppl.FeynmanKac(init=dist.Normal(self.m0, math.sqrt(self.p0)), transition=self.transition,
                              log_potential=self.log_potential, data=jnp.asarray(ys))

    def guided(self, ys) -> ppl.FeynmanKac:
        """The guided filter with the locally optimal proposal (weights :math:`p(y_t \\mid x_{t-1})`)."""
        return ppl.FeynmanKac(init=dist.Normal(self.m0, math.sqrt(self.p0)), transition=self.transition,
                              log_potential=self.log_potential, proposal=self.optimal_proposal,
                              data=jnp.asarray(ys))

    def step(self, x_prev, y):
        """One step of one particle as a numpyro program."""
        x = numpyro.sample("x", dist.Normal(self.a * x_prev, math.sqrt(self.q)))
        numpyro.sample("y", dist.Normal(x, math.sqrt(self.r)), obs=y)
        return x

    def step_program(self, ys) -> ppl.core.step_program.StepProgramModel:
        r"""The step-program form. :math:`x_{-1}` is drawn so that :math:`x_0 \sim \mathcal N(m_0, p_0)`
        when :math:`a \ne 0`: :math:`x_{-1} \sim \mathcal N(m_0 / a, (p_0 - q)/a^2)` needs
        :math:`p_0 > q`; otherwise use :meth:`bootstrap`."""
        if self.a == 0 or self.p0 <= self.q:
            raise ValueError("step_program: needs a != 0 and p0 > q so that x_0 ~ N(m0, p0); "
                             "use bootstrap() instead")
        init = dist.Normal(self.m0 / self.a, math.sqrt((self.p0 - self.q) / self.a**2))
        return ppl.from_step_program(self.step, init=init, data=jnp.asarray(ys))


@dataclasses.dataclass(frozen=True, eq=False)
class MultivariateLinearGaussian:
    r""":math:`x_0 \sim \mathcal N(m_0, P_0)`, :math:`x_t = F x_{t-1} + \mathcal N(0, Q)`,
    :math:`y_t = G x_t + \mathcal N(0, R)`, with ``F [dx, dx]``, ``G [dy, dx]``, ``Q``, ``R``,
    ``P0`` covariance matrices and ``m0 [dx]`` (numpy arrays)."""

    F: np.ndarray
    G: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    m0: np.ndarray
    P0: np.ndarray

    def __post_init__(self):
        dx, dy = np.shape(self.F)[0], np.shape(self.G)[0]
        shapes = {"F": (dx, dx), "G": (dy, dx), "Q": (dx, dx), "R": (dy, dy), "m0": (dx,), "P0": (dx, dx)}
        for name, shape in shapes.items():
            if np.shape(getattr(self, name)) != shape:
                raise ValueError(f"{name}: expected shape {shape}, got {np.shape(getattr(self, name))}")
        for name in ("Q", "R", "P0"):
            try:
                np.linalg.cholesky(np.asarray(getattr(self, name), np.float64))
            except np.linalg.LinAlgError:
                raise ValueError(f"{name}: a covariance must be symmetric positive definite") from None

    def simulate(self, num_steps: int, seed: int = 0) -> np.ndarray:
        """Observations ``[T, dy]`` (float32) simulated with numpy's generator ``seed``."""
        if int(num_steps) < 1:
            raise ValueError(f"num_steps: expected a positive integer, got {num_steps!r}")
        rng = np.random.default_rng(seed)
        x = rng.multivariate_normal(self.m0, self.P0)
        ys = np.empty((int(num_steps), np.shape(self.G)[0]))
        for t in range(int(num_steps)):
            if t:
                x = self.F @ x + rng.multivariate_normal(np.zeros(len(x)), self.Q)
            ys[t] = self.G @ x + rng.multivariate_normal(np.zeros(ys.shape[1]), self.R)
        return ys.astype(np.float32)

    def kalman_log_evidence(self, ys) -> float:
        r"""The exact :math:`\log p(y_{0:T-1})` (float64 Kalman filter)."""
        F, G, Q, R = (np.asarray(a, np.float64) for a in (self.F, self.G, self.Q, self.R))
        m, P, total = np.asarray(self.m0, np.float64), np.asarray(self.P0, np.float64), 0.0
        for t, y in enumerate(np.asarray(ys, np.float64)):
            if t:
                m, P = F @ m, F @ P @ F.T + Q
            S = G @ P @ G.T + R
            r = y - G @ m
            total += -0.5 * (r @ np.linalg.solve(S, r) + np.linalg.slogdet(S)[1] + len(r) * math.log(2 * math.pi))
            K = P @ G.T @ np.linalg.inv(S)
            m, P = m + K @ r, P - K @ S @ K.T
        return float(total)

    def bootstrap(self, ys, **kwargs) -> ppl.FeynmanKac:
        """The bootstrap filter with numpyro's ``MultivariateNormal`` (``kwargs`` go to FeynmanKac)."""
        F, G, Q, R, m0, P0 = (jnp.asarray(a, jnp.float32) for a in (self.F, self.G, self.Q, self.R, self.m0, self.P0))
        return ppl.FeynmanKac(
            init=dist.MultivariateNormal(m0, P0),
            transition=lambda x, t, y: dist.MultivariateNormal(F @ x, Q),
            log_potential=lambda x_prev, x, t, y: dist.MultivariateNormal(G @ x, R).log_prob(y),
            data=jnp.asarray(ys, jnp.float32), **kwargs)
