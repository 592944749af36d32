r"""The Bradley–Terry family as one numpyro likelihood with options.

Each model :math:`i` has a strength (rating) :math:`r_i` in logit units. A battle between
:math:`a` (shown first) and :math:`b` (shown second), judged by :math:`k` with covariates
:math:`x` (model-a-minus-model-b features), has the *latent difference*

.. math:: d = \alpha_k\,(r_a - r_b) + \gamma + \gamma_k + x^\top\beta ,

with a position (first-shown) bias :math:`\gamma`, per-judge bias :math:`\gamma_k` and
discrimination :math:`\alpha_k > 0` (:math:`\prod_k \alpha_k = 1`), and style coefficients
:math:`\beta`; each term is present only when asked for. The outcome probabilities
(first wins, second wins, tie) with link :math:`F` (logistic :math:`\sigma` for Bradley–Terry,
normal :math:`\Phi` for Thurstone Case V) are:

========================  ====================================  =====================================
``ties``                  :math:`P(a \succ b)`                  :math:`P(\text{tie})`
========================  ====================================  =====================================
``"none"``                :math:`F(d)`                          ties are discarded
``"half"``                :math:`F(d)`                          a tie counts as half a win each way
``"davidson"`` (logit)    :math:`e^{d/2} / (e^{d/2}+e^{-d/2}+\nu)`  :math:`\nu / (e^{d/2}+e^{-d/2}+\nu)`
``"rao_kupper"``          :math:`F(d-\eta)`                     :math:`1 - F(d-\eta) - F(-d-\eta)`
========================  ====================================  =====================================

Davidson (1970): :math:`P(\text{tie}) \propto \nu\sqrt{\pi_a\pi_b}` with :math:`\pi = e^r`.
Rao & Kupper (1967): :math:`P(a \succ b) = \pi_a / (\pi_a + \theta\pi_b)`, :math:`\eta = \log\theta
> 0`; with the probit link it is the Glenn–David (1960) model. ``"half"`` is the widely used
Arena recipe (a tie is half a win for each side); it is a pseudo-likelihood, not a generative
model, kept for parity with common practice.

Counts are weights: with :math:`n_{ro}` the count of outcome :math:`o` in row :math:`r` of the
aggregated table (:class:`ppl_models.judges.data.Comparisons`), the log-likelihood is
:math:`\sum_r \sum_o n_{ro}\log p_o(d_r)`, one term per pair and outcome, which equals the
per-battle log-likelihood exactly. Fractional counts are soft outcomes (the expected
log-likelihood under the outcome distribution, i.e. a cross-entropy).

Identification: ratings are only defined up to a shift. ``identify="sum_to_zero"`` (default)
samples :math:`K-1` coordinates :math:`z` and sets :math:`r = Qz` with :math:`Q` an orthonormal
basis of :math:`\{r : \sum_i r_i = 0\}`, so a ``Normal(0, s)`` prior on :math:`z` is exchangeable
across models; ``"anchor"`` fixes one model's rating at 0; ``"prior"`` leaves all :math:`K`
free under a proper ``Normal(0, s)`` prior. ``prior="flat"`` puts improper flat priors on every
real parameter (then the posterior mode is the maximum-likelihood estimate; NUTS only).

Sites: ``rating_free`` (latent), ``rating`` (deterministic ``[K]``), ``position_bias``,
``log_nu`` (Davidson), ``log_eta`` (Rao–Kupper), ``judge_bias [J]``,
``judge_log_discrimination_free [J-1]`` / ``judge_discrimination [J]``, ``beta [P]``, and the
factor ``log_likelihood``.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax.scipy.special import log_ndtr

from ppl_models.judges.data import Comparisons

__all__ = [
    "LINKS",
    "TIES",
    "bradley_terry",
    "elo_scale",
    "outcome_log_probs",
    "latent_difference",
    "simulate_battles",
    "sum_to_zero_basis",
]

LINKS = ("logit", "probit")
TIES = ("none", "half", "davidson", "rao_kupper")


def check_options(link: str, ties: str, identify: str = "sum_to_zero", prior: str = "normal"):
    """Validate the model options (raises ``ValueError`` naming the option and the fix)."""
    if link not in LINKS:
        raise ValueError(f"link must be one of {LINKS}, got {link!r}")
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    if ties == "davidson" and link != "logit":
        raise ValueError(
            "ties='davidson' is defined for the logit link; with link='probit' use "
            "ties='rao_kupper' (the Glenn–David model) or 'half'"
        )
    if identify not in ("sum_to_zero", "anchor", "prior"):
        raise ValueError(f"identify must be 'sum_to_zero', 'anchor' or 'prior', got {identify!r}")
    if prior not in ("normal", "flat"):
        raise ValueError(f"prior must be 'normal' or 'flat', got {prior!r}")
    if prior == "flat" and identify == "prior":
        raise ValueError(
            "identify='prior' needs a proper prior: with prior='flat' the ratings are not "
            "identified; use identify='sum_to_zero' or 'anchor'"
        )


def elo_scale(link: str = "logit") -> float:
    """Display points per unit of latent difference: :math:`400/\\ln 10` for the logit link
    (the Elo convention: 400 points = odds of 10:1); for the probit link the latent unit is
    first converted to logits with the usual factor 1.702."""
    base = 400.0 / math.log(10.0)
    return base if link == "logit" else base * 1.702


@functools.lru_cache(maxsize=64)
def _basis(k: int) -> np.ndarray:
    # Orthonormal basis of the sum-to-zero subspace: the last K-1 columns of a Householder
    # reflection that maps e_1 to 1/sqrt(K).
    if k == 1:
        return np.zeros((1, 0))
    v = np.ones(k) / math.sqrt(k)
    v[0] -= 1.0
    h = np.eye(k) - 2.0 * np.outer(v, v) / (v @ v)
    q = h[:, 1:]
    return q


def sum_to_zero_basis(k: int) -> np.ndarray:
    """``[K, K-1]`` orthonormal basis :math:`Q` of :math:`\\{r \\in \\mathbb R^K: \\sum r = 0\\}`
    (:math:`Q^\\top Q = I`, :math:`\\mathbf 1^\\top Q = 0`)."""
    return _basis(int(k)).copy()


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0, stable on both sides of -log 2."""
    return jnp.where(x > -0.6931472, jnp.log(-jnp.expm1(x)), jnp.log1p(-jnp.exp(x)))


def outcome_log_probs(d, *, link: str = "logit", ties: str = "none", log_nu=None, log_eta=None):
    """Log-probabilities ``[..., 3]`` of (first wins, second wins, tie) at latent difference ``d``.

    For ``ties`` ``"none"`` and ``"half"`` the tie entry is ``-inf`` (those models have no tie
    outcome; see :func:`bradley_terry` for how tie counts are treated).
    """
    d = jnp.asarray(d)
    if ties in ("none", "half"):
        if link == "logit":
            la, lb = jax.nn.log_sigmoid(d), jax.nn.log_sigmoid(-d)
        else:
            la, lb = log_ndtr(d), log_ndtr(-d)
        return jnp.stack([la, lb, jnp.full_like(d, -jnp.inf)], axis=-1)
    if ties == "davidson":
        if link != "logit":
            raise ValueError("ties='davidson' needs link='logit'")
        lnu = jnp.broadcast_to(log_nu, d.shape)
        terms = jnp.stack([d / 2, -d / 2, lnu], axis=-1)
        return terms - jax.scipy.special.logsumexp(terms, axis=-1, keepdims=True)
    if ties == "rao_kupper":
        eta = jnp.exp(log_eta)
        if link == "logit":
            la = jax.nn.log_sigmoid(d - eta)
            lb = jax.nn.log_sigmoid(-d - eta)
            # P(tie) = (theta^2 - 1) / ((e^{d/2} + theta e^{-d/2}) (theta e^{d/2} + e^{-d/2}))
            lt = (
                2 * eta
                + _log1mexp(-2 * eta)
                - jnp.logaddexp(d / 2, eta - d / 2)
                - jnp.logaddexp(eta + d / 2, -d / 2)
            )
        else:
            la, lb = log_ndtr(d - eta), log_ndtr(-d - eta)
            x = -jnp.abs(d)  # P(tie) = Phi(x + eta) - Phi(x - eta), symmetric in d
            hi, lo = log_ndtr(x + eta), log_ndtr(x - eta)
            lt = hi + _log1mexp(lo - hi)
        return jnp.stack([la, lb, lt], axis=-1)
    raise ValueError(f"ties must be one of {TIES}, got {ties!r}")


def effective_counts(counts, ties: str):
    """Outcome counts as the likelihood uses them: ties dropped (``"none"``), split half and
    half (``"half"``), or kept."""
    counts = jnp.asarray(counts)
    if ties == "none":
        return counts.at[..., 2].set(0.0)
    if ties == "half":
        t = counts[..., 2] / 2
        return jnp.stack([counts[..., 0] + t, counts[..., 1] + t, jnp.zeros_like(t)], axis=-1)
    return counts


def latent_difference(params: dict, data: Comparisons):
    """``[R]`` latent differences :math:`d` of the rows of ``data`` given constrained
    ``params`` (the ``rating`` site and whichever bias / covariate sites are present)."""
    r = params["rating"]
    first, second = jnp.asarray(data.first), jnp.asarray(data.second)
    diff = r[..., first] - r[..., second]
    if "judge_discrimination" in params:
        diff = params["judge_discrimination"][..., jnp.asarray(data.judge)] * diff
    if "position_bias" in params:
        diff = diff + jnp.asarray(params["position_bias"])[..., None]
    if "judge_bias" in params:
        diff = diff + params["judge_bias"][..., jnp.asarray(data.judge)]
    if "beta" in params and data.covariates is not None:
        diff = diff + jnp.einsum("rp,...p->...r", jnp.asarray(data.covariates), params["beta"])
    return diff


def _prior(prior: str, scale: float, shape: tuple, loc: float = 0.0):
    if prior == "flat":
        return dist.ImproperUniform(dist.constraints.real, (), event_shape=shape)
    return dist.Normal(jnp.full(shape, loc), scale).to_event(len(shape))


def bradley_terry(
    data: Comparisons,
    *,
    link: str = "logit",
    ties: str = "davidson",
    position_bias: bool = False,
    judge_effects: bool = False,
    identify: str = "sum_to_zero",
    anchor: Union[int, str] = 0,
    prior: str = "normal",
    prior_scale: float = 2.0,
):
    r"""The Bradley–Terry family as a numpyro model (see the module docstring for the math).

    Args:
        data: aggregated comparisons (:func:`ppl_models.judges.data.aggregate`).
        link: ``"logit"`` (Bradley–Terry) or ``"probit"`` (Thurstone Case V).
        ties: ``"davidson"`` (default), ``"rao_kupper"``, ``"half"`` (Arena parity: a tie is
            half a win each way) or ``"none"`` (tie counts are discarded).
        position_bias: add a first-position advantage :math:`\gamma \sim N(0, 1)`.
        judge_effects: per-judge bias :math:`\gamma_k \sim N(0, 1)` and discrimination
            :math:`\alpha_k = e^{u_k}` with :math:`u` sum-to-zero, ``Normal(0, 0.5)``
            coordinates (needs a ``judge`` column; with one judge only the bias is added).
        identify: ``"sum_to_zero"``, ``"anchor"`` (model ``anchor`` — index or name — at 0)
            or ``"prior"``.
        prior: ``"normal"`` (``Normal(0, prior_scale)`` on ratings coordinates; unit-scale
            normals on the other parameters; ``Normal(0, 1.5)`` on ``log_nu``, ``Normal(-1, 1)``
            on ``log_eta``) or ``"flat"`` (improper; NUTS / posterior mode only).
        prior_scale: prior standard deviation of the rating coordinates (logit units).
    """
    check_options(link, ties, identify, prior)
    k = data.num_models
    if identify == "sum_to_zero":
        z = jnp.asarray(numpyro.sample("rating_free", _prior(prior, prior_scale, (k - 1,))))
        rating = jnp.asarray(_basis(k), dtype=z.dtype) @ z
    elif identify == "anchor":
        a = data.models.index(anchor) if isinstance(anchor, str) else int(anchor)
        if not 0 <= a < k:
            raise ValueError(f"anchor: index {a} out of range for {k} models")
        z = numpyro.sample("rating_free", _prior(prior, prior_scale, (k - 1,)))
        rating = jnp.insert(z, a, 0.0)
    else:
        rating = numpyro.sample("rating_free", _prior(prior, prior_scale, (k,)))
    rating = numpyro.deterministic("rating", rating)
    params = {"rating": rating}
    if position_bias:
        params["position_bias"] = numpyro.sample("position_bias", _prior(prior, 1.0, ()))
    if judge_effects:
        j = data.num_judges
        params["judge_bias"] = numpyro.sample("judge_bias", _prior(prior, 1.0, (j,)))
        if j > 1:
            u = jnp.asarray(numpyro.sample("judge_log_discrimination_free", _prior(prior, 0.5, (j - 1,))))
            params["judge_discrimination"] = numpyro.deterministic(
                "judge_discrimination", jnp.exp(jnp.asarray(_basis(j), dtype=u.dtype) @ u)
            )
    if data.covariates is not None:
        p = np.shape(data.covariates)[1]
        params["beta"] = numpyro.sample("beta", _prior(prior, 1.0, (p,)))
    log_nu = log_eta = None
    if ties == "davidson":
        log_nu = numpyro.sample("log_nu", _prior(prior, 1.5, ()))
    elif ties == "rao_kupper":
        log_eta = numpyro.sample("log_eta", _prior(prior, 1.0, (), loc=-1.0))
    d = latent_difference(params, data)
    lp = outcome_log_probs(d, link=link, ties=ties, log_nu=log_nu, log_eta=log_eta)
    n = effective_counts(data.counts, ties)
    # 0 * -inf must be 0: outcomes with zero count contribute nothing.
    terms = jnp.where(n > 0, n * lp, 0.0)
    numpyro.factor("log_likelihood", jnp.sum(terms))


def simulate_battles(
    rng: np.random.Generator,
    ratings: np.ndarray,
    num_battles: int,
    *,
    link: str = "logit",
    ties: str = "none",
    log_nu: float = 0.0,
    log_eta: float = -1.0,
    position_bias: float = 0.0,
    judge_bias: Optional[np.ndarray] = None,
    names: Optional[list] = None,
) -> list:
    """Simulate a battle log (a list of dict records in the Arena convention) from the model.

    Pairs are drawn uniformly among ordered pairs of distinct models; with ``judge_bias``
    (``[J]`` per-judge position biases) each battle gets a uniformly drawn judge ``judge_k``.
    ``ties="none"`` or ``"half"`` simulate without ties.
    """
    ratings = np.asarray(ratings, np.float64)
    k = len(ratings)
    names = names or [f"model_{i:03d}" for i in range(k)]
    a = rng.integers(0, k, num_battles)
    b = (a + rng.integers(1, k, num_battles)) % k
    d = ratings[a] - ratings[b] + position_bias
    judge = None
    if judge_bias is not None:
        judge = rng.integers(0, len(judge_bias), num_battles)
        d = d + np.asarray(judge_bias)[judge]
    sim_ties = ties if ties in ("davidson", "rao_kupper") else "none"
    lp = np.asarray(
        outcome_log_probs(jnp.asarray(d), link=link, ties=sim_ties, log_nu=log_nu, log_eta=log_eta)
    )
    p = np.exp(lp)
    p = p / p.sum(1, keepdims=True)
    u = rng.random(num_battles)
    o = (u[:, None] > np.cumsum(p, 1)).sum(1)
    o = np.minimum(o, 2)
    labels = np.array(["model_a", "model_b", "tie"])[o]
    recs = []
    for i in range(num_battles):
        rec = {"model_a": names[a[i]], "model_b": names[b[i]], "winner": str(labels[i])}
        if judge is not None:
            rec["judge"] = f"judge_{judge[i]}"
        recs.append(rec)
    return recs
