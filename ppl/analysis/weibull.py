r"""A two-component Weibull mixture fitted by maximum likelihood (EM), numpy only.

RPC's reasoning pruning (:func:`ppl.scaling.reasoning_pruning`, Zhou et al. 2025) fits it to
the path probabilities of sampled generations and drops the paths of the low-mean component.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["WeibullMixture", "fit_weibull_mixture"]

_K_MIN, _K_MAX, _SCALE_MIN = 0.01, 1e4, 0.01


class WeibullMixture(NamedTuple):
    """A two-component Weibull mixture, components ordered by increasing mean (0 = *low*).

    Attributes
    ----------
    weights, shapes, scales
        ``[2]`` mixture weights, shapes :math:`k` and scales :math:`\\lambda`.
    log_likelihood
        The fitted data's log-likelihood.
    """

    weights: np.ndarray
    shapes: np.ndarray
    scales: np.ndarray
    log_likelihood: float

    @property
    def means(self) -> np.ndarray:
        """``[2]`` component means :math:`\\lambda\\,\\Gamma(1 + 1/k)`."""
        return np.array([s * math.gamma(1.0 + 1.0 / k) for k, s in zip(self.shapes, self.scales)])

    def log_joint(self, x) -> np.ndarray:
        """``[n, 2]``: :math:`\\log w_j + \\log \\mathcal{W}(x; k_j, \\lambda_j)`."""
        return np.log(self.weights) + _weibull_logpdf(np.log(np.asarray(x, np.float64))[:, None], self.shapes,
                                                      self.scales)

    def responsibilities(self, x) -> np.ndarray:
        """``[n, 2]`` posterior component probabilities of each point."""
        lj = self.log_joint(x)
        lj = lj - np.max(lj, axis=1, keepdims=True)
        p = np.exp(lj)
        return p / p.sum(axis=1, keepdims=True)

    def log_pdf(self, x) -> np.ndarray:
        """``[n]`` the mixture's log-density."""
        lj = self.log_joint(x)
        m = np.max(lj, axis=1)
        return m + np.log(np.sum(np.exp(lj - m[:, None]), axis=1))


def _weibull_logpdf(log_x, k, lam):
    z = log_x - np.log(lam)
    return np.log(k) - np.log(lam) + (k - 1.0) * z - np.exp(np.clip(k * z, -745.0, 709.0))


def _weighted_weibull_mle(log_x: np.ndarray, w: np.ndarray, k0=None):
    r"""Weighted Weibull MLEs ``(k[2], lambda[2])`` for the two columns of weights ``w[n, 2]``.

    Each shape solves the profile equation

    .. math::

        h(k) = \frac{\sum_i w_i x_i^k \ln x_i}{\sum_i w_i x_i^k} - \frac1k
        - \frac{\sum_i w_i \ln x_i}{\sum_i w_i} = 0,

    where :math:`h'(k) = \mathrm{Var}_{w x^k}(\ln x) + 1/k^2 > 0`: safeguarded Newton steps on
    :math:`u = \log k` from ``k0`` (the previous EM iterate), falling back to bisection of the
    bracket :math:`[0.01, 10^4]` (both columns at once); then
    :math:`\lambda = (\sum_i w_i x_i^k / \sum_i w_i)^{1/k}`."""
    sw = w.sum(0)
    mean_log = (log_x @ w) / sw
    lx = log_x[:, None]
    lo = np.full(2, math.log(_K_MIN))
    hi = np.full(2, math.log(_K_MAX))
    u = np.full(2, math.log(2.0)) if k0 is None else np.clip(np.log(k0), lo, hi)
    for _ in range(100):
        k = np.exp(u)
        a = k * lx
        e = w * np.exp(a - a.max(0))
        e = e / e.sum(0)
        m1 = (lx * e).sum(0)
        h = m1 - 1.0 / k - mean_log
        dh_du = k * ((lx * lx * e).sum(0) - m1 * m1) + 1.0 / k
        below = h < 0.0
        lo = np.where(below, u, lo)
        hi = np.where(below, hi, u)
        step = u - h / np.maximum(dh_du, 1e-300)
        bisect = 0.5 * (lo + hi)
        new = np.where((step > lo) & (step < hi), step, bisect)
        done = (np.abs(new - u) < 1e-10) | (hi - lo < 1e-10)
        u = new
        if done.all():
            break
    k = np.exp(u)
    a = k * lx
    m = a.max(0)
    log_lam = (m + np.log((w * np.exp(a - m)).sum(0) / sw)) / k
    return k, np.maximum(np.exp(log_lam), _SCALE_MIN)


def _em(log_x, resp, weight_bounds, max_iters, tol):
    lo, hi = weight_bounds
    ll_old = -np.inf
    shapes = None
    for _ in range(max_iters):
        w0 = float(np.clip(resp[:, 0].mean(), lo, hi))
        weights = np.array([w0, 1.0 - w0])
        shapes, scales = _weighted_weibull_mle(log_x, resp + 1e-300, shapes)
        lj = np.log(weights) + _weibull_logpdf(log_x[:, None], shapes, scales)
        m = np.max(lj, axis=1, keepdims=True)
        ll = float(np.sum(m[:, 0] + np.log(np.sum(np.exp(lj - m), axis=1))))
        resp = np.exp(lj - m)
        resp = resp / resp.sum(axis=1, keepdims=True)
        if abs(ll - ll_old) <= tol * (1.0 + abs(ll)):
            break
        ll_old = ll
    return weights, shapes, scales, ll


def fit_weibull_mixture(x, *, weight_bounds: tuple = (0.2, 0.8), max_iters: int = 300,
                        tol: float = 1e-8) -> WeibullMixture:
    r"""Maximum-likelihood two-component Weibull mixture for positive data ``x`` (numpy only).

    EM: the E-step computes responsibilities :math:`\gamma_{ij}`; the M-step sets the weight of
    component 0 to :math:`\mathrm{clip}(\bar\gamma_{\cdot 0}, \text{weight\_bounds})` and each
    component's :math:`(k, \lambda)` to the :math:`\gamma`-weighted Weibull MLE (exact, by
    bisection on the profile equation; :math:`k \in [0.01, 10^4]`, :math:`\lambda \ge 0.01`), so
    the likelihood never decreases. EM starts from three hard splits of the sorted data (at its
    quartiles and median) and the best fit is kept. Components are returned ordered by mean.

    Raises
    ------
    ValueError
        If ``x`` has fewer than 2 points, non-positive or non-finite values, or no spread.
    """
    x = np.asarray(x, np.float64).reshape(-1)
    if x.shape[0] < 2:
        raise ValueError(f"x: a mixture needs at least 2 points, got {x.shape[0]}")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError("x: expected finite positive values")
    log_x = np.log(x)
    if np.ptp(log_x) < 1e-12:
        raise ValueError("x: all values are equal; a mixture cannot be fitted")
    lo, hi = (float(b) for b in weight_bounds)
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"weight_bounds: expected 0 < low <= high < 1, got {weight_bounds!r}")
    n = x.shape[0]
    order = np.argsort(x, kind="stable")
    best = None
    for q in (0.25, 0.5, 0.75):
        cut = min(max(int(round(q * n)), 1), n - 1)
        resp = np.zeros((n, 2))
        resp[order[:cut], 0] = 1.0
        resp[order[cut:], 1] = 1.0
        fit = _em(log_x, resp, (lo, hi), int(max_iters), float(tol))
        if best is None or fit[3] > best[3]:
            best = fit
    weights, shapes, scales, ll = best
    mix = WeibullMixture(weights, shapes, scales, ll)
    if mix.means[0] > mix.means[1]:
        mix = WeibullMixture(weights[::-1].copy(), shapes[::-1].copy(), scales[::-1].copy(), ll)
    return mix
