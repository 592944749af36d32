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

**A mixture over difficulty.** One rate :math:`p` says every problem is equally hard. A set of
problems of mixed difficulty saturates more slowly: the easy ones are solved at once, the hard
ones keep adding a little for a long time, and a single-rate fit to small budgets under-predicts
large ones. With the per-problem rate :math:`p \sim \mathrm{Beta}(\mu\kappa, (1-\mu)\kappa)`
(mean :math:`\mu`, concentration :math:`\kappa`),

.. math::

    F(N) = F_{\max}\Bigl(1 - \mathbb E\bigl[(1-p)^N\bigr]\Bigr)
         = F_{\max}\Bigl(1 - \frac{B(a, b + N)}{B(a, b)}\Bigr),\qquad a = \mu\kappa,\ b = (1-\mu)\kappa,

and the gain of sample :math:`N+1` is :math:`F_{\max} B(a+1, b+N)/B(a, b)`, still decreasing in
:math:`N`, so :math:`N^*` is found by bisection. As :math:`\kappa\to\infty` it is the
single-rate form with :math:`p=\mu`. ``fit_saturation(..., mixture=True)`` fits it (sites
``f_max``, ``p`` (:math:`\mu`), ``kappa``, ``sigma``). The single rate applies when the problems
are of one difficulty (or to one problem's pass@k); for a benchmark of mixed difficulty, use the
mixture.
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

__all__ = ["saturation_curve", "saturation_budget", "saturation_model", "mixture_saturation_curve",
           "mixture_saturation_budget", "mixture_saturation_model", "fit_saturation", "SaturationFit"]


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
    _observe(N, -f_max * jnp.expm1(N * jnp.log1p(-p)), acc, acc_se, sigma, mask)


def _observe(N, mean, acc, acc_se, sigma, mask):
    """``acc`` :math:`\\sim \\mathcal N(\\text{mean}, \\mathrm{se}^2 + \\sigma^2)` per budget (padded rows masked)."""
    sd = sigma if acc_se is None else jnp.sqrt(acc_se**2 + sigma**2)
    with numpyro.plate("budgets", jnp.shape(N)[0]), numpyro.handlers.mask(
        mask=True if mask is None else mask
    ):
        numpyro.sample("acc", dist.Normal(mean, sd), obs=acc)


def _beta_ab(p, kappa):
    p, kappa = np.asarray(p, np.float64), np.asarray(kappa, np.float64)
    return p * kappa, (1 - p) * kappa


def mixture_saturation_curve(N, f_max, p, kappa) -> np.ndarray:
    r""":math:`F_{\max}(1 - B(a, b+N)/B(a, b))` with :math:`a = p\kappa`, :math:`b = (1-p)\kappa`
    (broadcast)."""
    from scipy.special import betaln

    a, b = _beta_ab(p, kappa)
    N = np.asarray(N, np.float64)
    return -np.asarray(f_max, np.float64) * np.expm1(betaln(a, b + N) - betaln(a, b))


def mixture_saturation_budget(f_max, p, kappa, eps, max_budget: float = 2.0**40) -> np.ndarray:
    r"""The first :math:`N \ge 0` whose next sample gains less than ``eps``,
    :math:`F_{\max} B(a+1, b+N)/B(a, b) < \varepsilon`, by bisection on integers (broadcast;
    ``max_budget`` where even that budget gains more)."""
    from scipy.special import betaln

    if np.any(np.asarray(eps) <= 0):
        raise ValueError("mixture_saturation_budget: eps must be > 0")
    f_max, p, kappa = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (f_max, p, kappa)))
    if np.any((p <= 0) | (p >= 1)) or np.any((f_max <= 0) | (f_max > 1)) or np.any(kappa <= 0):
        raise ValueError("mixture_saturation_budget: need 0 < p < 1, 0 < f_max <= 1 and kappa > 0")
    a, b = _beta_ab(p, kappa)
    log_gain = lambda n: np.log(f_max) + betaln(a + 1, b + n) - betaln(a, b)  # noqa: E731
    small = log_gain(0.0) < np.log(eps)
    lo, hi = np.zeros_like(a), np.full_like(a, float(max_budget))  # gain(lo) >= eps > gain(hi)
    for _ in range(int(np.ceil(np.log2(max_budget))) + 1):
        mid = np.floor((lo + hi) / 2)
        above = log_gain(mid) >= np.log(eps)
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return np.where(small, 0.0, hi)


def mixture_saturation_model(N, acc=None, acc_se=None, mask=None, *, sigma_scale: float = 0.02):
    r"""``acc`` :math:`\sim \mathcal N(F_{\max}(1 - B(a, b+N)/B(a, b)), \mathrm{se}^2 + \sigma^2)`.

    Sites ``f_max``, ``p`` (the mean rate :math:`\mu`) :math:`\sim \mathrm{Beta}(1, 1)`,
    ``kappa`` :math:`\sim \mathrm{LogNormal}(\ln 2, 2)` (from a wide spread of difficulty,
    :math:`\kappa \ll 1`, to nearly one rate, :math:`\kappa \gg 1`), ``sigma``
    :math:`\sim \mathrm{HalfNormal}(\sigma_\text{scale})`.
    """
    from jax.scipy.special import betaln

    f_max = numpyro.sample("f_max", dist.Beta(1.0, 1.0))
    p = numpyro.sample("p", dist.Beta(1.0, 1.0))
    kappa = numpyro.sample("kappa", dist.LogNormal(jnp.log(2.0), 2.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(sigma_scale))
    a, b = p * kappa, (1 - p) * kappa
    _observe(N, -f_max * jnp.expm1(betaln(a, b + N) - betaln(a, b)), acc, acc_se, sigma, mask)


@dataclasses.dataclass(frozen=True)
class SaturationFit:
    """Posterior of :func:`saturation_model` (``draws`` of ``f_max``, ``p``, ``sigma``) or, with
    ``mixture``, of :func:`mixture_saturation_model` (``kappa`` too)."""

    result: object
    N: np.ndarray
    acc: np.ndarray
    acc_se: np.ndarray
    draws: dict
    mixture: bool = False

    def curve(self, N, level: float = 0.9) -> Band:
        N = np.atleast_1d(np.asarray(N))
        f, p = self.draws["f_max"][:, None], self.draws["p"][:, None]
        d = (mixture_saturation_curve(N[None, :], f, p, self.draws["kappa"][:, None]) if self.mixture
             else saturation_curve(N[None, :], f, p))
        m, lo, hi = interval(d, level)
        return Band(N, m, lo, hi, level)

    def budget_draws(self, eps: float) -> np.ndarray:
        if self.mixture:
            return mixture_saturation_budget(self.draws["f_max"], self.draws["p"], self.draws["kappa"], eps)
        return saturation_budget(self.draws["f_max"], self.draws["p"], eps)

    def budget(self, eps: float, level: float = 0.9) -> dict:
        """Posterior median and interval of :math:`N^*(\\varepsilon)`."""
        d = self.budget_draws(eps)
        lo, med, hi = np.quantile(d, [0.5 - level / 2, 0.5, 0.5 + level / 2])
        return {"eps": eps, "median": float(med), "ci_low": float(lo), "ci_high": float(hi),
                "level": level}

    def summary(self, level: float = 0.9) -> dict:
        return summarize(self.draws, ["f_max", "p", "kappa", "sigma"] if self.mixture else
                         ["f_max", "p", "sigma"], level)


def fit_saturation(N, acc, acc_se=0.0, *, key, method: str = "nuts", sigma_scale: float = 0.02,
                   mixture: bool = False, **options) -> SaturationFit:
    """Fit :math:`F(N)` to accuracies ``acc [M]`` at budgets ``N [M]`` with standard errors:
    one rate (:func:`saturation_model`) or, with ``mixture``, a Beta mixture of rates over
    problems (:func:`mixture_saturation_model`).

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
    res = run_inference(mixture_saturation_model if mixture else saturation_model,
                        pad(N, size, 1.0), pad(acc, size, 0.0),
                        pad(se, size, 1.0), pad(np.ones(N.size, bool), size, False),
                        key=key, method=method,
                        sigma_scale=float(sigma_scale), **options)
    return SaturationFit(res, N, acc, se, posterior_draws(res), bool(mixture))
