r"""Particle filtering for inference-time scaling (Puri et al. 2025).

The state :math:`x_t` is the prompt plus :math:`t` reasoning steps, the transition the program's
sampler :math:`q` generating one step, and the emission the reward's score of the prefix,
:math:`o_t \sim \mathrm{Bernoulli}(a_t)` observed as 1, with the prefix score :math:`a_t`
(``aggregate``) the last step's score, the minimum or the product over steps. With
``potential=odds(tau)`` (the reference) every particle, finished or not, is weighted by
:math:`G_t = (a_t / (1 - a_t))^{1/\tau}` of its current prefix, finished particles being
absorbing, and the target is

.. math::

    \pi(x) \propto q(x) \prod_{t=1}^{T} G\big(a_{\min(t, K(x))}\big);

with ``ratio()``, :math:`G_t = a_t / a_{t-1}` telescopes to the final score. The model is
``program.with_potential(potential(reward))`` and the filter the engine's loop
(:func:`ppl.smc.loop.build_filter`). Derivations: ``docs/scaling-methods.md``.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ppl.core.checks import check_fraction, check_int, check_key, check_reward, reward_key
from ppl.core.errors import SMCError
from ppl.lm.compute import Compute, token_counter
from ppl.lm.potentials import (AGGREGATES, WEIGHTINGS, RewardPotential, _aggregate, check_potential, odds,
                                odds_ratio, ratio)
from ppl.lm.program import check_program
from ppl.scaling.aggregate import check_select
from ppl.scaling.method import method
from ppl.scaling.result import ScalingResult, finish
from ppl.smc import base
from ppl.smc import resampling as rs
from ppl.smc.batch import ProblemCall
from ppl.smc.loop import build_filter

__all__ = ["particle_filter", "resampling_of", "AGGREGATES", "WEIGHTINGS", "SELECTS"]

SELECTS = ("argmax", "vote")


def _build(program, reward, N: int, potential: RewardPotential, ess_threshold: float, scheme):
    def run(data, rparams, key, tau):
        model = program.with_potential(potential(reward, rparams, tau), correct_proposal=False)
        res, failure, step = build_filter(model, N, scheme, ess_threshold, finished=potential.finished,
                                          collect=token_counter)(data, key)
        return res, _aggregate(potential.aggregate, res.particles.memory), failure, step

    return run


def resampling_of(name: str, num_steps: int):
    """A resampling scheme name, or ``"entropic"``: its_hub's entropic annealing with its defaults
    (systematic, :class:`~ppl.smc.resampling.ESSTemperature` with threshold and early phase 0.5),
    the importance correction kept (:func:`~ppl.smc.resampling.annealed`)."""
    return rs.annealed("systematic", rs.ESSTemperature(int(num_steps))) if name == "entropic" else name


def _budget(B: int, s) -> tuple:
    """:math:`B` particles; the settings' ``weighting`` (``"softmax"``: :func:`~ppl.lm.potentials.odds`
    at ``tau``; ``"ratio"``, ``"odds_ratio"``), ``resampling`` (:func:`resampling_of`) and ``select``."""
    w, tau = s.get("weighting", "softmax"), s.get("tau", 1.0)
    pot = ratio() if w == "ratio" else odds_ratio(tau) if w == "odds_ratio" else odds(tau)
    return (B,), {"potential": pot, "select": s.get("select", "argmax"),
                  "resampling": resampling_of(s.get("resampling", "multinomial"), s.get("max_steps", 8))}


@method(budget=_budget)
def particle_filter(program, num_particles: int, *, key: jax.Array, reward, potential: RewardPotential = odds(),
                    answer_fn: Optional[Callable] = None, ess_threshold: float = 1.0,
                    resampling: Union[str, Callable] = "multinomial", select: str = "argmax"):
    r"""Particle filtering with a process reward model (Puri et al. 2025); see the module doc.

    Parameters
    ----------
    program, key, reward
        As for every method of :mod:`ppl.scaling` (an :class:`~ppl.lm.LMProgram` without a
        potential, a ``jax.random.key``, a :class:`~ppl.core.protocols.RewardModel`).
    num_particles
        :math:`N`, the budget in rollouts.
    potential
        How the reward weighs the particles (:class:`~ppl.lm.potentials.RewardPotential`):
        :func:`~ppl.lm.potentials.odds` (default: log-odds of the last score over :math:`\tau = 1`;
        ``aggregate="min"`` / ``"product"``; with a :math:`\tau` schedule, one per step, finished
        particles are weighed at the current :math:`\tau_t` and the filter runs all :math:`T` steps),
        :func:`~ppl.lm.potentials.ratio` (:math:`a_t / a_{t-1}`: targets the final score) or
        :func:`~ppl.lm.potentials.odds_ratio`; its ``finished`` rule is the kernel's.
    answer_fn
        ``token_ids -> answer`` (default: the whole generation).
    ess_threshold
        Resample when :math:`\mathrm{ESS} < \kappa N`; 1 resamples at every step.
    resampling
        A scheme of :mod:`ppl.smc.resampling` (name or callable), or an annealed one
        (:func:`~ppl.smc.resampling.annealed`; ``resampling_of("entropic", T)``: its_hub's ePF).
    select
        ``"argmax"`` (highest final score) or ``"vote"`` (weighted majority).

    Returns
    -------
    ScalingResult
        The final particles with their normalised ``log_weights`` (under the potential's
        target) and ``scores`` :math:`a` (the final aggregate). ``diagnostics``: ``ess``,
        ``resampled`` and ``ancestors`` (``[S, N]``, the identity where no resampling happened)
        for each of the ``num_steps`` :math:`S` steps run, ``final_ess`` of the returned weights,
        and ``log_evidence`` :math:`\log\hat Z` (with ``ratio()``, :math:`\hat Z` is an unbiased
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
    check_reward(reward, True, "particle_filter", program)
    check_potential(potential)
    kappa = check_fraction("ess_threshold", ess_threshold)
    check_select(select, SELECTS, answer_fn)
    scheme = rs.get_scheme(resampling)
    cache_key = ("particle_filter", program.static_key(), reward_key(reward), n, potential.static_key(), kappa, scheme)
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
                       "aggregate": potential.aggregate, "weighting": potential.weighting,
                       "tau": list(potential.tau) if potential.schedule else potential.tau}
        return finish("particle_filter", res.particles, log_w, scores=jnp.exp(log_a), answer_fn=answer_fn,
                      select=select, compute=compute, budget=n, diagnostics=diagnostics)

    return ProblemCall("particle_filter", cache_key,
                       lambda: _build(program, reward, n, potential, kappa, scheme),
                       program.data, reward.params, key, (jnp.asarray(potential.tau, jnp.float32),), finish_)

