r"""Imperfect verifiers: the accuracy ceiling of resampling until accepted, the utility of K
attempts and the optimal K (Stroebl, Kapoor, Narayanan 2024, "Inference Scaling fLaws"), as
closed forms and as a Bayesian model fitted to (correct, accepted) data.

Task type :math:`j` has weight :math:`p_j` and single-sample correctness :math:`r_j`. The
verifier accepts a correct answer with probability :math:`c` (true-positive rate) and an
incorrect one with probability :math:`1 - s` (false-positive rate; :math:`s` is the
specificity). :math:`c` and :math:`s` may differ per type (``fit_verifier(...,
per_type=True)``; the closed forms broadcast them against :math:`r_j`). One attempt is accepted with
probability :math:`c r_j + (1-s)(1-r_j)` and rejected with :math:`\beta_j = 1 - c r_j -
(1-s)(1-r_j)`. Resampling until accepted returns a correct answer with probability

.. math::

    A_\infty = \sum_j p_j \frac{c\, r_j}{c\, r_j + (1-s)(1-r_j)} .

With value :math:`V_c > 0` for an accepted correct answer, :math:`V_{fp} < 0` for an accepted
incorrect one, and 0 for abstaining after :math:`K` rejections, the expected utility of up to
:math:`K` attempts is

.. math::

    U(K) = \sum_j p_j\, u_j \frac{1 - \beta_j^K}{1 - \beta_j}, \qquad
    u_j = V_c\, c\, r_j + V_{fp} (1-s)(1-r_j),

the gain of attempt :math:`k` is :math:`\Delta(k) = \sum_j p_j \beta_j^{k-1} u_j`, and the
optimal :math:`K` is the last :math:`k` with :math:`\Delta(k) > 0` (often below 10) — the
arg max of :math:`U` when :math:`\Delta` changes sign once; :func:`optimal_k` returns the arg max.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_models.scaling._common import (
    Band, bucket, interval, pad, posterior_draws, run_inference, summarize,
)

__all__ = [
    "accuracy_ceiling",
    "rejection_prob",
    "expected_utility",
    "marginal_utility",
    "optimal_k",
    "accuracy_at_k",
    "verifier_model",
    "VerifierData",
    "verifier_data",
    "fit_verifier",
    "VerifierFit",
]


def _weights(p, r):
    r = np.asarray(r, np.float64)
    if p is None:
        return np.full(r.shape[-1], 1.0 / r.shape[-1])
    p = np.asarray(p, np.float64)
    if np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError(f"type weights p must be >= 0 and sum to 1, got {p}")
    return p


def _check_prob(name, x):
    x = np.asarray(x, np.float64)
    if np.any((x < 0) | (x > 1)) or np.any(~np.isfinite(x)):
        raise ValueError(f"{name} must lie in [0, 1], got {x}")
    return x


def rejection_prob(r, c, s) -> np.ndarray:
    r""":math:`\beta = 1 - c r - (1-s)(1-r)`, the probability that one attempt is rejected."""
    r, c, s = (_check_prob(nm, x) for nm, x in (("r", r), ("c", c), ("s", s)))
    return 1.0 - c * r - (1.0 - s) * (1.0 - r)


def accuracy_ceiling(r, c, s, p=None) -> np.ndarray:
    r""":math:`A_\infty = \sum_j p_j c r_j / (c r_j + (1-s)(1-r_j))` (Stroebl et al. 2024).

    Args:
        r: ``[..., J]`` single-sample correctness per type (leading axes: e.g. draws).
        c, s: true-positive rate and specificity, scalars or broadcastable to ``r``.
        p: ``[J]`` type weights (default uniform).

    A type whose answers are never accepted contributes 0.
    """
    r, c, s = (_check_prob(nm, x) for nm, x in (("r", r), ("c", c), ("s", s)))
    p = _weights(p, r)
    num = c * r
    den = num + (1.0 - s) * (1.0 - r)
    frac = np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)
    return np.sum(p * frac, axis=-1)


def _utility_terms(r, c, s, value_correct, value_false_positive):
    if value_correct <= 0 or value_false_positive > 0:
        raise ValueError("need value_correct > 0 and value_false_positive <= 0")
    r, c, s = (_check_prob(nm, x) for nm, x in (("r", r), ("c", c), ("s", s)))
    u = value_correct * c * r + value_false_positive * (1.0 - s) * (1.0 - r)
    beta = 1.0 - c * r - (1.0 - s) * (1.0 - r)
    return u, np.clip(beta, 0.0, 1.0)


def expected_utility(K, r, c, s, p=None, *, value_correct: float = 1.0,
                     value_false_positive: float = -1.0) -> np.ndarray:
    r""":math:`U(K) = \sum_j p_j u_j (1-\beta_j^K)/(1-\beta_j)` for ``K [M]`` (>= 0).

    ``r`` is ``[..., J]``; the result is ``[..., M]``. With :math:`\beta_j = 1` the factor is 0.
    """
    K = np.atleast_1d(np.asarray(K, np.float64))
    if np.any(K < 0):
        raise ValueError("K must be >= 0")
    p = _weights(p, r)
    u, beta = _utility_terms(r, c, s, value_correct, value_false_positive)
    u, beta = np.broadcast_arrays(u, beta)
    b = beta[..., None, :]  # [..., 1, J]
    Kb = K[:, None]
    # (1 - b^K) / (1 - b) computed as -expm1(K log b) / (1 - b); b = 0 gives 1 for K >= 1.
    with np.errstate(divide="ignore", invalid="ignore"):
        logb = np.log(b)
        geo = np.where(b < 1.0, -np.expm1(Kb * logb) / (1.0 - b), 0.0)
        geo = np.where(b == 0.0, (Kb >= 1).astype(np.float64), geo)
    return np.sum(p * u[..., None, :] * geo, axis=-1)


def marginal_utility(k, r, c, s, p=None, *, value_correct: float = 1.0,
                     value_false_positive: float = -1.0) -> np.ndarray:
    r""":math:`\Delta(k) = U(k) - U(k-1) = \sum_j p_j \beta_j^{k-1} u_j` for ``k >= 1``."""
    k = np.atleast_1d(np.asarray(k, np.float64))
    if np.any(k < 1):
        raise ValueError("k must be >= 1")
    p = _weights(p, r)
    u, beta = _utility_terms(r, c, s, value_correct, value_false_positive)
    u, beta = np.broadcast_arrays(u, beta)
    with np.errstate(divide="ignore"):
        pw = np.where(k[:, None] == 1, 1.0, beta[..., None, :] ** (k[:, None] - 1))
    return np.sum(p * u[..., None, :] * pw, axis=-1)


def optimal_k(r, c, s, p=None, *, value_correct: float = 1.0, value_false_positive: float = -1.0,
              k_max: int = 10_000) -> np.ndarray:
    r"""The optimal number of attempts :math:`K^* = \arg\max_K U(K)` (the smallest maximiser;
    0 means abstain), or ``inf`` when :math:`U` keeps growing: the slowest-rejecting types
    have :math:`u_j > 0` and :math:`U(\infty) = \sum_j p_j u_j / (1-\beta_j)` exceeds
    :math:`\max_{K \le k_\max} U(K)`.

    When :math:`\Delta(k)` changes sign once, from + to -, this is the paper's rule, the last
    :math:`k` with :math:`\Delta(k) > 0`; with several sign changes (a type with negative
    :math:`u_j` rejected faster than one with positive :math:`u_j`) the rule can pick a
    :math:`K` of negative utility, so the arg max is used.

    ``r`` is ``[..., J]``; returns float ``[...]`` (``inf`` possible).
    """
    p = _weights(p, r)
    kw = dict(value_correct=value_correct, value_false_positive=value_false_positive)
    U = expected_utility(np.arange(0, k_max + 1), r, c, s, p, **kw)  # [..., k_max + 1]
    best = np.argmax(U - 1e-13 * np.arange(k_max + 1), axis=-1)  # smallest maximiser
    u, beta = _utility_terms(r, c, s, value_correct, value_false_positive)
    u, beta = np.broadcast_arrays(u, beta)
    bmax = np.max(np.where(p * np.abs(u) > 0, beta, -1.0), axis=-1, keepdims=True)
    lead = np.sum(np.where(beta == bmax, p * u, 0.0), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        u_inf = np.sum(np.where(beta < 1, p * u / (1 - beta), np.where(u > 0, np.inf, 0.0)),
                       axis=-1)
    best_u = np.take_along_axis(U, best[..., None], axis=-1)[..., 0]
    # The gain of the next attempt as a sum of products (no cancellation): positive when U
    # only stopped growing in floating point.
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        nxt = np.sum(p * u * beta ** best[..., None].astype(np.float64), axis=-1)
    forever = (lead > 0) & (bmax[..., 0] > 0) & (nxt > 0) & (u_inf >= best_u - 1e-12)
    return np.where(forever, np.inf, best.astype(np.float64))


def accuracy_at_k(K, r, c, s, p=None) -> np.ndarray:
    r"""Probability that up to K attempts end in an accepted correct answer:
    :math:`\sum_j p_j c r_j (1-\beta_j^K)/(1-\beta_j)` (tends to :math:`A_\infty`)."""
    return expected_utility(K, r, c, s, p, value_correct=1.0, value_false_positive=0.0)


# ----------------------------------------------------------------------------- Bayesian fit


class VerifierData(NamedTuple):
    """Counts per type ``[J]``: samples ``n``, ``correct``, accepted among correct
    ``accepted_correct``, accepted among incorrect ``accepted_incorrect``; ``weights [J]``
    (share of problems) and ``names``."""

    n: np.ndarray
    correct: np.ndarray
    accepted_correct: np.ndarray
    accepted_incorrect: np.ndarray
    weights: np.ndarray
    names: list


def verifier_data(group, correct, accepted) -> VerifierData:
    """Count per-sample ``correct`` / ``accepted`` (0/1 arrays ``[N]``) per ``group`` label.

    The group is the task type; with one group per problem every problem is its own type.
    Each group's weight is its share of distinct labels (uniform over groups).
    """
    group = np.asarray(group)
    correct = np.asarray(correct).astype(np.int64)
    accepted = np.asarray(accepted).astype(np.int64)
    if not (group.shape == correct.shape == accepted.shape) or group.ndim != 1:
        raise ValueError("group, correct and accepted must be 1-d arrays of equal length")
    for nm, x in (("correct", correct), ("accepted", accepted)):
        if np.any((x != 0) & (x != 1)):
            raise ValueError(f"{nm} must be 0/1")
    names, inv = np.unique(group, return_inverse=True)
    J = names.size
    n = np.bincount(inv, minlength=J)
    cor = np.bincount(inv, weights=correct, minlength=J).astype(np.int64)
    ac = np.bincount(inv, weights=correct * accepted, minlength=J).astype(np.int64)
    ai = np.bincount(inv, weights=(1 - correct) * accepted, minlength=J).astype(np.int64)
    return VerifierData(n, cor, ac, ai, np.full(J, 1.0 / J), names.tolist())


def verifier_model(n, correct, accepted_correct, accepted_incorrect, mask=None, *,
                   concentration_loc: float = 1.0, concentration_scale: float = 1.5,
                   per_type: bool = False):
    r"""Per-type correctness and a verifier's rates (numpyro).

    :math:`r_j \sim \mathrm{Beta}(\mu\kappa, (1-\mu)\kappa)` (hierarchical, as in
    :func:`~ppl_models.scaling.coverage.beta_binomial_model`), ``correct_j`` :math:`\sim
    \mathrm{Binomial}(n_j, r_j)`; true-positive rate ``c`` and specificity ``s``
    :math:`\sim \mathrm{Beta}(1, 1)`; accepted among correct :math:`\sim
    \mathrm{Binomial}(\text{correct}, c)`, among incorrect :math:`\sim
    \mathrm{Binomial}(n - \text{correct}, 1 - s)` (summed over types). Types where the
    boolean ``mask`` is false are padding (all their counts 0).

    With ``per_type=True`` every type has its own rates, partially pooled like :math:`r_j`:
    :math:`c_j \sim \mathrm{Beta}(\mu_c\kappa_c, (1-\mu_c)\kappa_c)`,
    :math:`s_j \sim \mathrm{Beta}(\mu_s\kappa_s, (1-\mu_s)\kappa_s)` (sites ``c``, ``s``
    ``[J]``; ``c_mean``, ``c_concentration``, ``s_mean``, ``s_concentration``), and the
    acceptance counts are per type.
    """
    mu = numpyro.sample("mean", dist.Beta(1.0, 1.0))
    kappa = numpyro.sample("concentration", dist.LogNormal(concentration_loc, concentration_scale))
    if per_type:
        rates = {}
        for name in ("c", "s"):
            rates[name] = (numpyro.sample(f"{name}_mean", dist.Beta(1.0, 1.0)),
                           numpyro.sample(f"{name}_concentration",
                                          dist.LogNormal(concentration_loc + 1.0,
                                                         concentration_scale)))
    else:
        c = numpyro.sample("c", dist.Beta(1.0, 1.0))
        s = numpyro.sample("s", dist.Beta(1.0, 1.0))
    with numpyro.plate("types", jnp.shape(n)[0]):
        r = numpyro.sample("r", dist.Beta(mu * kappa, (1.0 - mu) * kappa))
        if per_type:
            (mc, kc), (ms, ks) = rates["c"], rates["s"]
            c = numpyro.sample("c", dist.Beta(mc * kc, (1.0 - mc) * kc))
            s = numpyro.sample("s", dist.Beta(ms * ks, (1.0 - ms) * ks))
        with numpyro.handlers.mask(mask=True if mask is None else mask):
            numpyro.sample("correct", dist.Binomial(n, r), obs=correct)
            if per_type:
                numpyro.sample("accepted_correct", dist.Binomial(correct, c),
                               obs=accepted_correct)
                numpyro.sample("accepted_incorrect", dist.Binomial(n - correct, 1.0 - s),
                               obs=accepted_incorrect)
    if not per_type:
        numpyro.sample("accepted_correct", dist.Binomial(jnp.sum(correct), c),
                       obs=jnp.sum(accepted_correct))
        numpyro.sample("accepted_incorrect", dist.Binomial(jnp.sum(n - correct), 1.0 - s),
                       obs=jnp.sum(accepted_incorrect))


def _verifier_model_per_type(*args, **kwargs):
    """:func:`verifier_model` with ``per_type=True`` (a fixed function: compiled once)."""
    return verifier_model(*args, per_type=True, **kwargs)


@dataclasses.dataclass(frozen=True)
class VerifierFit:
    """Posterior of :func:`verifier_model`: ``draws`` of ``r [S, J]``, ``c``, ``s [S]``
    (``[S, J]`` when ``per_type``).

    :meth:`ceiling`, :meth:`optimal_k`, :meth:`utility` and :meth:`accuracy` evaluate the
    closed forms per draw and summarise them; :meth:`type_rates` gives per-type intervals.
    """

    result: object
    data: VerifierData
    draws: dict
    per_type: bool = False

    def _rcs(self):
        c, s = self.draws["c"], self.draws["s"]
        if not self.per_type:
            c, s = c[:, None], s[:, None]
        return self.draws["r"], c, s

    def ceiling_draws(self) -> np.ndarray:
        r, c, s = self._rcs()
        return accuracy_ceiling(r, c, s, self.data.weights)

    def ceiling(self, level: float = 0.9) -> dict:
        m, lo, hi = interval(self.ceiling_draws(), level)
        return {"mean": float(m), "ci_low": float(lo), "ci_high": float(hi), "level": level}

    def optimal_k_draws(self, *, value_correct=1.0, value_false_positive=-1.0, k_max=1000):
        r, c, s = self._rcs()
        return optimal_k(r, c, s, self.data.weights, value_correct=value_correct,
                         value_false_positive=value_false_positive, k_max=k_max)

    def optimal_k(self, level: float = 0.9, **kw) -> dict:
        """Posterior median and equal-tailed interval of the optimal K (may be ``inf``)."""
        d = self.optimal_k_draws(**kw)
        big = 1e300
        q = np.quantile(np.where(np.isinf(d), big, d), [0.5 - level / 2, 0.5, 0.5 + level / 2],
                        method="inverted_cdf")
        lo, med, hi = np.where(q >= big, np.inf, q)
        return {"median": float(med), "ci_low": float(lo), "ci_high": float(hi),
                "level": level, "prob_infinite": float(np.mean(np.isinf(d)))}

    def utility(self, K, *, level: float = 0.9, value_correct=1.0,
                value_false_positive=-1.0) -> Band:
        r, c, s = self._rcs()
        d = expected_utility(K, r, c, s, self.data.weights, value_correct=value_correct,
                             value_false_positive=value_false_positive)
        m, lo, hi = interval(d, level)
        return Band(np.atleast_1d(K), m, lo, hi, level)

    def accuracy(self, K, *, level: float = 0.9) -> Band:
        """Accuracy of resampling until accepted with at most K attempts, with a band."""
        r, c, s = self._rcs()
        m, lo, hi = interval(accuracy_at_k(K, r, c, s, self.data.weights), level)
        return Band(np.atleast_1d(K), m, lo, hi, level)

    def summary(self, level: float = 0.9) -> dict:
        """Scalar parameters: ``c``, ``s`` (with ``per_type``: the population means
        ``c_mean``, ``s_mean`` and concentrations), ``mean``, ``concentration``."""
        if self.per_type:
            return summarize(self.draws, ["c_mean", "c_concentration", "s_mean",
                                          "s_concentration", "mean", "concentration"], level)
        return summarize(self.draws, ["c", "s", "mean", "concentration"], level)

    def type_rates(self, level: float = 0.9) -> dict:
        """``{type name: {"r", "c", "s": {"mean", "ci_low", "ci_high", "level"}}}``; without
        ``per_type`` every type shares ``c`` and ``s``."""
        r, c, s = (np.broadcast_to(x, self.draws["r"].shape) for x in self._rcs())
        out = {}
        for j, name in enumerate(self.data.names):
            out[name] = summarize({"r": r[:, j], "c": c[:, j], "s": s[:, j]}, ["r", "c", "s"],
                                  level)
        return out


def fit_verifier(data: VerifierData, *, key, method: str = "nuts", per_type: bool = False,
                 **options) -> VerifierFit:
    """Fit :func:`verifier_model` to :class:`VerifierData` with :func:`ppl.infer`;
    ``per_type=True`` gives every type its own true-positive rate and specificity."""
    if not isinstance(data, VerifierData):
        raise TypeError("fit_verifier: pass the counts from verifier_data(group, correct, accepted)")
    J = data.n.size
    size = bucket(J)
    counts = [pad(np.asarray(x, np.int32), size, 0) for x in data[:4]]
    model = _verifier_model_per_type if per_type else verifier_model
    res = run_inference(model, *counts, pad(np.ones(J, bool), size, False), key=key,
                        method=method, **options)
    draws = posterior_draws(res)
    for name in ("r", "c", "s") if per_type else ("r",):
        draws[name] = draws[name][:, :J]  # drop the padding types (prior draws)
    return VerifierFit(res, data, draws, per_type)
