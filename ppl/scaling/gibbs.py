r"""Particle Gibbs and parallel tempering over whole reasoning chains (Puri et al. 2025, §4).

Both are MCMC on whole generations with a conditional SMC sweep (Andrieu, Doucet & Holenstein
2010) as the kernel, on the particle filter's target for the same ``potential`` (a
:class:`~ppl.lm.potentials.RewardPotential`): with ``odds(tau)``,
:math:`G_t = (r_t / (1 - r_t))^{1/\tau}` the odds of the reward's prefix score,

.. math::

    \pi(x) \propto q(x) \prod_{t=1}^{T} G_{\min(t, K(x))}(x)

(``finished=absorbing``, the default; ``factor_one`` stops the factors at :math:`K(x)`; with
``odds_ratio(tau)`` the factors are ratios of odds, which telescope to the final odds). The
particles' memory is their :class:`~ppl.lm.paths.PathRecord` (:func:`~ppl.lm.paths.recorded`:
each step's :math:`\log G_t` and the reward's memory after it), so the reference, cut back to
step :math:`t`, competes with its own recorded weight and its children grow from its memory at
:math:`t`. A sweep
keeps a reference generation in slot 0, competing with its *partial* weight at each step; the
next reference is a particle drawn by its final weight. Parallel tempering runs chains at
temperatures :math:`T_1 > \dots > T_M` (targets :math:`q \prod_t G_t^{1/T_k}`) with neighbour
swaps (:func:`ppl.mcmc.chain.swap_neighbours`); the answer comes from the coldest chain.
Derivations, the posterior options and why ancestor sampling changes nothing on LM states:
``docs/scaling-methods.md``.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core.cache import cached_jit
from ppl.core.checks import check_int, check_key, check_reward, reward_key
from ppl.core.errors import SMCError
from ppl.core.trees import broadcast
from ppl.lm.compute import Compute, counter
from ppl.lm.paths import current, lite, recorded, step_mask, truncate
from ppl.lm.potentials import RewardPotential, _aggregate, check_potential, odds
from ppl.lm.program import LMProgram, check_program
from ppl.mcmc.chain import check_temperatures, run_chain, swap_log_ratio, swap_neighbours
from ppl.scaling.aggregate import SELECT_RULES, check_select
from ppl.scaling.method import method
from ppl.scaling.result import ScalingResult, finish, generations
from ppl.smc import base
from ppl.smc.loop import build_filter

__all__ = ["particle_gibbs", "parallel_tempering", "swap_log_ratio"]

POSTERIORS = ("particles", "references")


def _phi(log_g, num_steps, absorbing: bool):
    r""":math:`\Phi(x) = \sum_{t \le T} \log G_t` (untempered) of paths with per-step ``log_g [B, T]``."""
    T = log_g.shape[-1]
    phi = jnp.sum(jnp.where(step_mask(T, jnp.zeros_like(num_steps), num_steps), log_g, 0.0), 1)
    if absorbing:  # the final factor again at each of the T - K steps after the path finished
        last = jnp.take_along_axis(log_g, jnp.clip(num_steps - 1, 0, T - 1)[:, None], 1)[:, 0]
        phi = phi + (T - num_steps).astype(log_g.dtype) * jnp.where(num_steps > 0, last, 0.0)
    return phi


def _build(program: LMProgram, reward, potential: RewardPotential, N: int, I: int, M: int, finished):
    """The compiled run: ``M`` CSMC chains (vmapped) for ``I`` sweeps, with swaps if ``M > 1``."""
    T = int(program.num_steps)
    slots = jnp.arange(N)
    absorbing = finished is base.absorbing

    def model(rp, tau, inv_temp=1.0):
        pot = recorded(potential(reward, rp, tau, incremental=False), T, inv_temp)
        return program.with_potential(pot, correct_proposal=False)

    def log_score(x):  # the final aggregate of the reward's scores, from the recorded memory
        return _aggregate(potential.aggregate, current(x))

    def sweep(data, rp, key, ref, pin, inv_temp, tau):
        """One (conditional, if ``pin``) SMC sweep of one chain; ``ref`` is a generation with its record."""
        is_ref = (slots == 0) & pin

        def select(k, log_w, n):  # i.i.d. draws; slot 0 keeps the reference's past
            return jnp.where(is_ref, 0, jax.random.categorical(k, log_w, shape=(n,)).astype(jnp.int32))

        def adjust(t, parents, x, inc):  # slot 0 holds the reference's first t + 1 steps, with its weight
            x = jax.tree_util.tree_map(lambda a, r: a.at[0].set(jnp.where(pin, r, a[0])), x, truncate(ref, t + 1))
            return x, inc.at[0].set(jnp.where(pin, ref.memory.log_g[t] * inv_temp, inc[0]))

        k_loop, k_pick = jax.random.split(key)
        res, failure, _ = build_filter(model(rp, tau, inv_temp), N, select, 1.0, finished=finished,
                                       collect=counter(is_ref), adjust=adjust)(data, k_loop)
        k = jax.random.categorical(k_pick, res.log_weights).astype(jnp.int32)
        new_ref = jax.tree_util.tree_map(lambda a: a[k], res.particles)
        return new_ref, res, failure

    def run(data, rp, key, inv_temps, tau):
        prompt = model(rp, tau).prompt_state(data)
        sweeps = jax.vmap(sweep, in_axes=(None, None, 0, 0, None, 0, None))

        def iteration(k_it, carry, i):
            refs, counts, bad = carry
            k_sw, k_swap = jax.random.split(k_it)
            old = refs
            refs, res, failure = sweeps(data, rp, jax.random.split(k_sw, M), refs, i > 0, inv_temps, tau)
            cold = M - 1
            swap_acc = swap_prob = jnp.zeros((max(M - 1, 1),), jnp.float32)
            if M > 1:
                phi = _phi(refs.memory.log_g, refs.num_steps, absorbing)
                perm, swap_acc, swap_prob = swap_neighbours(k_swap, phi, inv_temps)
                refs = jax.tree_util.tree_map(lambda a: jnp.take(a, perm, axis=0), refs)
            # Whether the coldest chain's reference generation changed in this sweep.
            idx = jnp.arange(old.tokens.shape[-1])
            changed = (old.length[cold] != refs.length[cold]) | jnp.any(
                (old.tokens[cold] != refs.tokens[cold]) & (idx < refs.length[cold]))
            ref_cold = jax.tree_util.tree_map(lambda a: a[cold], refs)
            parts = jax.tree_util.tree_map(lambda a: a[cold], res.particles)
            ys = {
                "particles": lite(parts._replace(memory=())),
                "log_w": res.log_weights[cold],
                "log_score": jax.vmap(log_score)(parts),
                "reference": lite(ref_cold._replace(memory=())),
                "reference_log_score": log_score(ref_cold),
                "ess": res.ess[cold], "log_evidence": res.log_evidence, "changed": changed,
                "swap_accept": swap_acc, "swap_prob": swap_prob,
            }
            return (refs, counts + jnp.sum(res.aux, 0), bad | jnp.any(failure != base.OK)), ys

        init = (broadcast(prompt, M), jnp.zeros((3,), jnp.int32), jnp.asarray(False))
        (_, counts, bad), ys = run_chain(iteration, init, key, I)
        return ys, counts, bad

    return run


def _validate_common(program, num_particles, num_iterations, key, reward, answer_fn, select, burn_in,
                     posterior, potential, finished, method):
    check_program(program, method)
    N = check_int("num_particles", num_particles, 2)
    I = check_int("num_iterations", num_iterations, 1)
    check_key(key)
    check_reward(reward, True, method, program)
    check_potential(potential)
    if potential.schedule:
        raise ValueError(f"potential: {method} takes one tau (a schedule's finished rule, reweighed, has no "
                         "conditional-SMC target here)")
    check_select(select, SELECT_RULES, answer_fn)
    b = check_int("burn_in", burn_in, 0)
    if b >= I:
        raise ValueError(f"burn_in: must be smaller than num_iterations={I}, got {burn_in!r}")
    if posterior not in POSTERIORS:
        raise ValueError(f"posterior: expected one of {POSTERIORS}, got {posterior!r}")
    if finished is None:
        finished = potential.finished
    if finished not in (base.absorbing, base.factor_one):
        raise ValueError(f"finished: expected ppl.smc.base.absorbing or ppl.smc.base.factor_one, got {finished!r}")
    return N, I, b, finished


def _run(method, program, N, I, temperatures, key, reward, answer_fn, select, burn_in, posterior,
         potential, finished) -> ScalingResult:
    M = len(temperatures)
    cache_key = (method, program.static_key(), reward_key(reward), potential.static_key(), N, I, M, finished)
    fn = cached_jit(cache_key, lambda: _build(program, reward, potential, N, I, M, finished))
    inv_temps = jnp.asarray([1.0 / t for t in temperatures], jnp.float32)
    ys, counts, bad = fn(program.data, reward.params, key, inv_temps, jnp.asarray(potential.tau, jnp.float32))
    if bool(bad):
        raise SMCError(f"{method}: the reward returned NaN for a prefix; check reward.log_score")
    compute = Compute.from_counts(counts, int(np.asarray(program.data["prompt_length"])), program.lm, reward)
    keep, n_keep, pooled = slice(burn_in, I), I - burn_in, posterior == "particles"
    take = (lambda a: jnp.reshape(a[keep], (-1,) + a.shape[2:])) if pooled else (lambda a: a[keep])
    particles = jax.tree_util.tree_map(lambda a: None if a is None else take(a),
                                       ys["particles" if pooled else "reference"])
    log_w = np.asarray(ys["log_w"][keep], np.float64).reshape(-1) - math.log(n_keep) if pooled else np.zeros(n_keep)
    scores = np.exp(np.asarray(ys["log_score" if pooled else "reference_log_score"][keep], np.float64)).reshape(-1)
    diagnostics = {
        "ess": np.asarray(ys["ess"], np.float64),
        "log_evidence": np.asarray(ys["log_evidence"], np.float64)[:, -1],
        "reference_changed": np.asarray(ys["changed"], bool),
        "reference_update_rate": float(np.mean(np.asarray(ys["changed"])[1:])) if I > 1 else float("nan"),
        "references": generations(ys["reference"]),
        "burn_in": burn_in,
        "posterior": posterior,
        "finished": finished.__name__,
    }
    if M > 1:
        acc = np.asarray(ys["swap_accept"], np.float64)[:, :M - 1]
        prob = np.asarray(ys["swap_prob"], np.float64)[:, :M - 1]
        diagnostics.update({"temperatures": tuple(float(t) for t in temperatures),
                            "swap_acceptance": acc.mean(0), "swap_acceptance_prob": prob.mean(0),
                            "swap_accepted": acc})
    return finish(method, particles, log_w, scores=scores, answer_fn=answer_fn, select=select, compute=compute,
                  budget=N * I * M, diagnostics=diagnostics)


def _sweeps(budget: int, settings):
    """:math:`B / I` particles × :math:`I` = ``iterations`` sweeps (``None`` below 2 particles)."""
    iters = settings.get("iterations", 4)
    n = budget // iters
    return None if n < 2 else ((n, iters), {"potential": odds(settings.get("tau", 1.0))})


def _tempered_sweeps(budget: int, settings):
    """Two chains (temperatures 2 and 1) of :math:`B / 2I` particles × :math:`I` sweeps."""
    iters = settings.get("iterations", 4)
    n = budget // (2 * iters)
    return None if n < 2 else ((n, iters), {"temperatures": (2.0, 1.0)})


@method(batchable=False, budget=_sweeps)
def particle_gibbs(program: LMProgram, num_particles: int, num_iterations: int, *, key: jax.Array, reward,
                   potential: RewardPotential = odds(), answer_fn: Optional[Callable] = None,
                   ancestor_sampling: bool = False, select: str = "vote", burn_in: int = 0,
                   posterior: str = "particles", finished: Optional[Callable] = None) -> ScalingResult:
    r"""Particle Gibbs over whole reasoning chains with PRM potentials (Puri et al. 2025).

    Iterates conditional SMC sweeps (see the module documentation) on the particle filter's
    target for the same ``potential``: with :func:`~ppl.lm.potentials.odds` (the default)
    :math:`\pi(x) \propto q(x) \prod_{t \le T} G_{\min(t, K(x))}(x)` (``finished=absorbing``;
    :math:`\prod_{t \le K(x)} G_t` with ``factor_one``), :math:`G_t` the odds of the reward's
    prefix score to the power :math:`1/\tau`.

    Parameters
    ----------
    program
        A :class:`~ppl.lm.LMProgram` without a potential; its sampler :math:`q` is the base
        distribution (no :math:`p/q` correction).
    num_particles
        :math:`N \ge 2` particles per sweep, the reference included.
    num_iterations
        :math:`I \ge 1` sweeps (the first has no reference). Budget: :math:`N I` rollouts.
    key
        A ``jax.random.key``.
    reward
        The reward model: ``params`` (traced) and ``log_score(params, state) -> log r`` for one
        particle (optionally ``static_key()`` and ``flops_per_token``).
    potential
        How the reward weighs the particles, as for :func:`~ppl.scaling.particle_filter`
        (:class:`~ppl.lm.potentials.RewardPotential`; one :math:`\tau`, traced):
        :func:`~ppl.lm.potentials.odds` (default), :func:`~ppl.lm.potentials.odds_ratio` (ratios
        of odds: the target weighs only the final odds) or :func:`~ppl.lm.potentials.ratio`; any
        ``aggregate``. The reward reads whole prefixes (a reference cut back to a step must
        roll its memory back, :func:`ppl.lm.paths.recorded`).
    answer_fn
        ``token_ids -> answer or None`` (default: the whole generation).
    ancestor_sampling
        Accepted for parity with :func:`ppl.particle_gibbs`; it has no effect on an LM program,
        whose states are whole prefixes (see the module documentation).
    select
        ``"vote"`` (default; weighted majority under the answer posterior), ``"argmax"`` (the
        highest final reward score) or ``"majority"``.
    burn_in
        Sweeps left out of the answer posterior (``0 <= burn_in < num_iterations``).
    posterior
        ``"particles"`` (default): the pooled weighted particle systems of the kept sweeps;
        ``"references"``: the kept sweeps' references, equally weighted.
    finished
        What a finished generation's factor is at the steps after it finished:
        :func:`ppl.smc.base.absorbing` (its final factor again) or
        :func:`ppl.smc.base.factor_one`; default: the potential's own rule
        (``potential.finished``, as in the particle filter).

    Returns
    -------
    ScalingResult
        ``particles`` hold the pooled states (without their KV caches); ``scores`` the final
        aggregates of the reward's scores. ``diagnostics``: ``ess`` ``[I, T]`` (per sweep and step), ``log_evidence``
        ``[I]`` (each sweep's :math:`\log\hat Z`; conditional sweeps are biased upwards),
        ``reference_changed`` ``[I]`` and ``reference_update_rate`` (how often a sweep changed
        the reference generation — the mixing of the chain), ``references`` (each sweep's
        reference, as generated token ids).

    Compute counts every sampled token (the reference is never re-sampled nor re-scored: its
    steps' scores are kept), one LM forward per generated token plus the prompt once, and one
    reward call per extended particle and step.
    """
    del ancestor_sampling  # the same law on LM programs (module documentation)
    N, I, b, finished = _validate_common(program, num_particles, num_iterations, key, reward, answer_fn, select,
                                         burn_in, posterior, potential, finished, "particle_gibbs")
    return _run("particle_gibbs", program, N, I, (1.0,), key, reward, answer_fn, select, b, posterior, potential,
                finished)


@method(batchable=False, budget=_tempered_sweeps)
def parallel_tempering(program: LMProgram, num_particles: int, num_iterations: int, *,
                       temperatures: Sequence[float] = (4.0, 2.0, 1.0), key: jax.Array, reward,
                       potential: RewardPotential = odds(), answer_fn: Optional[Callable] = None,
                       select: str = "vote", burn_in: int = 0, posterior: str = "particles",
                       finished: Optional[Callable] = None) -> ScalingResult:
    r"""Parallel tempering of particle Gibbs chains (Puri et al. 2025).

    :math:`M` chains, chain :math:`k` a particle Gibbs chain on
    :math:`\pi_k(x) \propto q(x) \prod_t G_t^{1/T_k}`, run as one batch; after every sweep,
    neighbouring chains propose to swap their references (see the module documentation and
    :func:`swap_log_ratio`). The answer comes from the coldest chain.

    Parameters
    ----------
    program, num_particles, num_iterations, key, reward, potential, answer_fn, select, burn_in, posterior, finished
        As for :func:`particle_gibbs` (``num_particles`` per chain). Budget:
        :math:`M N I` rollouts.
    temperatures
        :math:`T_1 > \dots > T_M > 0`, at least two; the last (coldest) chain's target is the
        answer's (:math:`T_M = 1`: the target of :func:`particle_gibbs`).

    Returns
    -------
    ScalingResult
        As for :func:`particle_gibbs`, from the coldest chain; ``diagnostics`` also hold
        ``temperatures``, ``swap_acceptance`` ``[M-1]`` (the fraction of accepted swaps of each
        neighbour pair), ``swap_acceptance_prob`` ``[M-1]`` (the mean acceptance probability)
        and ``swap_accepted`` ``[I, M-1]``.
    """
    temps = check_temperatures(temperatures)
    N, I, b, finished = _validate_common(program, num_particles, num_iterations, key, reward, answer_fn, select,
                                         burn_in, posterior, potential, finished, "parallel_tempering")
    return _run("parallel_tempering", program, N, I, temps, key, reward, answer_fn, select, b, posterior,
                potential, finished)
