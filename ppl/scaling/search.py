r"""Beam search and diverse verifier tree search (DVTS) with a process reward model.

Both are SMC on the LM-state Feynman–Kac model with the resampling step replaced by a
*deterministic selection* (Snell et al. 2024; the search-and-learn reference):

* **Beam search** with :math:`N` beams and width :math:`M`: sample one step for each of the
  :math:`N` beams, score every prefix with the reward model, keep the :math:`N/M` highest-scored
  prefixes and expand each :math:`M` ways (:math:`M` independent next steps) — the scheme
  :func:`ppl.smc.resampling.top_k` with :math:`k = N/M`.
* **DVTS** splits the :math:`N` beams into :math:`N/M` independent subtrees of :math:`M`; each
  subtree keeps its single best prefix and expands it :math:`M` ways. Subtrees never exchange
  particles, which keeps the search diverse.

The score of a prefix is the reward's score of the current prefix (the last-step score).
**Finished beams** (end of sequence, or the step limit) compete with their final score and are
never extended; when a finished beam is selected, one copy of it is kept and its other
:math:`M - 1` slots are retired (no tokens, no reward calls), as the reference moves completed
beams out of the active set. The search stops when every beam has finished or after the
program's ``max_steps`` steps; the answer is that of the best final beam (``select="argmax"``) or
the score-weighted vote over the final beams (``select="vote"``, weighted best-of-N).

Selection is not unbiased: these are search methods, not samplers. Given the sampled steps the
selection is deterministic (ties go to the lower slot). The budget is :math:`N` beams: about
:math:`N` rollouts of tokens.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ppl.lm.sampling import sample_step
from ppl.scaling._cache import cached_jit, reward_key
from ppl.scaling.compute import Compute
from ppl.scaling.power import _check_int, _check_key, _check_program, _check_reward
from ppl.scaling.result import ScalingResult, finish
from ppl.smc import resampling as rs

__all__ = ["beam_search", "dvts"]


def select_top(scores: jax.Array, groups: int, keep: int) -> jax.Array:
    """Ancestors ``[N]`` for "in each of ``groups`` consecutive groups of slots, keep the ``keep``
    best and repeat each ``N / (groups * keep)`` times" (deterministic; ties to the lower slot)."""
    n = scores.shape[0]
    size = n // groups
    per = size // keep
    g = scores.reshape(groups, size)
    _, idx = jax.lax.top_k(g, keep)  # [groups, keep], best first
    idx = idx + (jnp.arange(groups) * size)[:, None]
    return jnp.repeat(idx.reshape(-1), per).astype(jnp.int32)


def _build(program, reward, N: int, M: int, groups: int):
    T = int(program.num_steps)
    lm, cfg = program.lm, program.config
    keep = N // M // groups
    score_v = jax.vmap(reward.log_score, in_axes=(None, 0))

    def run(data, rparams, key):
        x = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (N,) + a.shape), program.prompt_state(data))
        log_s = jnp.zeros((N,), jnp.float32)
        retired = jnp.zeros((N,), bool)
        counts = jnp.zeros((3,), jnp.int32)

        def cond(c):
            t, _, x, _, retired, _, bad = c
            return (t < T) & ~jnp.all(x.done | retired) & ~bad

        def body(c):
            t, key, x, log_s, retired, counts, bad = c
            key, k_move = jax.random.split(key)

            def select(args):
                x, log_s, retired = args
                rank = jnp.where(retired, -jnp.inf, log_s)
                anc = select_top(rank, groups, keep)
                x, log_s, parent_retired = rs.gather((x, log_s, retired), anc)
                # One copy of a finished (or retired) parent stays; its other slots retire.
                first = jnp.concatenate([jnp.ones((1,), bool), anc[1:] != anc[:-1]])
                retired = parent_retired | (x.done & ~first)
                return x, log_s, retired

            x, log_s, retired = jax.lax.cond(t > 0, select, lambda a: a, (x, log_s, retired))
            live = ~x.done  # retired slots are copies of finished beams: done as well
            new, _, _ = sample_step(lm, data["params"], k_move, x, cfg)
            log_r = score_v(rparams, new)
            bad = bad | jnp.any(live & jnp.isnan(log_r))
            log_s = jnp.where(live, log_r, log_s)
            grown = jnp.sum(new.length - x.length)
            calls = jnp.sum(live.astype(jnp.int32))
            read = jnp.sum(jnp.where(live, new.length, 0))
            counts = counts + jnp.stack([grown, calls, read]).astype(jnp.int32)
            return t + 1, key, new, log_s, retired, counts, bad

        carry = (jnp.asarray(0, jnp.int32), key, x, log_s, retired, counts, jnp.asarray(False))
        t, _, x, log_s, retired, counts, bad = jax.lax.while_loop(cond, body, carry)
        return x, log_s, retired, counts, t, bad

    return run


def _search(method, program, num_beams, beam_width, key, reward, answer_fn, select, dvts_mode) -> ScalingResult:
    _check_program(program, method)
    n = _check_int("num_beams", num_beams, 1)
    m = _check_int("beam_width", beam_width, 1)
    if n % m:
        raise ValueError(f"beam_width: num_beams={n} must be a multiple of beam_width={m}")
    _check_key(key)
    _check_reward(reward, True, method)
    if select not in ("argmax", "vote"):
        raise ValueError(f"select: expected 'argmax' or 'vote', got {select!r}")
    if answer_fn is not None and not callable(answer_fn):
        raise TypeError(f"answer_fn: expected a callable token_ids -> answer, got {type(answer_fn).__name__}")
    groups = n // m if dvts_mode else 1
    cache_key = (method, program.static_key(), reward_key(reward), n, m, groups)
    fn = cached_jit(cache_key, lambda: _build(program, reward, n, m, groups))
    x, log_s, retired, counts, steps, bad = fn(program.data, reward.params, key)
    if bool(bad):
        raise FloatingPointError(f"{method}: the reward model returned NaN scores by step {int(steps) - 1}")
    gen, calls, read = (int(v) for v in counts)
    prompt_len = int(program.data["prompt_length"])
    compute = Compute.count(generated_tokens=gen, lm_forward_tokens=prompt_len + gen, prm_calls=calls,
                            prm_forward_tokens=read, lm=program.lm, reward=reward)
    log_w = jnp.where(retired, -jnp.inf, log_s)
    scores = jnp.where(retired, jnp.nan, jnp.exp(log_s))
    diagnostics = {"num_steps": int(steps), "retired": jax.device_get(retired), "beam_width": m,
                   "subtrees": groups if dvts_mode else None}
    return finish(method, x, log_w, scores=scores, answer_fn=answer_fn, select=select, compute=compute,
                  budget=n, diagnostics=diagnostics)


def beam_search(program, num_beams: int, *, beam_width: int, key: jax.Array, reward,
                answer_fn: Optional[Callable] = None, select: str = "argmax") -> ScalingResult:
    r"""Beam search: keep the top :math:`N/M` prefixes by reward score, expand each :math:`M` ways.

    Parameters
    ----------
    program
        A :class:`~ppl.lm.LMProgram` without potential.
    num_beams
        :math:`N` (the budget in rollouts); a multiple of ``beam_width``.
    beam_width
        :math:`M`, the expansions of each kept prefix.
    key, reward, answer_fn, select
        As for :func:`ppl.scaling.particle_filter`; the final ``log_weights`` are the log-scores
        of the final beams (retired slots ``-inf``).
    """
    return _search("beam_search", program, num_beams, beam_width, key, reward, answer_fn, select, False)


def dvts(program, num_beams: int, *, beam_width: int, key: jax.Array, reward,
         answer_fn: Optional[Callable] = None, select: str = "argmax") -> ScalingResult:
    r"""Diverse verifier tree search: :math:`N/M` independent subtrees, each keeping its best
    prefix and expanding it :math:`M` ways per step (see :func:`beam_search`)."""
    return _search("dvts", program, num_beams, beam_width, key, reward, answer_fn, select, True)
