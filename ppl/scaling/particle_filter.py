r"""Particle filtering for inference-time scaling (Puri et al. 2025).

The state-space model of Puri, Sudalairaj, Xu, Xu & Srivastava (2025): the state :math:`x_t` is
the prompt plus :math:`t` reasoning steps, the transition is the LM generating one step (the
program's sampler :math:`q`, e.g. temperature 0.8), and the emission is a reward model's score of
the prefix, :math:`o_t \sim \mathrm{Bernoulli}(r(x_{1:t}))`, observed as :math:`o_t = 1`.

**Prefix score** :math:`a_t` (``aggregate``), from the reward's scores
:math:`r_s = r(x_{1:s})` of the prefixes at the steps so far:

* ``"last"`` — :math:`a_t = r_t`, the score of the current prefix;
* ``"min"`` — :math:`a_t = \min_{s \le t} r_s`;
* ``"product"`` — :math:`a_t = \prod_{s \le t} r_s` (penalises long chains);
* ``"model"`` — one reward call on the whole prefix. For reward models that read the whole
  prefix causally (the bundled PRM, the oracle) this *is* the last-step score: the same
  computation as ``"last"``.

**Weights** (``weighting``):

* ``"softmax"`` (the reference implementation): the resampling probabilities are
  :math:`\mathrm{softmax}(\operatorname{logit}(a_t)/\tau)`, i.e. every particle — finished or
  not — is weighted by :math:`G_t = (a_t / (1 - a_t))^{1/\tau}` of its *current* prefix at every
  step (:math:`a_t` clipped to :math:`[\varepsilon, 1-\varepsilon]`). With resampling at every
  step (``ess_threshold=1``) the weights are recomputed, not accumulated, exactly as in the
  reference; with ESS-triggered resampling they accumulate between resampling steps. The
  filter targets the Feynman–Kac model

  .. math::

      \pi(x) \propto q(x) \prod_{t=1}^{T} G\big(a_{\min(t, K(x))}\big),

  :math:`T` the program's ``max_steps`` and :math:`K(x)` the step at which :math:`x` finished:
  a finished particle is *absorbing* — kept in the pool with its final score, duplicated by
  resampling but never extended — and its final score counts once per remaining step. Like the
  reference, the filter stops as soon as every particle has finished, at a step :math:`S \le T`;
  the factors of the steps :math:`S+1, \dots, T` are then known, :math:`G(a_K)^{T-S}` for every
  particle, and are applied to the final weights (and to :math:`\hat Z`) in closed form instead
  of by running idle steps, so the weighted particles target :math:`\pi` above whatever
  :math:`S` is.
* ``"ratio"``: the incremental weight is :math:`G_t = a_t / a_{t-1}` (:math:`a_0 = 1`) for a
  particle that moved and 1 for a finished one. The product telescopes: the target is
  :math:`\pi(x) \propto q(x)\, a_{K(x)}(x)`, the *final* score only, the intermediate scores
  acting as look-ahead (a twisted SMC), and
  :math:`\hat Z = \prod_t \sum_n W^n_{t-1} G^n_t` is an unbiased estimate of
  :math:`Z = \mathbb{E}_q[a_{K(x)}]`. The filter stops when every particle has finished.

**Resampling**: at every step (``ess_threshold=1``, the reference) or when the ESS falls below
:math:`\kappa N`, with any scheme of :mod:`ppl.smc.resampling` (multinomial by default, as in the
reference); a resampling is one gather of the whole particle set, KV caches included.

**The answer** (``select``): ``"argmax"`` — the answer of the particle with the highest final
score :math:`a` (the reference's rule) — or ``"vote"`` — the weighted majority under the final
weights, :math:`\arg\max_a \sum_n W^n \mathbb{1}[a(x^n) = a]`. Unlike the reference, the pool is
not resampled once more after the last step: the particles are returned with their weights, and
the best-scored particle is always among them.

The budget is :math:`N` particles: about :math:`N` full rollouts of tokens, plus one reward call
per live particle and step (a finished particle keeps its stored score: no call).

**Implementation.** The model is the program with the reward as its potential,
``program.with_potential(from_reward(reward, aggregate=..., weighting=..., tau=...))``
(:func:`ppl.lm.potentials.from_reward`: the running aggregates ride in each particle's
``memory``), and the filter is the engine's loop (:func:`ppl.smc.loop.build_filter`) with the
resampling scheme, the ESS rule, finished particles :func:`~ppl.smc.base.absorbing` (softmax) or
:func:`~ppl.smc.base.factor_one` (ratio), and the :data:`~ppl.scaling.compute.token_counter`
collector. The LM's weights, the prompt, the reward's ``params`` and :math:`\tau` are traced:
new problems do not recompile.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ppl.core.checks import check_int, check_key, check_positive
from ppl.core.errors import SMCError
from ppl.lm.potentials import AGGREGATES, WEIGHTINGS, _aggregate, from_reward
from ppl.scaling._cache import reward_key
from ppl.scaling.batch import MethodCall, register
from ppl.scaling.compute import Compute, token_counter
from ppl.scaling.power import _check_program, _check_reward
from ppl.scaling.result import ScalingResult, finish
from ppl.smc import base
from ppl.smc import resampling as rs
from ppl.smc.loop import build_filter

__all__ = ["particle_filter", "AGGREGATES", "WEIGHTINGS", "SELECTS"]

SELECTS = ("argmax", "vote")


def _build(program, reward, N: int, aggregate: str, weighting: str, ess_threshold: float, scheme):
    finished = base.absorbing if weighting == "softmax" else base.factor_one

    def run(data, rparams, key, tau):
        pot = from_reward(reward, rparams, aggregate=aggregate, weighting=weighting, tau=tau)
        model = program.with_potential(pot, correct_proposal=False)
        res, failure, step = build_filter(model, N, scheme, ess_threshold, finished=finished,
                                          collect=token_counter)(data, key)
        return res, _aggregate(aggregate, res.particles.memory), failure, step

    return run


def particle_filter(program, num_particles: int, *, key: jax.Array, reward, answer_fn: Optional[Callable] = None,
                    aggregate: str = "last", weighting: str = "softmax", tau: float = 1.0,
                    ess_threshold: float = 1.0, resampling: Union[str, Callable] = "multinomial",
                    select: str = "argmax") -> ScalingResult:
    r"""Particle filtering with a process reward model (Puri et al. 2025); see the module doc.

    Parameters
    ----------
    program
        A :class:`~ppl.lm.LMProgram` without potential: the LM, prompt, step delimiter and
        sampler (temperature) that generate one reasoning step per transition.
    num_particles
        :math:`N`, the budget in rollouts.
    key
        A ``jax.random.key``.
    reward
        The reward model (``params`` and ``log_score(params, state)``).
    answer_fn
        ``token_ids -> answer`` (default: the whole generation).
    aggregate
        ``"last"``, ``"min"``, ``"product"`` or ``"model"``: the prefix score :math:`a_t`.
    weighting
        ``"softmax"`` (log-odds over :math:`\tau`, recomputed each step) or ``"ratio"``
        (:math:`a_t / a_{t-1}`, targets the final score).
    tau
        Temperature :math:`\tau` of the softmax weighting.
    ess_threshold
        Resample when :math:`\mathrm{ESS} < \kappa N`; 1 resamples at every step.
    resampling
        A scheme of :mod:`ppl.smc.resampling` (name or callable).
    select
        ``"argmax"`` (highest final score) or ``"vote"`` (weighted majority).

    Returns
    -------
    ScalingResult
        The final particles with their normalised ``log_weights`` (under the target of the
        weighting) and ``scores`` :math:`a` (the final aggregate). ``diagnostics``: ``ess``,
        ``resampled`` and ``ancestors`` (``[S, N]``, the identity where no resampling happened)
        for each of the ``num_steps`` :math:`S` steps run, ``final_ess`` of the returned weights,
        and ``log_evidence`` :math:`\log\hat Z` (in ``"ratio"`` mode :math:`\hat Z` is an unbiased
        estimate of :math:`\mathbb{E}_q[a_{K(x)}]`).

    Raises
    ------
    SMCError
        If every weight becomes zero (e.g. ``"ratio"`` with every score 0) or the reward returns
        NaN for a live particle.

    Examples
    --------
    >>> out = particle_filter(program, 16, key=jax.random.key(0), reward=prm,
    ...                       answer_fn=arithmetic.answer_fn(tok))          # doctest: +SKIP
    >>> out.answer, out.answer_posterior, out.compute.prm_calls            # doctest: +SKIP
    """
    return _prepare(program, num_particles, key=key, reward=reward, answer_fn=answer_fn, aggregate=aggregate,
                    weighting=weighting, tau=tau, ess_threshold=ess_threshold, resampling=resampling,
                    select=select)()


def _prepare(program, num_particles: int, *, key: jax.Array, reward, answer_fn: Optional[Callable] = None,
             aggregate: str = "last", weighting: str = "softmax", tau: float = 1.0, ess_threshold: float = 1.0,
             resampling: Union[str, Callable] = "multinomial", select: str = "argmax") -> MethodCall:
    """Validate a :func:`particle_filter` call; the :class:`~ppl.scaling.batch.MethodCall` that runs it."""
    _check_program(program, "particle_filter")
    n = check_int("num_particles", num_particles, 1)
    check_key(key)
    _check_reward(reward, True, "particle_filter")
    from_reward(reward, aggregate=aggregate, weighting=weighting)  # validates both names
    tau = check_positive("tau", tau)
    try:
        kappa = float(ess_threshold)
    except (TypeError, ValueError):
        kappa = math.nan
    if not 0.0 <= kappa <= 1.0:
        raise ValueError(f"ess_threshold: expected a number in [0, 1], got {ess_threshold!r}")
    if select not in SELECTS:
        raise ValueError(f"select: expected 'argmax' or 'vote', got {select!r}")
    if answer_fn is not None and not callable(answer_fn):
        raise TypeError(f"answer_fn: expected a callable token_ids -> answer, got {type(answer_fn).__name__}")
    scheme = rs.get_scheme(resampling)
    cache_key = ("particle_filter", program.static_key(), reward_key(reward), n, aggregate, weighting, kappa, scheme)
    prompt_len = int(program.data["prompt_length"])

    def finish_(out) -> ScalingResult:
        res, log_a, failure, step = out
        if int(failure) != base.OK:
            raise SMCError(f"particle_filter: every weight became zero or a reward score was NaN by step "
                           f"{int(step)}; check the reward model", step=int(step))
        gen, calls, read = (int(v) for v in res.aux)
        compute = Compute.count(generated_tokens=gen, lm_forward_tokens=prompt_len + gen, prm_calls=calls,
                                prm_forward_tokens=read, lm=program.lm, reward=reward)
        steps = int(res.num_steps)
        log_w = res.log_weights
        diagnostics = {"ess": jax.device_get(res.ess)[:steps], "resampled": jax.device_get(res.resampled)[:steps],
                       "ancestors": jax.device_get(res.ancestors)[:steps], "num_steps": steps,
                       "final_ess": float(jnp.exp(-logsumexp(2.0 * log_w))),
                       "log_evidence": float(res.log_evidence),
                       "aggregate": aggregate, "weighting": weighting, "tau": tau}
        return finish("particle_filter", res.particles, log_w, scores=jnp.exp(log_a), answer_fn=answer_fn,
                      select=select, compute=compute, budget=n, diagnostics=diagnostics)

    return MethodCall("particle_filter", cache_key,
                      lambda: _build(program, reward, n, aggregate, weighting, kappa, scheme),
                      program.data, reward.params, key, (jnp.float32(tau),), finish_)


register(particle_filter, _prepare)
