r"""The analytically tractable LLM-as-a-judge selection model (Dec 2025), simulated exactly.

The LLM-as-a-judge selection model (Halder & Pehlevan, Dec 2025, "Demystifying LLM-as-a-Judge:
Analytically Tractable Model for Inference-Time Scaling", arXiv 2512.19905) replaces the LM by
Bayesian linear regression and the judge by a quadratic reward:

* **Teacher.** Inputs :math:`x \sim \mathcal N(0, I_d)`, labels
  :math:`y = w_T^\top x/\sqrt d + \eta`, :math:`\eta \sim \mathcal N(0, \sigma^2)`,
  :math:`\|w_T\|^2 = d` (signal variance 1). A training set has :math:`n` pairs
  :math:`(X, \mathbf y)`.
* **Student (the "LM").** Prior :math:`w \sim \mathcal N(0, \gamma^2 I_d)`, likelihood
  :math:`\mathbf y \mid w \sim \mathcal N(Xw/\sqrt d, \sigma^2 I_n)`. The posterior is Gaussian
  in closed form,

  .. math::

      \Omega = \Bigl(\frac{X^\top X}{d\,\sigma^2} + \frac{I_d}{\gamma^2}\Bigr)^{-1}, \qquad
      \mu = \Omega\,\frac{X^\top \mathbf y}{\sqrt d\,\sigma^2},

  and so is the posterior predictive at a test input :math:`x`:
  :math:`\hat y \sim \mathcal N\bigl(m(x), s^2(x)\bigr)` with :math:`m = \mu^\top x/\sqrt d`,
  :math:`s^2 = x^\top \Omega x / d + \sigma^2`.
* **Inference-time sampling and the judge.** Draw :math:`k` answers
  :math:`\hat y_1,\dots,\hat y_k` i.i.d. from the predictive, score each with the quadratic
  reward :math:`R(\hat y) = -(\hat y - w_R^\top x/\sqrt d)^2` of a linear judge :math:`w_R`,
  and return :math:`\hat y_j` with probability
  :math:`\mathrm{softmax}_j(R(\hat y_j)/T)`; :math:`T = 0` is best-of-:math:`k` (the arg max),
  :math:`T = \infty` a uniformly random answer (the same as :math:`k = 1`).
* **Error.** The excess error of the selected answer over the Bayes error :math:`\sigma^2`,

  .. math::

      \mathcal E(k, T) = \mathbb E\bigl[(\hat y_{\mathrm{sel}} - w_T^\top x/\sqrt d)^2\bigr]
      = \mathbb E\bigl[(\hat y_{\mathrm{sel}} - y)^2\bigr] - \sigma^2,

  the expectation over teachers, training sets, test inputs, answers and the selection.
  At :math:`k = 1`, :math:`\mathcal E = \mathbb E[(m - y^*)^2 + s^2]` with
  :math:`y^* = w_T^\top x/\sqrt d`.

The judge is the teacher when :math:`w_R = w_T`; it is misspecified by its overlap
:math:`\rho = w_R^\top w_T/\|w_R\|\|w_T\|` (``reward_overlap``) and its norm
:math:`\nu = \|w_R\|/\sqrt d` (``reward_norm``):
:math:`w_R = \nu(\rho\, w_T + \sqrt{1-\rho^2}\, w_\perp)` with :math:`w_\perp \perp w_T`
uniform, :math:`\|w_\perp\|^2 = d`.

What the simulation shows (the paper's claims):

(a) With the teacher as reward, best-of-:math:`k` excess error decays as
    :math:`\Theta(1/k^2)` (the paper derives the leading coefficient by extreme value theory;
    here, a nearest-neighbour argument). The selected answer is the draw nearest to
    :math:`y^*`; among :math:`k` draws of density :math:`f` the nearest one is at distance
    :math:`D \approx \mathrm{Exp}(2 f(y^*) k)`, so :math:`\mathbb E[D^2] \approx
    1/(2 f(y^*)^2 k^2) = \pi s^2 e^{z^2}/k^2` with :math:`z = (y^* - m)/s`. Hence
    :math:`k^2 \mathcal E(k, 0) \to C = \mathbb E[\pi s^2 e^{z^2}]` (finite when the posterior
    spread of :math:`m` is below :math:`\sigma^2`, as it is once :math:`n` is a few times
    :math:`d`); :func:`fit_judge_decay` fits the log-log slope, about :math:`-2`.
(b) With a misspecified reward the answers concentrate, as :math:`k \to \infty`, on the judge's
    target :math:`y_R = w_R^\top x/\sqrt d`, whose error :math:`(y_R - y^*)^2` can exceed the
    error reached at moderate :math:`k`. The same argument gives, with :math:`b = y_R - y^*`,

    .. math::

        \mathcal E(k,0) - \mathbb E[b^2] \approx
        \mathbb E\Bigl[\frac{1 - 2b\,(y_R - m)/s^2}{2 f(y_R)^2 k^2}\Bigr],

    negative when the judge's bias is large against the predictive spread: the curve then
    approaches its limit from below, and there is a finite optimal :math:`k`
    (:func:`judge_optimal_k`).
(c) For fixed :math:`k` the temperature trades the over-optimisation of a misspecified judge
    (:math:`T \to 0`) against no selection at all (:math:`T \to \infty`): there is an optimal
    :math:`T` (:func:`judge_optimal_temperature`).

**Exact simulation.** Everything Gaussian is sampled exactly: teacher, training set, the
closed-form posterior (one Cholesky factor per training set), test inputs, and :math:`k_{\max}`
predictive draws per test input; the softmax selection is averaged out exactly
(:math:`\sum_j \mathrm{softmax}_j(R_j/T)\,(\hat y_j - y^*)^2`), and the curves for all
:math:`k \le k_{\max}` use the first :math:`k` of the same draws (one pass over the draws:
an online softmax for :math:`T > 0`, a running arg max for :math:`T = 0`), so differences
between :math:`k` (and :math:`T`) are not swamped by sampling noise. Replications are
vectorised in JAX, with explicit keys; uncertainty is over training sets (the test inputs of
one training set share its posterior), by the standard error and by a bootstrap over training
sets.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GaussianPosterior", "blr_posterior", "blr_predictive", "selection_errors",
    "JudgeSelectionResult", "simulate_judge_selection", "JudgeDecayFit", "fit_judge_decay",
    "JudgeOptimum", "judge_optimal_k", "judge_optimal_temperature",
]


# --------------------------------------------------------------------------- closed forms


class GaussianPosterior(NamedTuple):
    """The posterior :math:`w \\mid D \\sim \\mathcal N(\\mu, \\Omega)`: ``mean [..., d]``,
    ``cov [..., d, d]``."""

    mean: jax.Array
    cov: jax.Array


def _check_positive(name: str, value, fn: str) -> None:
    v = np.asarray(value, np.float64)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ValueError(f"{fn}: {name} must be finite and > 0, got {value!r}")


def blr_posterior(X, y, *, noise: float, prior_scale: float = 1.0) -> GaussianPosterior:
    r"""The closed-form posterior of :math:`\mathbf y = Xw/\sqrt d + \eta`,
    :math:`\eta\sim\mathcal N(0,\sigma^2 I)`, :math:`w \sim \mathcal N(0, \gamma^2 I)`.

    ``X [..., n, d]``, ``y [..., n]`` (leading dimensions are batched); ``noise`` is
    :math:`\sigma`, ``prior_scale`` is :math:`\gamma`. Returns ``GaussianPosterior`` with
    :math:`\Omega = (X^\top X/(d\sigma^2) + I/\gamma^2)^{-1}` and
    :math:`\mu = \Omega X^\top\mathbf y/(\sqrt d\,\sigma^2)`, computed through a Cholesky factor
    of the precision.
    """
    X = jnp.asarray(X)
    y = jnp.asarray(y)
    if X.ndim < 2:
        raise ValueError(f"blr_posterior: X must be [..., n, d], got shape {X.shape}")
    if y.shape != X.shape[:-1]:
        raise ValueError(f"blr_posterior: y must have shape {X.shape[:-1]} (X without its last "
                         f"axis), got {y.shape}")
    _check_positive("noise", noise, "blr_posterior")
    _check_positive("prior_scale", prior_scale, "blr_posterior")
    chol, mean = _posterior_chol(X, y, noise, prior_scale)
    eye = jnp.broadcast_to(jnp.eye(X.shape[-1], dtype=chol.dtype), chol.shape)
    cov = jax.scipy.linalg.cho_solve((chol, True), eye)
    return GaussianPosterior(mean, cov)


def _posterior_chol(X, y, noise, prior_scale):
    d = X.shape[-1]
    Xt = jnp.swapaxes(X, -1, -2)
    prec = Xt @ X / (d * noise**2) + jnp.eye(d, dtype=X.dtype) / prior_scale**2
    chol = jnp.linalg.cholesky(prec)
    rhs = (Xt @ y[..., None])[..., 0] / (math.sqrt(d) * noise**2)
    mean = jax.scipy.linalg.cho_solve((chol, True), rhs[..., None])[..., 0]
    return chol, mean


def blr_predictive(posterior: GaussianPosterior, x, *, noise: float):
    r"""Mean and variance of :math:`\hat y \mid x, D`: :math:`(\mu^\top x/\sqrt d,\;
    x^\top\Omega x/d + \sigma^2)`. ``x [..., m, d]`` (test inputs per posterior) or ``[..., d]``.
    """
    _check_positive("noise", noise, "blr_predictive")
    x = jnp.asarray(x)
    d = posterior.mean.shape[-1]
    if x.shape[-1] != d:
        raise ValueError(f"blr_predictive: x must have last axis d={d}, got {x.shape}")
    if x.ndim == posterior.mean.ndim:  # one input per posterior
        mean = jnp.sum(x * posterior.mean, -1) / math.sqrt(d)
        var = jnp.einsum("...i,...ij,...j->...", x, posterior.cov, x) / d + noise**2
    else:
        mean = jnp.einsum("...mi,...i->...m", x, posterior.mean) / math.sqrt(d)
        var = jnp.einsum("...mi,...ij,...mj->...m", x, posterior.cov, x) / d + noise**2
    return mean, var


def selection_errors(candidates, truth, judge_target, temperatures):
    r"""Expected squared error of the softmax-selected answer, for every prefix size.

    ``candidates [..., K]`` (answers), ``truth [...]`` (:math:`y^*`), ``judge_target [...]``
    (the reward's centre :math:`y_R`); ``temperatures [nT]`` (``0`` = arg max, ``inf`` = uniform).
    Returns ``[..., nT, K]``: entry ``k-1`` is
    :math:`\sum_{j\le k}\mathrm{softmax}_j(R_j/T)(\hat y_j - y^*)^2` with
    :math:`R_j = -(\hat y_j - y_R)^2`, over the first ``k`` candidates (ties of the arg max go to
    the earliest).
    """
    c = jnp.asarray(candidates)
    err = (c - jnp.asarray(truth)[..., None]) ** 2
    reward = -((c - jnp.asarray(judge_target)[..., None]) ** 2)
    temps = jnp.asarray(temperatures, c.dtype)

    temps = temps.reshape((-1,) + (1,) * err.ndim)[..., 0]  # [nT, 1, ..., 1]
    inv_t = jnp.where(jnp.isinf(temps), 0.0, 1.0 / jnp.where(temps > 0, temps, 1.0))
    greedy = temps == 0

    # One pass over the candidates (an online softmax): the running arg max for T = 0, and for
    # T > 0 the running max logit M with den = sum exp(l - M), num = sum exp(l - M) err.
    def step(carry, xs):
        best_r, best_e, m, den, num = carry
        r, e = xs
        take = r > best_r  # strict: ties keep the earliest
        best_r = jnp.where(take, r, best_r)
        best_e = jnp.where(take, e, best_e)
        logit = r * inv_t
        m_new = jnp.maximum(m, logit)
        scale = jnp.exp(m - m_new)
        w = jnp.exp(logit - m_new)
        den = den * scale + w
        num = num * scale + w * e
        out = jnp.where(greedy, best_e, num / den)
        return (best_r, best_e, m_new, den, num), out

    shape = (temps.shape[0],) + err.shape[:-1]
    init = (jnp.full(err.shape[:-1], -jnp.inf, err.dtype), jnp.zeros(err.shape[:-1], err.dtype),
            jnp.full(shape, -jnp.inf, err.dtype), jnp.zeros(shape, err.dtype),
            jnp.zeros(shape, err.dtype))
    _, out = jax.lax.scan(step, init, (jnp.moveaxis(reward, -1, 0), jnp.moveaxis(err, -1, 0)))
    # out: [K, nT, ...] -> [..., nT, K]
    return jnp.moveaxis(jnp.moveaxis(out, 0, -1), 0, -2)


# --------------------------------------------------------------------------- simulation


@dataclasses.dataclass(frozen=True)
class JudgeSelectionResult:
    r"""Simulated excess error :math:`\mathcal E(k, T)` of softmax selection.

    ``k [nK]``, ``temperature [nT]``; ``error [nT, nK]`` the mean over all replications,
    ``se [nT, nK]`` its standard error over training sets; ``per_dataset [D, nT, nK]`` the mean
    over the test inputs of each training set (for bootstraps); ``bok_coefficient`` the
    Monte-Carlo estimate of :math:`C = \mathbb E[\pi s^2 e^{(y^*-m)^2/s^2}]`, the limit of
    :math:`k^2\,\mathcal E(k, 0)` with the teacher as reward; ``k1_error`` the exact
    :math:`k = 1` error :math:`\mathbb E[(m - y^*)^2 + s^2]` averaged over the same replications;
    ``judge_error`` :math:`\mathbb E[(y_R - y^*)^2]`, the limit of :math:`\mathcal E(k,0)`
    as :math:`k\to\infty`; ``config`` the settings.
    """

    k: np.ndarray
    temperature: np.ndarray
    error: np.ndarray
    se: np.ndarray
    per_dataset: np.ndarray
    bok_coefficient: float
    k1_error: float
    judge_error: float
    config: dict

    def curve(self, temperature_index: int = 0) -> np.ndarray:
        """``error[temperature_index]``: the curve over ``k``."""
        return self.error[temperature_index]

    def to_dict(self) -> dict:
        return {
            "k": self.k.tolist(), "temperature": self.temperature.tolist(),
            "error": self.error.tolist(), "se": self.se.tolist(),
            "bok_coefficient": self.bok_coefficient, "k1_error": self.k1_error,
            "judge_error": self.judge_error, "config": dict(self.config),
        }


def _as_int(name: str, value, minimum: int, fn: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{fn}: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_ks(ks, fn: str) -> np.ndarray:
    k = np.asarray(ks)
    if k.ndim != 1 or k.size == 0:
        raise ValueError(f"{fn}: ks must be a non-empty 1-d sequence of sample counts, got {ks!r}")
    if not np.issubdtype(k.dtype, np.integer):
        if not np.all(np.isfinite(k)) or np.any(k != np.round(k)):
            raise ValueError(f"{fn}: ks must be integers, got {ks!r}")
    k = k.astype(np.int64)
    if np.any(k < 1):
        raise ValueError(f"{fn}: ks must be >= 1, got {ks!r}")
    if np.any(np.diff(k) <= 0):
        raise ValueError(f"{fn}: ks must be strictly increasing, got {ks!r}")
    return k


def _check_temperatures(temperatures, fn: str) -> np.ndarray:
    t = np.atleast_1d(np.asarray(temperatures, np.float64))
    if t.ndim != 1 or t.size == 0 or np.any(np.isnan(t)) or np.any(t < 0):
        raise ValueError(f"{fn}: temperatures must be a non-empty 1-d sequence of values >= 0 "
                         f"(0 = best-of-k, inf = uniform), got {temperatures!r}")
    return t


@partial(jax.jit, static_argnames=("dim", "num_train", "num_test", "k_max", "batch"))
def _simulate_batch(key, temps, k_index, *, dim, num_train, num_test, k_max, batch, noise,
                    prior_scale, reward_overlap, reward_norm):
    """One batch of ``batch`` training sets: per-dataset means ``[batch, nT, nK]`` and the
    per-dataset sums of the diagnostics."""
    kt, kp, kx, ke, ks, kc = jax.random.split(key, 6)
    sd = math.sqrt(dim)
    g = jax.random.normal(kt, (batch, dim))
    w_t = sd * g / jnp.linalg.norm(g, axis=-1, keepdims=True)
    h = jax.random.normal(kp, (batch, dim))
    h = h - jnp.sum(h * w_t, -1, keepdims=True) * w_t / dim
    w_perp = sd * h / jnp.linalg.norm(h, axis=-1, keepdims=True)
    w_r = reward_norm * (reward_overlap * w_t
                         + jnp.sqrt(jnp.maximum(1.0 - reward_overlap**2, 0.0)) * w_perp)

    X = jax.random.normal(kx, (batch, num_train, dim))
    y = jnp.einsum("bnd,bd->bn", X, w_t) / sd + noise * jax.random.normal(ke, (batch, num_train))
    chol, mu = _posterior_chol(X, y, noise, prior_scale)

    xs = jax.random.normal(ks, (batch, num_test, dim))
    m = jnp.einsum("bmd,bd->bm", xs, mu) / sd
    # x^T Omega x = |L^{-1} x|^2 with L L^T the precision
    v = jax.scipy.linalg.solve_triangular(chol, jnp.swapaxes(xs, -1, -2), lower=True)
    s2 = jnp.sum(v**2, axis=-2) / dim + noise**2  # [batch, num_test]
    s = jnp.sqrt(s2)
    y_star = jnp.einsum("bmd,bd->bm", xs, w_t) / sd
    y_r = jnp.einsum("bmd,bd->bm", xs, w_r) / sd

    cand = m[..., None] + s[..., None] * jax.random.normal(kc, (batch, num_test, k_max))
    # materialise the draws before the scan: fused into its body they run ~10x slower on CPU
    cand, y_star, y_r = jax.lax.optimization_barrier((cand, y_star, y_r))
    errs = selection_errors(cand, y_star, y_r, temps)  # [batch, num_test, nT, k_max]
    per_dataset = jnp.mean(errs[..., k_index], axis=1)  # [batch, nT, nK]

    z2 = (y_star - m) ** 2 / s2
    bok = jnp.mean(jnp.pi * s2 * jnp.exp(z2), axis=1)
    k1 = jnp.mean((m - y_star) ** 2 + s2, axis=1)
    judge = jnp.mean((y_r - y_star) ** 2, axis=1)
    return per_dataset, bok, k1, judge


def simulate_judge_selection(key, ks, temperatures=(0.0,), *, dim: int = 32,
                             num_train: int = 128, noise: float = 0.5, prior_scale: float = 1.0,
                             reward_overlap: float = 1.0, reward_norm: float = 1.0,
                             num_datasets: int = 512, num_test: int = 16,
                             batch: int = 128) -> JudgeSelectionResult:
    r"""Simulate the selection model exactly and return :math:`\mathcal E(k, T)`.

    ``key``: a JAX PRNG key (the only source of randomness: same key, same result).
    ``ks``: strictly increasing sample counts (the largest sets how many answers are drawn per
    test input). ``temperatures``: softmax temperatures (``0`` = best-of-k, ``inf`` = uniform).
    ``dim`` :math:`d`, ``num_train`` :math:`n`, ``noise`` :math:`\sigma`, ``prior_scale``
    :math:`\gamma`; the judge ``w_R`` has overlap ``reward_overlap`` :math:`\rho\in[-1,1]` with the
    teacher and norm ``reward_norm`` :math:`\cdot\sqrt d` (``1.0, 1.0`` = the teacher).
    ``num_datasets`` teachers and training sets, ``num_test`` test inputs each, simulated
    ``batch`` training sets at a time (``num_datasets`` is rounded up to a multiple of ``batch``).
    """
    fn = "simulate_judge_selection"
    k = _check_ks(ks, fn)
    t = _check_temperatures(temperatures, fn)
    dim = _as_int("dim", dim, 1, fn)
    num_train = _as_int("num_train", num_train, 1, fn)
    num_datasets = _as_int("num_datasets", num_datasets, 2, fn)
    num_test = _as_int("num_test", num_test, 1, fn)
    batch = _as_int("batch", batch, 1, fn)
    _check_positive("noise", noise, fn)
    _check_positive("prior_scale", prior_scale, fn)
    if not (np.isfinite(reward_overlap) and -1.0 <= reward_overlap <= 1.0):
        raise ValueError(f"{fn}: reward_overlap must be in [-1, 1], got {reward_overlap!r}")
    if not (np.isfinite(reward_norm) and reward_norm >= 0):
        raise ValueError(f"{fn}: reward_norm must be finite and >= 0, got {reward_norm!r}")
    batch = min(batch, num_datasets)
    try:
        keys = jax.random.split(key, -(-num_datasets // batch))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{fn}: key must be a JAX PRNG key, got {key!r}") from e

    per, bok, k1, judge = [], [], [], []
    for kb in keys:
        p, b, c, j = _simulate_batch(
            kb, jnp.asarray(t, jnp.float32), jnp.asarray(k - 1), dim=dim, num_train=num_train,
            num_test=num_test, k_max=int(k[-1]), batch=batch, noise=float(noise),
            prior_scale=float(prior_scale), reward_overlap=float(reward_overlap),
            reward_norm=float(reward_norm))
        per.append(np.asarray(p, np.float64))
        bok.append(np.asarray(b, np.float64))
        k1.append(np.asarray(c, np.float64))
        judge.append(np.asarray(j, np.float64))
    per = np.concatenate(per)
    D = per.shape[0]
    config = dict(dim=dim, num_train=num_train, noise=float(noise),
                  prior_scale=float(prior_scale), reward_overlap=float(reward_overlap),
                  reward_norm=float(reward_norm), num_datasets=D, num_test=num_test)
    return JudgeSelectionResult(
        k=k, temperature=t, error=per.mean(0), se=per.std(0, ddof=1) / math.sqrt(D),
        per_dataset=per, bok_coefficient=float(np.concatenate(bok).mean()),
        k1_error=float(np.concatenate(k1).mean()), judge_error=float(np.concatenate(judge).mean()),
        config=config)


# --------------------------------------------------------------------------- summaries


def _boot_index(key, num_boot: int, D: int, fn: str) -> np.ndarray:
    num_boot = _as_int("num_boot", num_boot, 1, fn)
    try:
        return np.asarray(jax.random.randint(key, (num_boot, D), 0, D))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{fn}: key must be a JAX PRNG key, got {key!r}") from e


def _check_level(level: float, fn: str) -> None:
    if not 0 < level < 1:
        raise ValueError(f"{fn}: level must be in (0, 1), got {level!r}")


@dataclasses.dataclass(frozen=True)
class JudgeDecayFit:
    r"""Least-squares line :math:`\log\mathcal E = \text{intercept} + \text{slope}\,\log k` over
    ``k`` in ``[k_min, k_max]``; ``ci_low``/``ci_high`` the equal-tailed bootstrap interval
    (over training sets) of the slope at probability ``level``; ``coefficient`` =
    :math:`e^{\text{intercept}}`."""

    slope: float
    ci_low: float
    ci_high: float
    intercept: float
    coefficient: float
    k_min: int
    k_max: int
    level: float


def _loglog_slope(k, curves):
    """Slopes and intercepts of log(curve) on log(k); ``curves [..., nK]``."""
    lx = np.log(k)
    lx = lx - lx.mean()
    ly = np.log(curves)
    b = (ly - ly.mean(-1, keepdims=True)) @ lx / (lx @ lx)
    a = ly.mean(-1) - b * np.log(k).mean()
    return b, a


def fit_judge_decay(result: JudgeSelectionResult, *, key, temperature_index: int = 0,
                    k_min: int = 8, k_max: int | None = None, level: float = 0.9,
                    num_boot: int = 1000) -> JudgeDecayFit:
    r"""Fit the log-log slope of :math:`\mathcal E(k, T)` for ``k`` in ``[k_min, k_max]``,
    with a bootstrap over training sets (``key`` for the resampling). With the teacher as reward
    and ``T = 0`` the slope is about :math:`-2` (:math:`\Theta(1/k^2)`)."""
    fn = "fit_judge_decay"
    _check_level(level, fn)
    if not -len(result.temperature) <= temperature_index < len(result.temperature):
        raise ValueError(f"{fn}: temperature_index {temperature_index} out of range for "
                         f"{len(result.temperature)} temperatures")
    k_max = int(result.k[-1]) if k_max is None else k_max
    sel = (result.k >= k_min) & (result.k <= k_max)
    if sel.sum() < 2:
        raise ValueError(f"{fn}: need at least 2 values of k in [k_min={k_min}, k_max={k_max}], "
                         f"have {result.k.tolist()}")
    k = result.k[sel].astype(np.float64)
    per = result.per_dataset[:, temperature_index, sel]
    if np.any(result.error[temperature_index, sel] <= 0):
        raise ValueError(f"{fn}: the error must be > 0 on [k_min, k_max] to take logs")
    slope, intercept = _loglog_slope(k, per.mean(0))
    idx = _boot_index(key, num_boot, per.shape[0], fn)
    boot, _ = _loglog_slope(k, np.maximum(per[idx].mean(1), np.finfo(np.float64).tiny))
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return JudgeDecayFit(float(slope), float(lo), float(hi), float(intercept),
                    float(np.exp(intercept)), int(k[0]), int(k[-1]), level)


@dataclasses.dataclass(frozen=True)
class JudgeOptimum:
    r"""The arg min of an error curve over a grid: ``value`` (the optimal ``k`` or ``T``),
    ``error`` there, ``ci_low``/``ci_high`` the bootstrap interval of the arg min (over training
    sets), ``interior`` whether the arg min is strictly inside the grid, and ``prob_interior``
    the bootstrap probability of that; ``grid`` and ``errors`` the curve."""

    value: float
    error: float
    ci_low: float
    ci_high: float
    interior: bool
    prob_interior: float
    grid: np.ndarray
    errors: np.ndarray
    level: float


def _optimum(grid, per, key, level, num_boot, fn) -> JudgeOptimum:
    _check_level(level, fn)
    curve = per.mean(0)
    i = int(np.argmin(curve))
    idx = _boot_index(key, num_boot, per.shape[0], fn)
    bi = np.argmin(per[idx].mean(1), axis=-1)
    lo, hi = np.quantile(grid[bi], [0.5 - level / 2, 0.5 + level / 2], method="inverted_cdf")
    inside = (bi > 0) & (bi < len(grid) - 1)
    return JudgeOptimum(float(grid[i]), float(curve[i]), float(lo), float(hi),
                   bool(0 < i < len(grid) - 1), float(inside.mean()), np.asarray(grid),
                   curve, level)


def judge_optimal_k(result: JudgeSelectionResult, *, key, temperature_index: int = 0,
                    level: float = 0.9, num_boot: int = 1000) -> JudgeOptimum:
    """The ``k`` of ``result.k`` with the lowest error at ``temperature[temperature_index]``; a
    finite (interior) optimum appears with a misspecified reward."""
    fn = "judge_optimal_k"
    if not -len(result.temperature) <= temperature_index < len(result.temperature):
        raise ValueError(f"{fn}: temperature_index {temperature_index} out of range for "
                         f"{len(result.temperature)} temperatures")
    return _optimum(result.k.astype(np.float64), result.per_dataset[:, temperature_index, :],
                    key, level, num_boot, fn)


def judge_optimal_temperature(result: JudgeSelectionResult, *, key, k: int,
                              level: float = 0.9, num_boot: int = 1000) -> JudgeOptimum:
    """The temperature of ``result.temperature`` with the lowest error at ``k`` (one of
    ``result.k``); simulate with a grid of temperatures (ascending) to locate it."""
    fn = "judge_optimal_temperature"
    hits = np.flatnonzero(result.k == k)
    if hits.size == 0:
        raise ValueError(f"{fn}: k={k!r} is not one of the simulated ks {result.k.tolist()}")
    if np.any(np.diff(result.temperature) <= 0):
        raise ValueError(f"{fn}: result.temperature must be strictly increasing, got "
                         f"{result.temperature.tolist()}")
    return _optimum(result.temperature, result.per_dataset[:, :, hits[0]], key, level,
                    num_boot, fn)
