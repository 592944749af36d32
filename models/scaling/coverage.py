r"""Coverage as k grows: a hierarchical Beta–Binomial model and the exponentiated power law.

**Beta–Binomial.** Problem :math:`i` has success rate :math:`p_i \sim \mathrm{Beta}(\alpha,
\beta)` and :math:`c_i` of its :math:`n_i` samples are correct,
:math:`c_i \mid p_i \sim \mathrm{Binomial}(n_i, p_i)`; :math:`p_i` is integrated out, so
:math:`c_i \sim \mathrm{BetaBinomial}(\alpha, \beta, n_i)`, with :math:`\alpha = \mu\kappa`,
:math:`\beta = (1-\mu)\kappa`. Optionally a fraction :math:`\pi_0` of problems is unsolvable
(:math:`p_i = 0`). Coverage after :math:`k` samples (Brown et al. 2024, "Large Language
Monkeys") is :math:`1 - \mathbb E[(1-p)^k]`, and for a Beta law

.. math::

    \mathbb E[(1-p)^k] = \frac{B(\alpha, \beta + k)}{B(\alpha, \beta)} ,

so every posterior draw of :math:`(\alpha, \beta, \pi_0)` gives the whole curve in closed form,
for any :math:`k`, including :math:`k` beyond the samples drawn. Two curves are offered: the
*benchmark* coverage :math:`\frac1P\sum_i 1 - \mathbb E[(1-p_i)^k \mid c_i]` of the problems
observed (:math:`p_i \mid c_i \sim \mathrm{Beta}(\alpha + c_i, \beta + n_i - c_i)`), which is
what pass@k estimates for :math:`k \le n`, and the *population* coverage
:math:`(1-\pi_0)\,(1 - B(\alpha, \beta + k)/B(\alpha, \beta))` of a new problem.

**Exponentiated power law.** Brown et al. (2024) observe :math:`\mathrm{coverage}(k) \approx
\exp(a k^b)` with :math:`a, b < 0`, i.e. :math:`\log(-\log \mathrm{coverage}) = \log(-a) + b
\log k` is linear in :math:`\log k`. :func:`fit_coverage_power_law` fits this line as a
Bayesian regression to pass@k estimates, with per-point standard errors from the delta method
and an extra noise scale :math:`\sigma`. The law holds when per-problem success rates have a
heavy left tail: for :math:`p \sim \mathrm{Beta}(\alpha, \beta)`,
:math:`1 - \mathrm{coverage}(k) \approx \frac{\Gamma(\alpha+\beta)}{\Gamma(\beta)} k^{-\alpha}`,
a power law with :math:`b \approx -\alpha` (Schaeffer et al. 2025, "How Do Large Language
Monkeys Get Their Power (Laws)?"). With unsolvable problems coverage plateaus at
:math:`1 - \pi_0` and the power law overshoots when extrapolated; with rates bounded away from
zero the decay is exponential, faster than any power law.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from scipy.special import betaln

from ppl_models.scaling._common import (
    Band, bucket, interval, pad, posterior_draws, run_inference, summarize,
)
from ppl_models.scaling.passk import PassAtK, _as_int_array

__all__ = [
    "beta_binomial_model",
    "fit_beta_binomial",
    "BetaBinomialFit",
    "beta_coverage",
    "power_law_model",
    "fit_coverage_power_law",
    "PowerLawFit",
]


def beta_coverage(k, alpha, beta) -> np.ndarray:
    r""":math:`1 - B(\alpha, \beta + k) / B(\alpha, \beta)` = coverage after k samples of a
    problem with :math:`p \sim \mathrm{Beta}(\alpha, \beta)` (broadcast; float64)."""
    k = np.asarray(k, np.float64)
    a = np.asarray(alpha, np.float64)
    b = np.asarray(beta, np.float64)
    return -np.expm1(betaln(a, b + k) - betaln(a, b))


def beta_binomial_model(n, correct=None, mask=None, *, zero_inflated: bool = False,
                        concentration_loc: float = 1.0, concentration_scale: float = 1.5):
    r"""Hierarchical Beta–Binomial model of per-problem success rates (numpyro).

    Sites: ``mean`` :math:`\mu \sim \mathrm{Beta}(1, 1)`, ``concentration``
    :math:`\kappa \sim \mathrm{LogNormal}(\text{loc}, \text{scale})`, deterministic ``alpha``
    and ``beta``; with ``zero_inflated`` also ``unsolvable`` :math:`\pi_0 \sim
    \mathrm{Beta}(1, 1)`; observed ``correct`` ``[P]`` out of ``n`` ``[P]``; rows where the
    boolean ``mask`` is false are padding and do not count.
    """
    mu = numpyro.sample("mean", dist.Beta(1.0, 1.0))
    kappa = numpyro.sample("concentration", dist.LogNormal(concentration_loc, concentration_scale))
    alpha = numpyro.deterministic("alpha", mu * kappa)
    beta = numpyro.deterministic("beta", (1.0 - mu) * kappa)
    base = dist.BetaBinomial(alpha, beta, total_count=n)
    if zero_inflated:
        pi0 = numpyro.sample("unsolvable", dist.Beta(1.0, 1.0))
        base = dist.ZeroInflatedDistribution(base, gate=pi0)
    with numpyro.plate("problems", jnp.shape(n)[0]), numpyro.handlers.mask(
        mask=True if mask is None else mask
    ):
        numpyro.sample("correct", base, obs=correct)


@dataclasses.dataclass(frozen=True)
class BetaBinomialFit:
    """Posterior of :func:`beta_binomial_model`; curves by :meth:`coverage`.

    Attributes:
        result: the :class:`ppl.PosteriorResult`.
        n, correct: the data ``[P]``.
        zero_inflated: whether the model has an unsolvable fraction.
        draws: pooled draws ``{site: [S]}``.
    """

    result: object
    n: np.ndarray
    correct: np.ndarray
    zero_inflated: bool
    draws: dict

    @property
    def alpha(self) -> np.ndarray:
        return self.draws["alpha"]

    @property
    def beta(self) -> np.ndarray:
        return self.draws["beta"]

    @property
    def unsolvable(self) -> np.ndarray:
        return self.draws.get("unsolvable", np.zeros_like(self.alpha))

    def coverage_draws(self, k, *, population: bool = False, seed: int = 0) -> np.ndarray:
        r"""Coverage per posterior draw ``[S, K]`` (see the module docstring).

        Population: the closed form per draw of :math:`(\alpha, \beta, \pi_0)`. Benchmark:
        per draw, each problem's rate :math:`p_i` is drawn from its conditional posterior
        (and, zero-inflated, whether it is solvable), and
        :math:`\frac1P\sum_i 1 - (1-p_i)^k` is evaluated, so the band carries the
        uncertainty of every :math:`p_i`, not only of the hyperparameters (``seed`` fixes it).
        """
        k = np.atleast_1d(np.asarray(k, np.float64))
        if np.any(k < 0):
            raise ValueError("coverage: k must be >= 0")
        a, b, pi0 = self.alpha[:, None], self.beta[:, None], self.unsolvable[:, None]
        if population:
            return (1.0 - pi0) * beta_coverage(k[None, :], a, b)
        rng = np.random.default_rng(seed)
        n, c = self.n.astype(np.float64), self.correct.astype(np.float64)
        ap, bp = a + c[None, :], b + (n - c)[None, :]  # [S, P]
        # log(1 - p_i) with p_i ~ Beta(ap, bp): 1 - p_i ~ Beta(bp, ap), drawn in log space
        # through Gamma variates so that tiny rates keep their precision.
        ga, gb = np.log(rng.gamma(ap)), np.log(rng.gamma(bp))
        log_q = gb - np.logaddexp(ga, gb)
        if self.zero_inflated:
            log_bb0 = betaln(a, b + n[None, :]) - betaln(a, b)  # log P(c=0 | solvable)
            bb0 = np.exp(log_bb0)
            solv = np.where(c[None, :] > 0, 1.0, (1 - pi0) * bb0 / (pi0 + (1 - pi0) * bb0))
            solvable = rng.random(solv.shape) < solv
        else:
            solvable = np.ones(ap.shape, bool)
        out = np.empty((a.shape[0], k.size))
        for j, kv in enumerate(k):
            out[:, j] = np.mean(np.where(solvable, -np.expm1(kv * log_q), 0.0), axis=1)
        return out

    def coverage(self, k, *, population: bool = False, level: float = 0.9) -> Band:
        """Posterior mean coverage and its equal-tailed credible band at ``k`` (any k >= 0)."""
        k = np.atleast_1d(np.asarray(k))
        m, lo, hi = interval(self.coverage_draws(k, population=population), level)
        return Band(k, m, lo, hi, level)

    def summary(self, level: float = 0.9) -> dict:
        names = ["mean", "concentration", "alpha", "beta"]
        if self.zero_inflated:
            names.append("unsolvable")
        return summarize(self.draws, names, level)


def _check_counts(n, correct):
    n = _as_int_array("n", n).ravel()
    c = _as_int_array("correct", correct).ravel()
    if n.size == 0 or n.shape != c.shape:
        raise ValueError("n and correct must be non-empty and of equal length")
    if np.any(n < 1) or np.any((c < 0) | (c > n)):
        raise ValueError("need n >= 1 and 0 <= correct <= n for every problem")
    return n, c


def fit_beta_binomial(n, correct, *, key, zero_inflated: bool = False, method: str = "nuts",
                      concentration_loc: float = 1.0, concentration_scale: float = 1.5,
                      **options) -> BetaBinomialFit:
    """Fit :func:`beta_binomial_model` to per-problem counts with :func:`ppl.infer`.

    Args:
        n, correct: ``[P]`` samples and correct samples per problem.
        key: a JAX PRNG key.
        zero_inflated: add an unsolvable fraction :math:`\\pi_0` (coverage plateau).
        method: ``"nuts"`` (default: 2 chains x 400 warm-up + 400 draws) or
            ``"tempered_smc"``; ``**options`` go to the method.
    """
    n, c = _check_counts(n, correct)
    size = bucket(n.size)
    res = run_inference(
        beta_binomial_model, pad(n.astype(np.int32), size, 1), pad(c.astype(np.int32), size, 0),
        pad(np.ones(n.size, bool), size, False), key=key, method=method,
        zero_inflated=zero_inflated, concentration_loc=float(concentration_loc),
        concentration_scale=float(concentration_scale), **options)
    return BetaBinomialFit(res, n, c, zero_inflated, posterior_draws(res))


# ----------------------------------------------------------------------------- power law


def power_law_model(log_k, y=None, y_sd=None, mask=None, *, b_loc: float = -0.5, b_scale: float = 1.0,
                    sigma_scale: float = 0.5):
    r"""Bayesian regression :math:`y_j = \log(-a) + b \log k_j + \varepsilon_j` (numpyro).

    :math:`y_j = \log(-\log \widehat{\mathrm{cov}}(k_j))`, :math:`\varepsilon_j \sim
    \mathcal N(0, \mathrm{sd}_j^2 + \sigma^2)`. Sites: ``log_neg_a`` :math:`\sim \mathcal N(0,
    3)`, ``b`` :math:`\sim \mathcal N(b_\text{loc}, b_\text{scale})` truncated to
    :math:`b < 0`, ``sigma`` :math:`\sim \mathrm{HalfNormal}(\sigma_\text{scale})`,
    deterministic ``a`` :math:`= -e^{\text{log\_neg\_a}}`.
    """
    log_neg_a = numpyro.sample("log_neg_a", dist.Normal(0.0, 3.0))
    b = numpyro.sample("b", dist.TruncatedNormal(b_loc, b_scale, high=0.0))
    sigma = numpyro.sample("sigma", dist.HalfNormal(sigma_scale))
    numpyro.deterministic("a", -jnp.exp(log_neg_a))
    sd = sigma if y_sd is None else jnp.sqrt(y_sd**2 + sigma**2)
    with numpyro.plate("points", jnp.shape(log_k)[0]), numpyro.handlers.mask(
        mask=True if mask is None else mask
    ):
        numpyro.sample("y", dist.Normal(log_neg_a + b * log_k, sd), obs=y)


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    """Posterior of the coverage law :math:`\\exp(a k^b)`; curves by :meth:`coverage`.

    Attributes: ``result``, the fitted points ``k``, ``y``, ``y_sd`` and ``draws``.
    """

    result: object
    k: np.ndarray
    y: np.ndarray
    y_sd: np.ndarray
    draws: dict

    def coverage_draws(self, k) -> np.ndarray:
        k = np.atleast_1d(np.asarray(k, np.float64))
        if np.any(k <= 0):
            raise ValueError("coverage: k must be > 0")
        a, b = self.draws["a"][:, None], self.draws["b"][:, None]
        return np.exp(a * k[None, :] ** b)

    def coverage(self, k, *, level: float = 0.9) -> Band:
        """Posterior mean of :math:`\\exp(a k^b)` with its credible band (the law's curve)."""
        k = np.atleast_1d(np.asarray(k))
        m, lo, hi = interval(self.coverage_draws(k), level)
        return Band(k, m, lo, hi, level)

    def summary(self, level: float = 0.9) -> dict:
        return summarize(self.draws, ["a", "b", "sigma"], level)


def power_law_points(k, coverage, coverage_se):
    """Transform coverage estimates to :math:`y = \\log(-\\log \\mathrm{cov})` with delta-method
    standard errors; points with coverage not strictly inside (0, 1) are dropped.

    Returns ``(k, y, y_sd)``.
    """
    k = np.asarray(k, np.float64).ravel()
    cov = np.asarray(coverage, np.float64).ravel()
    se = np.asarray(coverage_se, np.float64).ravel() * np.ones_like(cov)
    keep = (cov > 0) & (cov < 1) & (k > 0)
    k, cov, se = k[keep], cov[keep], se[keep]
    nl = -np.log(cov)
    return k, np.log(nl), se / (cov * nl)


def fit_coverage_power_law(k, coverage, coverage_se=0.0, *, key, method: str = "nuts",
                           b_loc: float = -0.5, b_scale: float = 1.0, sigma_scale: float = 0.5,
                           **options) -> PowerLawFit:
    """Fit :math:`\\mathrm{coverage}(k) = \\exp(a k^b)` (Brown et al. 2024) to estimates.

    Args:
        k, coverage: ``[K]`` budgets and coverage estimates (e.g. :func:`pass_at_k_curve`);
            points with coverage 0 or 1 carry no information about the law and are dropped.
        coverage_se: standard errors of the estimates (scalar or ``[K]``); they enter through
            the delta method. The points are treated as independent: with a dense grid of
            ``k`` from the same samples the bands are optimistic.
        key: a JAX PRNG key. ``method`` / ``**options`` as in :func:`ppl.infer`.

    Raises:
        ValueError: fewer than 3 usable points.
    """
    kk, y, y_sd = power_law_points(k, coverage, coverage_se)
    if kk.size < 3:
        raise ValueError(
            "fit_coverage_power_law: need at least 3 points with 0 < coverage < 1, got "
            f"{kk.size}")
    size = bucket(kk.size)
    res = run_inference(power_law_model, pad(np.log(kk), size, 0.0), pad(y, size, 0.0),
                        pad(y_sd, size, 1.0), pad(np.ones(kk.size, bool), size, False),
                        key=key, method=method,
                        b_loc=float(b_loc), b_scale=float(b_scale),
                        sigma_scale=float(sigma_scale), **options)
    return PowerLawFit(res, kk, y, y_sd, posterior_draws(res))


def fit_power_law_to_pass_at_k(curve: PassAtK, *, key, **options) -> PowerLawFit:
    """:func:`fit_coverage_power_law` on a :func:`pass_at_k_curve` (standard errors over
    problems)."""
    P = curve.per_problem.shape[0]
    se = curve.per_problem.std(axis=0, ddof=1) / np.sqrt(P) if P > 1 else np.zeros_like(curve.k)
    return fit_coverage_power_law(curve.k, curve.estimate, se, key=key, **options)


__all__.append("fit_power_law_to_pass_at_k")
__all__.append("power_law_points")
