r"""Particle Gibbs and parallel tempering over whole reasoning chains (Puri et al. 2025, §4).

Both are MCMC on whole generations with a conditional SMC sweep (Andrieu, Doucet & Holenstein
2010) as the kernel, on the particle filter's target: with :math:`G_t = (r_t / (1 - r_t))^{1/\tau}`
the odds of the reward's prefix score,

.. math::

    \pi(x) \propto q(x) \prod_{t=1}^{T} G_{\min(t, K(x))}(x)

(``finished=absorbing``, the default; ``factor_one`` stops the factors at :math:`K(x)`; with
``potential="twist"`` the factors are ratios of odds, which telescope to the final odds). A sweep
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
from ppl.core.checks import check_int, check_key, check_positive
from ppl.core.errors import SMCError
from ppl.core.trees import broadcast
from ppl.lm.potentials import MemoryPotential, log_odds
from ppl.lm.program import LMProgram
from ppl.mcmc.chain import run_chain, swap_log_ratio, swap_neighbours
from ppl.scaling.aggregate import SELECT_RULES
from ppl.scaling.compute import Compute, counter
from ppl.scaling.method import check_program, check_reward, check_select, method, reward_key
from ppl.lm.paths import empty_record, lite, record_step, step_mask, truncate
from ppl.scaling.result import ScalingResult, finish
from ppl.smc import base
from ppl.smc.loop import build_filter

__all__ = ["particle_gibbs", "parallel_tempering", "swap_log_ratio"]

POTENTIALS = ("prefix", "twist")
POSTERIORS = ("particles", "references")


def _phi(lo, num_steps, tau, twist: bool, absorbing: bool):
    r""":math:`\Phi(x) = \sum_{t \le T} \log G_t` (untempered) of paths with per-step log-odds ``lo [B, T]``."""
    T = lo.shape[-1]
    last = jnp.take_along_axis(lo, jnp.clip(num_steps - 1, 0, T - 1)[:, None], 1)[:, 0]
    if twist:
        return jnp.where(num_steps > 0, last, 0.0) / tau
    mask = step_mask(T, jnp.zeros_like(num_steps), num_steps)
    phi = jnp.sum(jnp.where(mask, lo, 0.0), 1)
    if absorbing:  # the final factor again at each of the T - K steps after the path finished
        phi = phi + (T - num_steps).astype(lo.dtype) * jnp.where(num_steps > 0, last, 0.0)
    return phi / tau


def _potential(reward, rp, T: int, prompt_length, tau, inv_temp, twist: bool) -> MemoryPotential:
    r""":math:`\log G_t` = the prefix's log-odds (or their increment, ``twist``) over :math:`\tau`, at
    inverse temperature ``inv_temp``; the generation's :class:`~ppl.lm.paths.PathRecord` in memory."""

    def update(prev, state):
        lo_t = log_odds(reward.log_score(rp, state).astype(jnp.float32))
        i = jnp.clip(prev.num_steps, 0, T - 1)
        inc = lo_t - jnp.where(prev.num_steps > 0, prev.memory.lo[jnp.maximum(i - 1, 0)], 0.0) if twist else lo_t
        return inc / tau * inv_temp, record_step(prev, state, lo_t)

    return MemoryPotential(update, empty_record(prompt_length, T), "prefix log-odds")


def _build(program: LMProgram, reward, N: int, I: int, M: int, twist: bool, finished):
    """The compiled run: ``M`` CSMC chains (vmapped) for ``I`` sweeps, with swaps if ``M > 1``."""
    T = int(program.num_steps)
    slots = jnp.arange(N)
    absorbing = finished is base.absorbing

    def sweep(data, rp, key, ref, pin, inv_temp, tau):
        """One (conditional, if ``pin``) SMC sweep of one chain; ``ref`` is a generation with its record."""
        is_ref = (slots == 0) & pin
        model = program.with_potential(_potential(reward, rp, T, data["prompt_length"], tau, inv_temp, twist),
                                       correct_proposal=False)

        def select(k, log_w, n):  # i.i.d. draws; slot 0 keeps the reference's past
            return jnp.where(is_ref, 0, jax.random.categorical(k, log_w, shape=(n,)).astype(jnp.int32))

        def adjust(t, parents, x, inc):  # slot 0 holds the reference's first t + 1 steps, with its weight
            lo = ref.memory.lo
            lo_inc = lo[t] - jnp.where(t > 0, lo[jnp.maximum(t - 1, 0)], 0.0) if twist else lo[t]
            x = jax.tree_util.tree_map(lambda a, r: a.at[0].set(jnp.where(pin, r, a[0])), x, truncate(ref, t + 1))
            return x, inc.at[0].set(jnp.where(pin, lo_inc / tau * inv_temp, inc[0]))

        k_loop, k_pick = jax.random.split(key)
        res, failure, _ = build_filter(model, N, select, 1.0, finished=finished, collect=counter(is_ref),
                                       adjust=adjust)(data, k_loop)
        k = jax.random.categorical(k_pick, res.log_weights).astype(jnp.int32)
        new_ref = jax.tree_util.tree_map(lambda a: a[k], res.particles)
        return new_ref, res, failure

    def run(data, rp, key, inv_temps, tau):
        prompt = program.prompt_state(data)._replace(memory=empty_record(data["prompt_length"], T))
        sweeps = jax.vmap(sweep, in_axes=(None, None, 0, 0, None, 0, None))

        def iteration(k_it, carry, i):
            refs, counts, bad = carry
            k_sw, k_swap = jax.random.split(k_it)
            old = refs
            refs, res, failure = sweeps(data, rp, jax.random.split(k_sw, M), refs, i > 0, inv_temps, tau)
            cold = M - 1
            swap_acc = swap_prob = jnp.zeros((max(M - 1, 1),), jnp.float32)
            if M > 1:
                phi = _phi(refs.memory.lo, refs.num_steps, tau, twist, absorbing)
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
                "score_lo": jnp.take_along_axis(parts.memory.lo, jnp.clip(parts.num_steps - 1, 0, T - 1)[:, None],
                                                1)[:, 0],
                "reference": lite(ref_cold._replace(memory=())),
                "reference_lo": ref_cold.memory.lo[jnp.clip(ref_cold.num_steps - 1, 0, T - 1)],
                "ess": res.ess[cold], "log_evidence": res.log_evidence, "changed": changed,
                "swap_accept": swap_acc, "swap_prob": swap_prob,
            }
            return (refs, counts + jnp.sum(res.aux, 0), bad | jnp.any(failure != base.OK)), ys

        init = (broadcast(prompt, M), jnp.zeros((3,), jnp.int32), jnp.asarray(False))
        (_, counts, bad), ys = run_chain(iteration, init, key, I)
        return ys, counts, bad

    return run


def _validate_common(program, num_particles, num_iterations, key, reward, answer_fn, tau, select, burn_in,
                     posterior, potential, method):
    check_program(program, method)
    N = check_int("num_particles", num_particles, 2)
    I = check_int("num_iterations", num_iterations, 1)
    check_key(key)
    check_reward(reward, True, method)
    t = check_positive("tau", tau)
    check_select(select, SELECT_RULES, answer_fn)
    b = check_int("burn_in", burn_in, 0)
    if b >= I:
        raise ValueError(f"burn_in: must be smaller than num_iterations={I}, got {burn_in!r}")
    if posterior not in POSTERIORS:
        raise ValueError(f"posterior: expected one of {POSTERIORS}, got {posterior!r}")
    if potential not in POTENTIALS:
        raise ValueError(f"potential: expected one of {POTENTIALS}, got {potential!r}")
    return N, I, t, b


def _finished(finished, potential):
    if finished is None:
        return base.factor_one if potential == "twist" else base.absorbing
    if finished not in (base.absorbing, base.factor_one):
        raise ValueError(f"finished: expected ppl.smc.base.absorbing or ppl.smc.base.factor_one, got {finished!r}")
    return finished


def _run(method, program, N, I, temperatures, key, reward, answer_fn, tau, select, burn_in, posterior,
         potential, finished) -> ScalingResult:
    M = len(temperatures)
    twist = potential == "twist"
    cache_key = (method, program.static_key(), reward_key(reward), N, I, M, twist, finished)
    fn = cached_jit(cache_key, lambda: _build(program, reward, N, I, M, twist, finished))
    inv_temps = jnp.asarray([1.0 / t for t in temperatures], jnp.float32)
    ys, counts, bad = fn(program.data, reward.params, key, inv_temps, jnp.asarray(tau, jnp.float32))
    if bool(bad):
        raise SMCError(f"{method}: the reward returned NaN for a prefix; check reward.log_score")
    compute = Compute.from_counts(counts, int(np.asarray(program.data["prompt_length"])), program.lm, reward)
    keep = slice(burn_in, I)
    n_keep = I - burn_in
    sig = lambda lo: 1.0 / (1.0 + np.exp(-np.asarray(lo, np.float64)))  # noqa: E731
    if posterior == "particles":
        particles = jax.tree_util.tree_map(
            lambda a: None if a is None else jnp.reshape(a[keep], (n_keep * N,) + a.shape[2:]), ys["particles"])
        log_w = np.asarray(ys["log_w"][keep], np.float64).reshape(-1) - math.log(n_keep)
        scores = sig(ys["score_lo"][keep]).reshape(-1)
    else:
        particles = jax.tree_util.tree_map(lambda a: None if a is None else a[keep], ys["reference"])
        log_w = np.zeros(n_keep)
        scores = sig(ys["reference_lo"][keep])
    diagnostics = {
        "ess": np.asarray(ys["ess"], np.float64),
        "log_evidence": np.asarray(ys["log_evidence"], np.float64)[:, -1],
        "reference_changed": np.asarray(ys["changed"], bool),
        "reference_update_rate": float(np.mean(np.asarray(ys["changed"])[1:])) if I > 1 else float("nan"),
        "references": [np.asarray(ys["reference"].tokens[i, int(ys["reference"].prompt_length[i]):
                                                          int(ys["reference"].length[i])]).tolist()
                       for i in range(I)],
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
    return None if n < 2 else ((n, iters), {"tau": settings.get("tau", 1.0)})


def _tempered_sweeps(budget: int, settings):
    """Two chains (temperatures 2 and 1) of :math:`B / 2I` particles × :math:`I` sweeps."""
    iters = settings.get("iterations", 4)
    n = budget // (2 * iters)
    return None if n < 2 else ((n, iters), {"temperatures": (2.0, 1.0)})


@method(batchable=False, budget=_sweeps)
def particle_gibbs(program: LMProgram, num_particles: int, num_iterations: int, *, key: jax.Array, reward,
                   answer_fn: Optional[Callable] = None, tau: float = 1.0, ancestor_sampling: bool = False,
                   select: str = "vote", burn_in: int = 0, posterior: str = "particles",
                   potential: str = "prefix", finished: Optional[Callable] = None) -> ScalingResult:
    r"""Particle Gibbs over whole reasoning chains with PRM potentials (Puri et al. 2025).

    Iterates conditional SMC sweeps (see the module documentation) on the target
    :math:`\pi(x) \propto q(x) \prod_{t \le T} G_{\min(t, K(x))}(x)` (``finished=absorbing``, the
    default; :math:`\prod_{t \le K(x)} G_t` with ``factor_one``), :math:`G_t` the odds of the
    reward's prefix score to the power :math:`1/\tau`: the particle filter's target.

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
    answer_fn
        ``token_ids -> answer or None`` (default: the whole generation).
    tau
        :math:`\tau > 0`, the softmax temperature of the weights (traced).
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
    potential
        ``"prefix"`` (default; :math:`G_t` = odds of the prefix score) or ``"twist"`` (ratios of
        odds: the target weights only the final score).
    finished
        What a finished generation's factor is at the steps after it finished:
        :func:`ppl.smc.base.absorbing` (its final factor again: the target of
        :func:`~ppl.scaling.particle_filter` with the softmax weighting; the default with
        ``potential="prefix"``) or :func:`ppl.smc.base.factor_one` (the default with
        ``"twist"``, whose product then telescopes to the final odds).

    Returns
    -------
    ScalingResult
        ``particles`` hold the pooled states (without their KV caches); ``scores`` the final
        prefix scores. ``diagnostics``: ``ess`` ``[I, T]`` (per sweep and step), ``log_evidence``
        ``[I]`` (each sweep's :math:`\log\hat Z`; conditional sweeps are biased upwards),
        ``reference_changed`` ``[I]`` and ``reference_update_rate`` (how often a sweep changed
        the reference generation — the mixing of the chain), ``references`` (each sweep's
        reference, as generated token ids).

    Compute counts every sampled token (the reference is never re-sampled nor re-scored: its
    steps' scores are kept), one LM forward per generated token plus the prompt once, and one
    reward call per extended particle and step.
    """
    del ancestor_sampling  # the same law on LM programs (module documentation)
    N, I, t, b = _validate_common(program, num_particles, num_iterations, key, reward, answer_fn, tau, select,
                                  burn_in, posterior, potential, "particle_gibbs")
    return _run("particle_gibbs", program, N, I, (1.0,), key, reward, answer_fn, t, select, b, posterior,
                potential, _finished(finished, potential))


@method(batchable=False, budget=_tempered_sweeps)
def parallel_tempering(program: LMProgram, num_particles: int, num_iterations: int, *,
                       temperatures: Sequence[float] = (4.0, 2.0, 1.0), key: jax.Array, reward,
                       answer_fn: Optional[Callable] = None, tau: float = 1.0, select: str = "vote",
                       burn_in: int = 0, posterior: str = "particles", potential: str = "prefix",
                       finished: Optional[Callable] = None) -> ScalingResult:
    r"""Parallel tempering of particle Gibbs chains (Puri et al. 2025).

    :math:`M` chains, chain :math:`k` a particle Gibbs chain on
    :math:`\pi_k(x) \propto q(x) \prod_t G_t^{1/T_k}`, run as one batch; after every sweep,
    neighbouring chains propose to swap their references (see the module documentation and
    :func:`swap_log_ratio`). The answer comes from the coldest chain.

    Parameters
    ----------
    program, num_particles, num_iterations, key, reward, answer_fn, tau, select, burn_in, posterior, potential, finished
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
    try:
        temps = tuple(float(t) for t in temperatures)
    except (TypeError, ValueError):
        raise ValueError(f"temperatures: expected a sequence of positive numbers, got {temperatures!r}") from None
    if len(temps) < 2 or not all(t > 0 and math.isfinite(t) for t in temps) or any(
            a <= b for a, b in zip(temps, temps[1:])):
        raise ValueError(f"temperatures: expected at least two positive numbers in strictly decreasing order "
                         f"(hottest first, coldest last), got {temperatures!r}")
    N, I, t, b = _validate_common(program, num_particles, num_iterations, key, reward, answer_fn, tau, select,
                                  burn_in, posterior, potential, "parallel_tempering")
    return _run("parallel_tempering", program, N, I, temps, key, reward, answer_fn, t, select, b, posterior,
                potential, _finished(finished, potential))
