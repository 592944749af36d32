r"""Particle filtering for inference-time scaling (Puri et al. 2025).

The state :math:`x_t` is the prompt plus :math:`t` reasoning steps, the transition the program's
sampler :math:`q` generating one step, and the emission the reward's score of the prefix,
:math:`o_t \sim \mathrm{Bernoulli}(a_t)` observed as 1, with the prefix score :math:`a_t`
(``aggregate``) the last step's score, the minimum or the product over steps. With
``weighting="softmax"`` (the reference) every particle, finished or not, is weighted by
:math:`G_t = (a_t / (1 - a_t))^{1/\tau}` of its current prefix, finished particles being
absorbing, and the target is

.. math::

    \pi(x) \propto q(x) \prod_{t=1}^{T} G\big(a_{\min(t, K(x))}\big);

with ``"ratio"``, :math:`G_t = a_t / a_{t-1}` telescopes to the final score. The model is
``program.with_potential(from_reward(reward, aggregate=, weighting=, tau=))`` and the filter the
engine's loop (:func:`ppl.smc.loop.build_filter`). Derivations: ``docs/scaling-methods.md``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ppl.core.checks import check_int, check_key, check_positive
from ppl.core.errors import SMCError
from ppl.lm.potentials import AGGREGATES, WEIGHTINGS, _aggregate, from_reward
from ppl.scaling.compute import Compute, token_counter
from ppl.scaling.method import check_program, check_reward, check_select, method, reward_key
from ppl.scaling.result import ScalingResult, finish
from ppl.smc import base
from ppl.smc.batch import ProblemCall
from ppl.smc import resampling as rs
from ppl.smc.loop import build_filter

__all__ = ["particle_filter", "AGGREGATES", "WEIGHTINGS", "SELECTS"]

SELECTS = ("argmax", "vote")


def _build(program, reward, N: int, aggregate: str, weighting: str, ess_threshold: float, scheme, schedule: bool):
    finished = base.factor_one if weighting == "ratio" else base.reweighed if schedule else base.absorbing

    def run(data, rparams, key, tau):
        pot = from_reward(reward, rparams, aggregate=aggregate, weighting=weighting, tau=tau)
        model = program.with_potential(pot, correct_proposal=False)
        res, failure, step = build_filter(model, N, scheme, ess_threshold, finished=finished,
                                          collect=token_counter)(data, key)
        return res, _aggregate(aggregate, res.particles.memory), failure, step

    return run


@method(budget=lambda B, s: ((B,), {"tau": s.get("tau", 1.0), "weighting": s.get("weighting", "softmax"),
                                     "select": s.get("select", "argmax")}))
def particle_filter(program, num_particles: int, *, key: jax.Array, reward, answer_fn: Optional[Callable] = None,
                    aggregate: str = "last", weighting: str = "softmax", tau: float = 1.0,
                    ess_threshold: float = 1.0, resampling: Union[str, Callable] = "multinomial",
                    select: str = "argmax"):
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
        Temperature :math:`\tau` of the softmax weighting, or a schedule: one :math:`\tau_t` per
        step (a sequence; the last repeats; :func:`ppl.lm.potentials.tau_schedule`), with
        finished particles weighted at the current step's :math:`\tau_t`
        (:func:`ppl.smc.base.reweighed`): the target is
        :math:`q(x)\prod_{t \le T} \operatorname{odds}(a_{\min(t, K)})^{1/\tau_t}`, and the
        filter runs all :math:`T` steps.
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
    check_program(program, "particle_filter")
    n = check_int("num_particles", num_particles, 1)
    check_key(key)
    check_reward(reward, True, "particle_filter")
    from_reward(reward, aggregate=aggregate, weighting=weighting)  # validates both names
    schedule = np.ndim(tau) > 0
    if schedule:
        taus = np.asarray(tau, np.float64)
        if taus.ndim != 1 or taus.size == 0 or not np.all(np.isfinite(taus) & (taus > 0)):
            raise ValueError(f"tau: expected a positive number or a 1-d sequence of positive numbers, got {tau!r}")
        tau = taus.tolist()
    else:
        tau = check_positive("tau", tau)
    try:
        kappa = float(ess_threshold)
    except (TypeError, ValueError):
        kappa = math.nan
    if not 0.0 <= kappa <= 1.0:
        raise ValueError(f"ess_threshold: expected a number in [0, 1], got {ess_threshold!r}")
    check_select(select, SELECTS, answer_fn)
    scheme = rs.get_scheme(resampling)
    cache_key = ("particle_filter", program.static_key(), reward_key(reward), n, aggregate, weighting, kappa, scheme,
                 schedule)
    prompt_len = int(program.data["prompt_length"])

    def finish_(out) -> ScalingResult:
        res, log_a, failure, step = out
        if int(failure) != base.OK:
            raise SMCError(f"particle_filter: every weight became zero or a reward score was NaN by step "
                           f"{int(step)}; check the reward model", step=int(step))
        compute = Compute.from_counts(res.aux, prompt_len, program.lm, reward)
        steps = int(res.num_steps)
        log_w = res.log_weights
        diagnostics = {"ess": jax.device_get(res.ess)[:steps], "resampled": jax.device_get(res.resampled)[:steps],
                       "ancestors": jax.device_get(res.ancestors)[:steps], "num_steps": steps,
                       "final_ess": float(jnp.exp(-logsumexp(2.0 * log_w))),
                       "log_evidence": float(res.log_evidence),
                       "aggregate": aggregate, "weighting": weighting, "tau": tau}
        return finish("particle_filter", res.particles, log_w, scores=jnp.exp(log_a), answer_fn=answer_fn,
                      select=select, compute=compute, budget=n, diagnostics=diagnostics)

    return ProblemCall("particle_filter", cache_key,
                       lambda: _build(program, reward, n, aggregate, weighting, kappa, scheme, schedule),
                       program.data, reward.params, key, (jnp.asarray(tau, jnp.float32),), finish_)

