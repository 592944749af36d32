r"""Saturation of accuracy with budget: :math:`F(N) = F_{\max}\,(1 - (1-p)^N)`, fitted with
uncertainty, and the budget beyond which one more sample gains less than :math:`\varepsilon`.

The test-time scaling performance model (2025) describes both parallel and sequential scaling
by :math:`F(N) = F_{\max}(1 - (1-p)^N)`: :math:`F_{\max}` is the ceiling and :math:`p` the
per-sample chance of reaching it. The gain of sample :math:`N+1` is
:math:`F(N+1) - F(N) = F_{\max}\,p\,(1-p)^N`, which falls below :math:`\varepsilon` from

.. math::

    N^* = \left\lceil \frac{\ln\bigl(\varepsilon / (F_{\max}\, p)\bigr)}{\ln(1-p)} \right\rceil

on (0 when :math:`F_{\max} p \le \varepsilon`). :func:`saturation_model` fits :math:`F` to
accuracies measured at several budgets, each with a standard error, plus an extra noise scale.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_models.scaling._common import (
    Band, bucket, interval, pad, posterior_draws, run_inference, summarize,
)

__all__ = ["saturation_curve", "saturation_budget", "saturation_model", "fit_saturation",
           "SaturationFit"]


def saturation_curve(N, f_max, p) -> np.ndarray:
    """:math:`F_{\\max}(1 - (1-p)^N)` (broadcast), computed as ``-f_max * expm1(N log1p(-p))``."""
    N = np.asarray(N, np.float64)
    p = np.asarray(p, np.float64)
    return -np.asarray(f_max, np.float64) * np.expm1(N * np.log1p(-p))


def saturation_budget(f_max, p, eps) -> np.ndarray:
    r""":math:`N^* = \lceil \ln(\varepsilon/(F_{\max} p)) / \ln(1-p) \rceil`, at least 0
    (broadcast). ``p = 1`` gives 1 when :math:`F_{\max} > \varepsilon` (one sample saturates)."""
    f_max = np.asarray(f_max, np.float64)
    p = np.asarray(p, np.float64)
    if np.any(np.asarray(eps) <= 0):
        raise ValueError("saturation_budget: eps must be > 0")
    if np.any((p <= 0) | (p > 1)) or np.any((f_max <= 0) | (f_max > 1)):
        raise ValueError("saturation_budget: need 0 < p <= 1 and 0 < f_max <= 1")
    with np.errstate(divide="ignore"):
        ratio = np.log(eps / (f_max * p)) / np.log1p(-p)  # p = 1: log1p(-1) = -inf -> 0
    n = np.ceil(np.where(p < 1, ratio, 0.0))
    n = np.where((p == 1) & (f_max * p > eps), 1.0, n)
    return np.maximum(n, 0.0)


def saturation_model(N, acc=None, acc_se=None, mask=None, *, sigma_scale: float = 0.02):
    r"""``acc`` :math:`\sim \mathcal N(F_{\max}(1-(1-p)^N), \mathrm{se}^2 + \sigma^2)` (numpyro).

    Sites ``f_max``, ``p`` :math:`\sim \mathrm{Beta}(1, 1)`, ``sigma`` :math:`\sim
    \mathrm{HalfNormal}(\sigma_\text{scale})`.
    """
    f_max = numpyro.sample("f_max", dist.Beta(1.0, 1.0))
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(sigma_scale))
    mean = -f_max * jnp.expm1(N * jnp.log1p(-p))
    sd = sigma if acc_se is None else jnp.sqrt(acc_se**2 + sigma**2)
    with numpyro.plate("budgets", jnp.shape(N)[0]), numpyro.handlers.mask(
        mask=True if mask is None else mask
    ):
        numpyro.sample("acc", dist.Normal(mean, sd), obs=acc)


@dataclasses.dataclass(frozen=True)
class SaturationFit:
    """Posterior of :func:`saturation_model`: ``draws`` of ``f_max``, ``p``, ``sigma``."""

    result: object
    N: np.ndarray
    acc: np.ndarray
    acc_se: np.ndarray
    draws: dict

    def curve(self, N, level: float = 0.9) -> Band:
        N = np.atleast_1d(np.asarray(N))
        d = saturation_curve(N[None, :], self.draws["f_max"][:, None], self.draws["p"][:, None])
        m, lo, hi = interval(d, level)
        return Band(N, m, lo, hi, level)

    def budget_draws(self, eps: float) -> np.ndarray:
        return saturation_budget(self.draws["f_max"], self.draws["p"], eps)

    def budget(self, eps: float, level: float = 0.9) -> dict:
        """Posterior median and interval of :math:`N^*(\\varepsilon)`."""
        d = self.budget_draws(eps)
        lo, med, hi = np.quantile(d, [0.5 - level / 2, 0.5, 0.5 + level / 2])
        return {"eps": eps, "median": float(med), "ci_low": float(lo), "ci_high": float(hi),
                "level": level}

    def summary(self, level: float = 0.9) -> dict:
        return summarize(self.draws, ["f_max", "p", "sigma"], level)


def fit_saturation(N, acc, acc_se=0.0, *, key, method: str = "nuts", sigma_scale: float = 0.02,
                   **options) -> SaturationFit:
    """Fit :math:`F(N)` to accuracies ``acc [M]`` at budgets ``N [M]`` with standard errors.

    Raises:
        ValueError: fewer than 2 budgets, budgets not >= 1, accuracies outside [0, 1].
    """
    N = np.asarray(N, np.float64).ravel()
    acc = np.asarray(acc, np.float64).ravel()
    se = np.asarray(acc_se, np.float64).ravel() * np.ones_like(acc)
    if N.size < 2 or N.shape != acc.shape:
        raise ValueError("fit_saturation: need at least 2 budgets and one accuracy per budget")
    if np.any(N < 1) or np.any((acc < 0) | (acc > 1)) or np.any(se < 0):
        raise ValueError("fit_saturation: need budgets >= 1, accuracies in [0, 1], se >= 0")
    size = bucket(N.size)
    res = run_inference(saturation_model, pad(N, size, 1.0), pad(acc, size, 0.0),
                        pad(se, size, 1.0), pad(np.ones(N.size, bool), size, False),
                        key=key, method=method,
                        sigma_scale=float(sigma_scale), **options)
    return SaturationFit(res, N, acc, se, posterior_draws(res))
