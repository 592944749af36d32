r"""Power sampling: Metropolis–Hastings over whole generations, targeting :math:`p(x)^\alpha`.

Karan & Du (2025, "Reasoning with Sampling") sample :math:`\pi_\alpha(x) \propto p(x)^\alpha`,
:math:`p` the LM at temperature 1. The proposal picks a step boundary
:math:`j \sim \mathcal{U}\{0, \dots, K - 1\}` and regenerates the suffix from there with the
program's sampler :math:`q`; the move is accepted with probability :math:`\min(1, e^{\log a})`,

.. math::

    \log a = \alpha \sum_{i \ge j} \big(\log p(x'_i) - \log p(x_i)\big)
        + \sum_{i \ge j} \log q(x_i) - \sum_{i \ge j} \log q(x'_i) + \log K - \log K' .

The per-step :math:`\log p`, :math:`\log q` and step boundaries ride in the chain state (a
:class:`~ppl.lm.paths.PathRecord`), so nothing is re-scored; a generation and a proposal
are the engine's loop, the MH steps :func:`ppl.mcmc.chain.run_chain`. Derivations:
``docs/scaling-methods.md``.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ppl.core.cache import cached_jit
from ppl.core.checks import check_int, check_key, check_positive, check_reward, reward_key
from ppl.core.trees import select_rows
from ppl.lm.compute import Compute, token_counter
from ppl.lm.paths import recorded, step_mask, truncate
from ppl.lm.program import LMProgram, check_program
from ppl.mcmc.chain import mh_accept, run_chain
from ppl.scaling.aggregate import SELECT_RULES, check_select
from ppl.scaling.method import method
from ppl.scaling.result import ScalingResult, finish
from ppl.smc import resampling as rs
from ppl.smc.base import Collector
from ppl.smc.loop import build_filter

__all__ = ["power_sampling"]


# ----------------------------------------------------------------------------- the sampler
def _build(program: LMProgram, num_chains: int, num_mh_steps: int, reward):
    T = int(program.num_steps)
    C = int(num_chains)

    def run(data, reward_params, key, alpha):
        model = program.with_potential(recorded(None, T), frozen=lambda x: x.num_steps >= T, correct_proposal=False)
        generate = build_filter(model, C, rs.systematic, 0.0, collect=token_counter)
        regenerate = build_filter(model, C, rs.systematic, 0.0,
                                  collect=Collector(lambda x: jnp.zeros((3,), jnp.int32), token_counter.update))
        k_init, k_mh = jax.random.split(key)
        res, _, _ = generate(data, k_init)

        def mh(key, carry, i):
            paths, ntok = carry
            k_j, k_gen, k_u = jax.random.split(key, 3)
            K = paths.num_steps
            j = jax.random.randint(k_j, (C,), 0, K)  # uniform over the K steps
            prop, _, _ = regenerate(data, k_gen, jax.vmap(truncate)(paths, j))
            prop, n_new = prop.particles, prop.aux[0]
            K1 = prop.num_steps
            old, new = step_mask(T, j, K), step_mask(T, j, K1)
            d_log_p = jnp.sum(jnp.where(new, prop.memory.log_p, 0.0), 1) - jnp.sum(
                jnp.where(old, paths.memory.log_p, 0.0), 1)
            d_log_q = jnp.sum(jnp.where(new, prop.memory.log_q, 0.0), 1) - jnp.sum(
                jnp.where(old, paths.memory.log_q, 0.0), 1)
            log_a = alpha * d_log_p - d_log_q + jnp.log(K.astype(jnp.float32)) - jnp.log(K1.astype(jnp.float32))
            accept = mh_accept(k_u, log_a)
            paths = select_rows(accept, prop, paths)
            log_p_total = jnp.sum(jnp.where(step_mask(T, jnp.zeros_like(K1), paths.num_steps),
                                            paths.memory.log_p, 0.0), 1)
            out = (jnp.mean(accept.astype(jnp.float32)), jnp.mean(jnp.minimum(1.0, jnp.exp(log_a))),
                   jnp.mean(log_p_total))
            return (paths, ntok + n_new), out

        (paths, ntok), (acc, acc_prob, log_p_trace) = run_chain(mh, (res.particles, res.aux[0]), k_mh,
                                                                int(num_mh_steps))
        K = paths.num_steps
        log_p_total = jnp.sum(jnp.where(step_mask(T, jnp.zeros_like(K), K), paths.memory.log_p, 0.0), 1)
        state = paths._replace(memory=())
        out = {"state": state, "generated": ntok, "accept": acc, "accept_prob": acc_prob,
               "log_p_trace": log_p_trace, "log_p": log_p_total}
        if reward is not None:
            out["log_r"] = jax.vmap(lambda s: reward.log_score(reward_params, s))(state)
            out["prm_tokens"] = jnp.sum(state.length)
        return out

    return run


def _chains(budget: int, settings):
    """A chain costs its first rollout plus about half a rollout per MH step: :math:`B / (1 + S/2)`
    chains (rounded) of :math:`S` = ``mh_steps`` steps."""
    steps = settings.get("mh_steps", 4)
    chains = int(round(budget / (1 + steps / 2)))
    return None if chains < 1 else ((chains, steps), {"alpha": settings.get("alpha", 4.0)})


@method(batchable=False, uses_reward=False, budget=_chains)
def power_sampling(program: LMProgram, num_chains: int, num_mh_steps: int, *, key: jax.Array,
                   alpha: float = 4.0, answer_fn: Optional[Callable] = None, select: Optional[str] = None,
                   reward=None) -> ScalingResult:
    r"""Power sampling (Karan & Du 2025): MH chains targeting :math:`p(x)^\alpha / Z_\alpha`.

    Parameters
    ----------
    program
        A :class:`~ppl.lm.LMProgram` without a potential. Its sampler (temperature, top-k,
        top-p) is the proposal :math:`q`; the target is the LM :math:`p` at temperature 1 raised
        to :math:`\alpha` whatever :math:`q` is (the reference uses temperature :math:`1/\alpha`).
    num_chains
        :math:`C \ge 1` independent chains, run as one batch.
    num_mh_steps
        :math:`S \ge 0` Metropolis–Hastings steps per chain (``0``: the initial draws from
        :math:`q`).
    key
        A ``jax.random.key``.
    alpha
        The power :math:`\alpha > 0` (traced: a new value does not recompile).
    answer_fn
        ``token_ids -> answer or None`` (default: the whole generation).
    select
        How the final answer is chosen from the chains' final states. ``None`` (default):
        ``"vote"`` — majority over the chains, all weighted equally — or, when a ``reward`` is
        given, ``"argmax"`` — the answer of the final state the reward scores highest. Any of
        :data:`~ppl.scaling.aggregate.SELECT_RULES` may be given explicitly.
    reward
        Optional reward model (``params``, ``log_score(params, state)``): it only scores the
        chains' final states (``scores``); it does not change the target.

    Returns
    -------
    ScalingResult
        ``particles`` are the chains' final states (uniform weights). ``diagnostics``:
        ``acceptance_rate`` (fraction of accepted moves), ``acceptance`` and
        ``acceptance_prob`` (per MH step, the fraction accepted and the mean
        :math:`\min(1, a)` over chains), ``log_p_trace`` (per MH step, the chains' mean
        :math:`\log p(x)`), ``log_p`` (each final state's :math:`\log p(x)`), ``num_steps``
        (each final state's :math:`K`). ``budget`` is ``None``: the cost is in ``compute``
        (every regenerated token is counted; an MH step costs about half a rollout).

    Notes
    -----
    The chains' final states are (approximately, for large :math:`S`) independent draws from
    :math:`\pi_\alpha`, so the vote estimates the mode of the answer's marginal under
    :math:`\pi_\alpha`.
    """
    check_program(program, "power_sampling")
    C = check_int("num_chains", num_chains, 1)
    S = check_int("num_mh_steps", num_mh_steps, 0)
    a = check_positive("alpha", alpha)
    check_key(key)
    check_reward(reward, False, "power_sampling", program)
    if select is None:
        select = "argmax" if reward is not None else "vote"
    check_select(select, SELECT_RULES, answer_fn)

    cache_key = ("power_sampling", program.static_key(), reward_key(reward), C, S)
    fn = cached_jit(cache_key, lambda: _build(program, C, S, reward))
    out = fn(program.data, None if reward is None else reward.params, key, jnp.asarray(a, jnp.float32))

    generated = int(out["generated"])
    prompt_len = int(np.asarray(program.data["prompt_length"]))
    compute = Compute.count(
        generated_tokens=generated, lm_forward_tokens=prompt_len + generated,
        prm_calls=C if reward is not None else 0,
        prm_forward_tokens=int(out["prm_tokens"]) if reward is not None else 0,
        lm=program.lm, reward=reward)
    acc = np.asarray(out["accept"], np.float64)
    diagnostics = {
        "acceptance_rate": float(acc.mean()) if S else float("nan"),
        "acceptance": acc,
        "acceptance_prob": np.asarray(out["accept_prob"], np.float64),
        "log_p_trace": np.asarray(out["log_p_trace"], np.float64),
        "log_p": np.asarray(out["log_p"], np.float64),
        "num_steps": np.asarray(out["state"].num_steps),
        "alpha": a,
    }
    scores = None if reward is None else np.exp(np.asarray(out["log_r"], np.float64))
    return finish("power_sampling", out["state"], np.zeros(C), scores=scores, answer_fn=answer_fn,
                  select=select, compute=compute, budget=None, diagnostics=diagnostics)
