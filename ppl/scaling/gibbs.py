r"""Particle Gibbs and parallel tempering over whole reasoning chains (Puri et al. 2025, §4).

Both are MCMC on whole generations :math:`x = (x_1, \dots, x_{K(x)})` (:math:`K(x) \le T`
reasoning steps) with a conditional SMC (CSMC, Andrieu, Doucet & Holenstein 2010) sweep as the
kernel. The target is the Feynman–Kac model of the particle filter of Puri et al.: the program's
sampler :math:`q` as the base distribution and the reward model's prefix scores
:math:`r_t = r(x_{1:t})` as potentials,

.. math::

    \pi(x) \propto q(x) \prod_{t=1}^{K(x)} G_t(x_{1:t}), \qquad
    G_t = \Big(\frac{r_t}{1 - r_t}\Big)^{1/\tau} \quad (\texttt{potential="prefix"}),

with :math:`r_t` clipped to :math:`[\varepsilon, 1-\varepsilon]`, :math:`\varepsilon = 10^{-6}`
(the resampling weight of the reference code, :math:`\mathrm{softmax}(\mathrm{logit}(r)/\tau)`,
with weights recomputed from the current prefix at every step). A finished generation keeps its
factors and gets no more (it can be resampled, not extended). With ``potential="twist"`` the
potentials are the ratios :math:`G_t = (o_t / o_{t-1})^{1/\tau}` of the odds
:math:`o_t = r_t/(1-r_t)` (:math:`o_0 = 1`), which telescope: the target is
:math:`q(x)\, o(x)^{1/\tau}`, the odds of the *final* score only, and the intermediate ones act as
look-ahead.

**One CSMC sweep** with :math:`N` particles, given a reference generation :math:`x^*` in slot 0:
for :math:`t = 1, \dots, T`, draw the ancestors of slots :math:`1..N-1` i.i.d. from the weights
(slot 0 keeps the reference's own past), extend every unfinished particle but the reference by
one step from :math:`q`, put the reference's step-:math:`t` prefix :math:`x^*_{1:t}` in slot 0
and weight every particle by :math:`G_t` of its *current* prefix — the reference competes with
its partial weight at step :math:`t`, not its full-path weight (the bug of an early reference
implementation). The next reference is a particle drawn by its final weight. This leaves
:math:`\pi` invariant for any :math:`N \ge 2`. The first sweep has no reference (a plain particle
filter with multinomial resampling at every step). Budget: :math:`N \times I` rollouts.

*Ancestor sampling* (PGAS) would redraw the reference's ancestor at each step with probability
:math:`\propto W^i_{t-1} q(x^*_t \mid x^i_{1:t-1}) G_t`. A state of an LM program *is* its whole
prefix, so that density is zero unless particle :math:`i` holds exactly the reference's prefix —
a copy of the reference's own past. PGAS therefore has the same law as particle Gibbs here;
``ancestor_sampling=True`` is accepted and changes nothing.

**Parallel tempering** runs :math:`M` such chains at temperatures :math:`T_1 > \dots > T_M`,
chain :math:`k` targeting :math:`\pi_k(x) \propto q(x) \prod_t G_t^{1/T_k}`, as one batch. After
every sweep, neighbours :math:`(k, k+1)`, for :math:`k = 1, \dots, M-1` in turn, propose to swap
references :math:`x` (chain :math:`k`) and :math:`x'` (chain :math:`k+1`), accepted with
probability

.. math::

    \min\Big(1, \frac{\pi_k(x')\,\pi_{k+1}(x)}{\pi_k(x)\,\pi_{k+1}(x')}\Big)
    = \min\Big(1, \exp\big[(\Phi(x') - \Phi(x))\,(1/T_k - 1/T_{k+1})\big]\Big),
    \qquad \Phi(x) = \sum_t \log G_t(x_{1:t})

(:math:`q` cancels). The answer comes from the coldest chain, :math:`T_M`.

**The answer posterior** (``posterior=``): ``"particles"`` (default) pools the weighted particle
systems of the sweeps after ``burn_in`` — each sweep's normalised weights divided by the number
of sweeps. Given a reference drawn from :math:`\pi`, a CSMC sweep's weighted particles estimate
:math:`\pi` without bias (drawing one of them by weight *is* the kernel), so the pooled set is a
Rao–Blackwellised form of the chain average that uses every rollout of the budget.
``"references"`` pools the chain's references (one per sweep, equal weights): the plain MCMC
estimate.

Nothing is re-scored: every particle carries its per-step lengths, :math:`\log p`,
:math:`\log q` and log-odds, so the reference's step-:math:`t` state is its final state
truncated to a step boundary (valid by the pending-token invariant of
:class:`~ppl.lm.LMState`) and its partial weight is the score it had when it was generated.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ppl.core.checks import check_int, check_key, check_positive
from ppl.core.errors import SMCError
from ppl.lm.program import LMProgram
from ppl.lm.sampling import sample_step
from ppl.scaling._cache import cached_jit, reward_key
from ppl.scaling.compute import Compute
from ppl.scaling.power import (Path, _check_program, _check_reward,
                               _check_select, empty_paths, lite, step_mask, truncate)
from ppl.scaling.result import ScalingResult, finish

__all__ = ["particle_gibbs", "parallel_tempering", "swap_log_ratio"]

#: Prefix scores are clipped to ``[EPS, 1 - EPS]`` before taking odds.
EPS = 1e-6
POTENTIALS = ("prefix", "twist")
POSTERIORS = ("particles", "references")


def swap_log_ratio(phi_k, phi_k1, temperature_k, temperature_k1):
    r"""Log acceptance ratio of swapping the states of chains :math:`k` and :math:`k+1`.

    With :math:`\pi_k(x) \propto q(x) \exp(\Phi(x) / T_k)`, chain :math:`k` holding :math:`x`
    (``phi_k`` :math:`= \Phi(x)`) and chain :math:`k+1` holding :math:`x'`
    (``phi_k1`` :math:`= \Phi(x')`),

    .. math::

        \log \frac{\pi_k(x')\,\pi_{k+1}(x)}{\pi_k(x)\,\pi_{k+1}(x')}
        = (\Phi(x') - \Phi(x)) \Big(\frac{1}{T_k} - \frac{1}{T_{k+1}}\Big).
    """
    return (phi_k1 - phi_k) * (1.0 / temperature_k - 1.0 / temperature_k1)


def _log_odds(reward, reward_params, states):
    """Clipped log-odds of the reward's prefix scores, for a batch of states."""
    lr = jax.vmap(lambda s: reward.log_score(reward_params, s))(states).astype(jnp.float32)
    r = jnp.clip(jnp.exp(lr), EPS, 1.0 - EPS)
    return jnp.where(jnp.isnan(lr), jnp.nan, jnp.log(r) - jnp.log1p(-r))


def _phi(lo, num_steps, tau, twist: bool):
    r""":math:`\Phi(x) = \sum_t \log G_t` (untempered) of paths with per-step log-odds ``lo [B, T]``."""
    T = lo.shape[-1]
    if twist:
        last = jnp.take_along_axis(lo, jnp.clip(num_steps - 1, 0, T - 1)[:, None], 1)[:, 0]
        return jnp.where(num_steps > 0, last, 0.0) / tau
    mask = step_mask(T, jnp.zeros_like(num_steps), num_steps)
    return jnp.sum(jnp.where(mask, lo, 0.0), 1) / tau


def _build(program: LMProgram, reward, N: int, I: int, M: int, twist: bool):
    """The compiled run: ``M`` CSMC chains (vmapped) for ``I`` sweeps, with swaps if ``M > 1``."""
    lm, cfg, T = program.lm, program.config, int(program.num_steps)
    log_n = math.log(N)
    slots = jnp.arange(N)

    def sweep(data, rp, key, ref, lo_ref, pin, inv_temp, tau, prompt):
        """One (conditional, if ``pin``) SMC sweep of one chain; ``ref`` is a Path, ``lo_ref [T]``."""
        params = data["params"]
        paths = empty_paths(prompt, N, T)
        lo = jnp.zeros((N, T), jnp.float32)
        put0 = lambda a, r: a.at[0].set(jnp.where(pin, r, a[0]))  # noqa: E731
        paths = paths._replace(bounds=put0(paths.bounds, ref.bounds), log_p=put0(paths.log_p, ref.log_p),
                               log_q=put0(paths.log_q, ref.log_q))
        lo = put0(lo, lo_ref)
        is_ref = (slots == 0) & pin
        zero = jnp.asarray(0, jnp.int32)

        def cond(c):
            t, _, p, *_ = c
            return (t <= T) & ~jnp.all(p.state.done)

        def body(c):
            t, key, p, lo, log_w, ess, lz, gen, calls, ptok, bad = c
            key, k_res, k_move = jax.random.split(key, 3)
            # Slots 1..N-1 draw i.i.d. ancestors; slot 0 keeps the reference's past.
            anc = jax.random.categorical(k_res, log_w, shape=(N,)).astype(jnp.int32)
            anc = jnp.where(is_ref, 0, anc)
            p, lo = jax.tree_util.tree_map(lambda a: jnp.take(a, anc, axis=0), (p, lo))
            s = p.state
            live = ~s.done
            moved = live & ~is_ref
            new, lp, lq = sample_step(lm, params, k_move, s._replace(done=s.done | is_ref), cfg)
            ref_t = truncate(ref, t)
            new = jax.tree_util.tree_map(put0, new, ref_t)
            i = t - 1
            lo_t = jnp.where(is_ref, lo[:, i], _log_odds(reward, rp, new))
            if twist:
                lo_t_inc = lo_t - jnp.where(t > 1, lo[:, jnp.maximum(i - 1, 0)], 0.0)
            else:
                lo_t_inc = lo_t
            inc = jnp.where(live, lo_t_inc / tau * inv_temp, 0.0)
            bad = bad | jnp.any(jnp.isnan(inc))
            log_w = -log_n + jnp.where(jnp.isnan(inc), -jnp.inf, inc)
            lz_t = logsumexp(log_w)
            log_w = log_w - lz_t
            ess = ess.at[i].set(jnp.exp(-logsumexp(2.0 * log_w)))
            p = Path(
                state=new,
                bounds=p.bounds.at[:, t].set(jnp.where(moved, new.length, p.bounds[:, t])),
                log_p=p.log_p.at[:, i].set(jnp.where(moved, lp, p.log_p[:, i])),
                log_q=p.log_q.at[:, i].set(jnp.where(moved, lq, p.log_q[:, i])),
            )
            lo = lo.at[:, i].set(jnp.where(moved, lo_t, lo[:, i]))
            gen = gen + jnp.sum(jnp.where(moved, new.length - s.length, 0))
            calls = calls + jnp.sum(moved.astype(jnp.int32))
            ptok = ptok + jnp.sum(jnp.where(moved, new.length, 0))
            return t + 1, key, p, lo, log_w, ess, lz + lz_t, gen, calls, ptok, bad

        k_loop, k_pick = jax.random.split(key)
        carry = (jnp.asarray(1, jnp.int32), k_loop, paths, lo, jnp.full((N,), -log_n), jnp.full((T,), jnp.nan),
                 jnp.asarray(0.0), zero, zero, zero, jnp.asarray(False))
        _, _, paths, lo, log_w, ess, lz, gen, calls, ptok, bad = jax.lax.while_loop(cond, body, carry)
        k = jax.random.categorical(k_pick, log_w).astype(jnp.int32)
        new_ref = jax.tree_util.tree_map(lambda a: a[k], paths)
        return new_ref, lo[k], paths, lo, log_w, ess, lz, jnp.stack([gen, calls, ptok]), bad

    def run(data, rp, key, inv_temps, tau):
        prompt = program.prompt_state(data)
        refs = empty_paths(prompt, M, T)
        lo_refs = jnp.zeros((M, T), jnp.float32)
        sweeps = jax.vmap(sweep, in_axes=(None, None, 0, 0, 0, None, 0, None, None))

        def it(carry, inp):
            refs, lo_refs, counts, bad = carry
            k_it, i = inp
            k_sw, k_swap = jax.random.split(k_it)
            new_refs, new_lo, paths, lo, log_w, ess, lz, c, b = sweeps(
                data, rp, jax.random.split(k_sw, M), refs, lo_refs, i > 0, inv_temps, tau, prompt)
            cold = M - 1
            old_ref_state = refs.state
            swap_acc = jnp.zeros((max(M - 1, 1),), jnp.float32)
            swap_prob = jnp.zeros((max(M - 1, 1),), jnp.float32)
            if M > 1:
                phi = _phi(new_lo, new_refs.state.num_steps, tau, twist)
                log_u = jnp.log(jax.random.uniform(k_swap, (M - 1,)))

                def swap(k, sc):
                    perm, acc, prob = sc
                    a, b_ = perm[k], perm[k + 1]
                    log_r = swap_log_ratio(phi[a], phi[b_], 1.0 / inv_temps[k], 1.0 / inv_temps[k + 1])
                    ok = log_u[k] < log_r
                    perm = perm.at[k].set(jnp.where(ok, b_, a)).at[k + 1].set(jnp.where(ok, a, b_))
                    return perm, acc.at[k].set(ok.astype(jnp.float32)), prob.at[k].set(
                        jnp.minimum(1.0, jnp.exp(log_r)))

                perm, swap_acc, swap_prob = jax.lax.fori_loop(
                    0, M - 1, swap, (jnp.arange(M), swap_acc, swap_prob))
                new_refs, new_lo = jax.tree_util.tree_map(lambda a: jnp.take(a, perm, axis=0), (new_refs, new_lo))
            # Whether the coldest chain's reference generation changed in this sweep.
            a_s, b_s = old_ref_state, new_refs.state
            idx = jnp.arange(a_s.tokens.shape[-1])
            changed = (a_s.length[cold] != b_s.length[cold]) | jnp.any(
                (a_s.tokens[cold] != b_s.tokens[cold]) & (idx < b_s.length[cold]))
            ref_cold = jax.tree_util.tree_map(lambda a: a[cold], new_refs)
            K_parts = paths.state.num_steps[cold]
            ys = {
                "particles": lite(jax.tree_util.tree_map(lambda a: a[cold], paths.state)),
                "log_w": log_w[cold],
                "score_lo": jnp.take_along_axis(lo[cold], jnp.clip(K_parts - 1, 0, T - 1)[:, None], 1)[:, 0],
                "reference": lite(ref_cold.state),
                "reference_lo": new_lo[cold][jnp.clip(ref_cold.state.num_steps - 1, 0, T - 1)],
                "ess": ess[cold], "log_evidence": lz, "changed": changed,
                "swap_accept": swap_acc, "swap_prob": swap_prob,
            }
            return (new_refs, new_lo, counts + jnp.sum(c, 0), bad | jnp.any(b)), ys

        init = (refs, lo_refs, jnp.zeros((3,), jnp.int32), jnp.asarray(False))
        (_, _, counts, bad), ys = jax.lax.scan(it, init, (jax.random.split(key, I), jnp.arange(I)))
        return ys, counts, bad

    return run


def _validate_common(program, num_particles, num_iterations, key, reward, answer_fn, tau, select, burn_in,
                     posterior, potential, method):
    _check_program(program, method)
    N = check_int("num_particles", num_particles, 2)
    I = check_int("num_iterations", num_iterations, 1)
    check_key(key)
    _check_reward(reward, True, method)
    if answer_fn is not None and not callable(answer_fn):
        raise TypeError(f"answer_fn: expected a callable token_ids -> answer, got {type(answer_fn).__name__}")
    t = check_positive("tau", tau)
    _check_select(select)
    b = check_int("burn_in", burn_in, 0)
    if b >= I:
        raise ValueError(f"burn_in: must be smaller than num_iterations={I}, got {burn_in!r}")
    if posterior not in POSTERIORS:
        raise ValueError(f"posterior: expected one of {POSTERIORS}, got {posterior!r}")
    if potential not in POTENTIALS:
        raise ValueError(f"potential: expected one of {POTENTIALS}, got {potential!r}")
    return N, I, t, b


def _run(method, program, N, I, temperatures, key, reward, answer_fn, tau, select, burn_in, posterior,
         potential) -> ScalingResult:
    M = len(temperatures)
    twist = potential == "twist"
    cache_key = (method, program.static_key(), reward_key(reward), N, I, M, twist)
    fn = cached_jit(cache_key, lambda: _build(program, reward, N, I, M, twist))
    inv_temps = jnp.asarray([1.0 / t for t in temperatures], jnp.float32)
    ys, counts, bad = fn(program.data, reward.params, key, inv_temps, jnp.asarray(tau, jnp.float32))
    if bool(bad):
        raise SMCError(f"{method}: the reward returned NaN for a prefix; check reward.log_score")
    gen, calls, ptok = (int(v) for v in np.asarray(counts))
    prompt_len = int(np.asarray(program.data["prompt_length"]))
    compute = Compute.count(generated_tokens=gen, lm_forward_tokens=prompt_len + gen, prm_calls=calls,
                            prm_forward_tokens=ptok, lm=program.lm, reward=reward)
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
    }
    if M > 1:
        acc = np.asarray(ys["swap_accept"], np.float64)[:, :M - 1]
        prob = np.asarray(ys["swap_prob"], np.float64)[:, :M - 1]
        diagnostics.update({"temperatures": tuple(float(t) for t in temperatures),
                            "swap_acceptance": acc.mean(0), "swap_acceptance_prob": prob.mean(0),
                            "swap_accepted": acc})
    return finish(method, particles, log_w, scores=scores, answer_fn=answer_fn, select=select, compute=compute,
                  budget=N * I * M, diagnostics=diagnostics)


def particle_gibbs(program: LMProgram, num_particles: int, num_iterations: int, *, key: jax.Array, reward,
                   answer_fn: Optional[Callable] = None, tau: float = 1.0, ancestor_sampling: bool = False,
                   select: str = "vote", burn_in: int = 0, posterior: str = "particles",
                   potential: str = "prefix") -> ScalingResult:
    r"""Particle Gibbs over whole reasoning chains with PRM potentials (Puri et al. 2025).

    Iterates conditional SMC sweeps (see the module documentation) on the target
    :math:`\pi(x) \propto q(x) \prod_{t \le K(x)} G_t(x_{1:t})`, :math:`G_t` the odds of the
    reward's prefix score to the power :math:`1/\tau`.

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
                potential)


def parallel_tempering(program: LMProgram, num_particles: int, num_iterations: int, *,
                       temperatures: Sequence[float] = (4.0, 2.0, 1.0), key: jax.Array, reward,
                       answer_fn: Optional[Callable] = None, tau: float = 1.0, select: str = "vote",
                       burn_in: int = 0, posterior: str = "particles", potential: str = "prefix") -> ScalingResult:
    r"""Parallel tempering of particle Gibbs chains (Puri et al. 2025).

    :math:`M` chains, chain :math:`k` a particle Gibbs chain on
    :math:`\pi_k(x) \propto q(x) \prod_t G_t^{1/T_k}`, run as one batch; after every sweep,
    neighbouring chains propose to swap their references (see the module documentation and
    :func:`swap_log_ratio`). The answer comes from the coldest chain.

    Parameters
    ----------
    program, num_particles, num_iterations, key, reward, answer_fn, tau, select, burn_in, posterior, potential
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
                potential)
