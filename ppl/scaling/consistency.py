r"""Perplexity consistency and reasoning pruning (RPC; Zhou et al. 2025, "Bridging Internal
Probability and Self-Consistency for Effective and Efficient LLM Reasoning", NeurIPS 2025).

Perplexity consistency scores each answer by the summed path probability of its *distinct*
sampled paths, :math:`\hat p(a) = \sum_{x \in \mathcal{D},\ a(x) = a} \bar p(x)` with
:math:`\bar p = \exp(\text{mean token} \log p)` under the LM itself. Reasoning pruning first fits
a two-component Weibull mixture to the :math:`\bar p` (:func:`fit_weibull_mixture`) and drops the
paths that are more likely from the low-mean component *and* below the mean :math:`\bar p`.
:func:`rpc` is pruning, then perplexity consistency. Derivations: ``docs/scaling-methods.md``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import numpy as np

from ppl.scaling.aggregate import _as_answer_fn
from ppl.scaling.method import method
from ppl.scaling.result import ScalingResult, finish, generations
from ppl.scaling.sampling import Rollouts

__all__ = ["WeibullMixture", "fit_weibull_mixture", "perplexity_consistency", "reasoning_pruning", "rpc"]

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


def reasoning_pruning(path_probs, *, min_paths: int = 4) -> tuple[np.ndarray, Optional[WeibullMixture]]:
    r"""``(keep, mixture)``: which paths survive reasoning pruning.

    Path :math:`n` is dropped when its responsibility under the low component of the fitted
    Weibull mixture exceeds that of the high component **and** :math:`\bar p_n <
    \mathrm{mean}(\bar p)`; at least the most probable path always survives. With fewer than
    ``min_paths`` paths, or all path probabilities equal, nothing is pruned and ``mixture`` is
    ``None``.

    Parameters
    ----------
    path_probs
        ``[N]`` path probabilities :math:`\bar p_n \in (0, 1]` (exp of the mean token
        log-probability, e.g. ``np.exp(rollouts.mean_token_log_p)``).
    min_paths
        The fewest paths to fit a mixture to.
    """
    p = np.asarray(path_probs, np.float64).reshape(-1)
    if p.shape[0] < 1 or not np.all(np.isfinite(p)) or np.any(p <= 0):
        raise ValueError("path_probs: expected a non-empty array of finite positive probabilities")
    if isinstance(min_paths, bool) or not isinstance(min_paths, (int, np.integer)) or min_paths < 2:
        raise ValueError(f"min_paths: expected an integer >= 2, got {min_paths!r}")
    keep = np.ones(p.shape[0], bool)
    if p.shape[0] < min_paths or np.ptp(np.log(p)) < 1e-12:
        return keep, None
    mix = fit_weibull_mixture(p)
    resp = mix.responsibilities(p)
    keep = ~((resp[:, 0] > resp[:, 1]) & (p < p.mean()))
    return keep, mix


def _path_log_probs(pool: Rollouts) -> np.ndarray:
    lp = pool.mean_token_log_p
    if not np.all(np.isfinite(lp)):
        raise ValueError("rollouts: log_p has non-finite entries; perplexity consistency needs finite path "
                         "log-probabilities")
    return np.minimum(lp, 0.0)


def _consistency(method: str, rollouts: Rollouts, k, answer_fn, keep_fn) -> ScalingResult:
    if not isinstance(rollouts, Rollouts):
        raise TypeError(f"rollouts: expected a ppl.scaling.Rollouts (from ppl.scaling.rollouts), got "
                        f"{type(rollouts).__name__}")
    _as_answer_fn(answer_fn)
    pool = rollouts.take(k)
    log_pbar = _path_log_probs(pool)
    keep, mix = keep_fn(np.exp(log_pbar))
    # Each distinct path counts once: its probability goes to its first copy, repeats get weight 0.
    seen, first = set(), np.zeros(pool.n, bool)
    for i, g in enumerate(generations(pool.particles)):
        t = tuple(g)
        if t not in seen:
            seen.add(t)
            first[i] = True
    log_w = np.where(first & keep, log_pbar, -np.inf)
    diag = {"path_log_prob": log_pbar, "distinct": first, "kept": keep, "log_p": pool.log_p,
            "num_tokens": pool.num_tokens}
    if mix is not None:
        diag.update(weibull_weights=mix.weights, weibull_shapes=mix.shapes, weibull_scales=mix.scales)
    return finish(method, pool.particles, log_w, scores=pool.scores, answer_fn=answer_fn, select="vote",
                  compute=pool.compute(with_reward=False), budget=pool.n, diagnostics=diag)


def perplexity_consistency(rollouts: Rollouts, k: Optional[int] = None, *,
                           answer_fn: Optional[Callable] = None) -> ScalingResult:
    r"""Perplexity consistency on the first ``k`` rollouts: the answer maximising
    :math:`\hat p(a) = \sum_{\text{distinct paths } x,\ a(x) = a} \exp(\text{mean token} \log p(x))`.

    ``log_weights`` hold :math:`\log \bar p` on the first copy of each distinct path and
    :math:`-\infty` on repeats, so ``answer_posterior`` is :math:`\hat p` normalised.
    ``diagnostics``: ``path_log_prob`` (:math:`\log \bar p_n`), ``distinct``, ``kept``.
    """
    return _consistency("perplexity_consistency", rollouts, k, answer_fn,
                        lambda p: (np.ones(p.shape[0], bool), None))


@method(batchable=False, uses_reward=False,
        from_pool=lambda pool, k, answer_fn, settings: rpc(pool, k, answer_fn=answer_fn))
def rpc(rollouts: Rollouts, k: Optional[int] = None, *, answer_fn: Optional[Callable] = None,
        min_paths: int = 4) -> ScalingResult:
    r"""RPC on the first ``k`` rollouts: :func:`reasoning_pruning` of the path probabilities, then
    :func:`perplexity_consistency` on the surviving paths (pruned paths get weight 0).

    ``diagnostics`` adds the fitted mixture (``weibull_weights``, ``weibull_shapes``,
    ``weibull_scales``, low component first) when one was fitted.
    """
    if isinstance(min_paths, bool) or not isinstance(min_paths, (int, np.integer)) or min_paths < 2:
        raise ValueError(f"min_paths: expected an integer >= 2, got {min_paths!r}")
    return _consistency("rpc", rollouts, k, answer_fn, lambda p: reasoning_pruning(p, min_paths=min_paths))
