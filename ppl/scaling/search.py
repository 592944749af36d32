r"""Beam search and diverse verifier tree search (DVTS) with a process reward model.

Both are SMC on the LM-state Feynman–Kac model with resampling replaced by a *deterministic
selection* on the reward's last-step score (Snell et al. 2024; HF search-and-learn): beam search
keeps the top :math:`N/M` active beams and expands each :math:`M` ways (:func:`expand_top`),
finished beams going to a pool of completed beams (a :class:`~ppl.smc.base.Collector`); DVTS
runs :math:`N/M` independent subtrees, each continuing its best candidate until that one has
finished (:func:`subtree_best`; a stopped subtree is held by the program's ``frozen`` rule).
These are search methods, not samplers: the final ``log_weights`` are the beams' log-scores.
Derivations and the comparison with search-and-learn: ``docs/scaling-methods.md``,
``docs/scaling.md``.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ppl.core.checks import check_int, check_key, check_reward, reward_key
from ppl.core.trees import broadcast, concat
from ppl.lm.compute import Compute, token_counter
from ppl.lm.paths import duplicates
from ppl.lm.potentials import Lookahead, from_reward, lookahead
from ppl.lm.program import check_program
from ppl.scaling.aggregate import check_select
from ppl.scaling.method import method
from ppl.scaling.result import ScalingResult, finish
from ppl.smc import resampling as rs
from ppl.smc.base import OK, Collector
from ppl.smc.batch import ProblemCall
from ppl.smc.loop import build_filter
from ppl.smc.selection import expand_top, keep_n, subtree_best

__all__ = ["beam_search", "dvts"]


def _score(x) -> jax.Array:
    """Each beam's log-score: the last one the reward gave it (after the look-ahead, if any)."""
    return (x.memory.inner if isinstance(x.memory, Lookahead) else x.memory).last


def _beam_select(x, done, log_w, keep: int, filter_duplicates: bool = False):
    active = ~done
    if filter_duplicates:
        active = active & ~duplicates(x, active)
    return expand_top(_score(x), active, keep)


def _subtree(x, width: int, which: int):
    """DVTS: the ancestors (``which=0``) or the slots of the subtrees whose best candidate has
    finished (``1``: held by the ``frozen`` rule, so a stopped subtree stays stopped)."""
    return subtree_best(_score(x), x.done, jnp.zeros_like(x.done), width)[which]


def _pool(prompt, N: int, sort_completed: bool):
    """Beam search's collector: the compute counters and the pool of completed beams (states,
    log-scores, which slots hold a beam): the N best (``sort_completed``) or the N first."""

    def merge(pool, new, finished):
        def take(args):
            pool, pool_s, pool_ok = args
            ok = jnp.concatenate([pool_ok, finished])
            scores = jnp.concatenate([pool_s, _score(new)])
            idx = keep_n(scores, ok, N, sort_completed)
            return rs.gather(concat(pool, new), idx), scores[idx], ok[idx]

        return jax.lax.cond(jnp.any(finished), take, lambda a: a, pool)

    def init(x):
        empty = (broadcast(prompt, N), jnp.full((N,), -jnp.inf), jnp.zeros((N,), bool))
        return token_counter.init(x), merge(empty, x, x.done)

    def update(aux, parents, children, done):
        counts, pool = aux
        return token_counter.update(counts, parents, children, done), merge(pool, children, ~done & children.done)

    return Collector(init, update)


def _build(program, reward, N: int, M: int, dvts_mode: bool, filter_duplicates: bool = False,
           sort_completed: bool = True, ahead: int = 0):
    def run(data, rparams, key):
        pot = from_reward(reward, rparams, incremental=None if ahead == 0 else False)
        if ahead:  # the look-ahead's tokens are not kept: the reward reads whole prefixes
            pot = lookahead(pot, program.lm, data["params"], program.config, ahead, program.num_steps,
                            data.get("prefix"))
        if dvts_mode:
            stopped = functools.partial(_subtree, width=M, which=1)
            model = program.with_potential(pot, frozen=stopped, correct_proposal=False)
            select = rs.Selection(lambda x, done, log_w, m: _subtree(x, m, 0), (M,))
            res, failure, _ = build_filter(model, N, select, 1.0, collect=token_counter)(data, key)
            x = res.particles
            return x, _score(x), jnp.ones((N,), bool), res.aux, res.num_steps, failure
        model = program.with_potential(pot, correct_proposal=False)
        collect = _pool(model.prompt_state(data), N, sort_completed)
        select = rs.Selection(_beam_select, (N // M, filter_duplicates))
        res, failure, _ = build_filter(model, N, select, 1.0, collect=collect)(data, key)
        x, (counts, (pool, pool_s, pool_ok)) = res.particles, res.aux
        # Final beams: the best (or first) N of the completed pool, then the beams active at the limit.
        ok = jnp.concatenate([pool_ok, ~x.done])
        scores = jnp.concatenate([pool_s, _score(x)])
        idx = keep_n(scores, ok, N, sort_completed)
        return rs.gather(concat(pool, x), idx), scores[idx], ok[idx], counts, res.num_steps, failure

    return run


def _search(method, program, num_beams, beam_width, key, reward, answer_fn, select, dvts_mode,
            filter_duplicates=False, sort_completed=True, ahead=0) -> ProblemCall:
    check_program(program, method)
    n = check_int("num_beams", num_beams, 1)
    m = check_int("beam_width", beam_width, 1)
    if n % m:
        raise ValueError(f"beam_width: num_beams={n} must be a multiple of beam_width={m}")
    check_key(key)
    check_reward(reward, True, method, program)
    check_select(select, ("argmax", "vote"), answer_fn)
    for name, flag in (("filter_duplicates", filter_duplicates), ("sort_completed", sort_completed)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: expected a bool, got {flag!r}")
    ahead = check_int("lookahead", ahead, 0)
    cache_key = (method, program.static_key(), reward_key(reward), n, m, filter_duplicates, sort_completed, ahead)
    prompt_len = int(program.data["prompt_length"])

    def finish_(out) -> ScalingResult:
        x, log_s, valid, counts, steps, failure = out
        if int(failure) != OK:
            raise FloatingPointError(f"{method}: the reward model returned NaN scores by step {int(steps) - 1}")
        compute = Compute.from_counts(counts, prompt_len, program.lm, reward)
        log_w = jnp.where(valid, log_s, -jnp.inf)
        scores = jnp.where(valid, jnp.exp(log_s), jnp.nan)
        diagnostics = {"num_steps": int(steps), "valid": jax.device_get(valid), "beam_width": m,
                       "subtrees": n // m if dvts_mode else None, "lookahead": ahead}
        return finish(method, x, log_w, scores=scores, answer_fn=answer_fn, select=select, compute=compute,
                      budget=n, diagnostics=diagnostics)

    return ProblemCall(method, cache_key,
                       lambda: _build(program, reward, n, m, dvts_mode, filter_duplicates, sort_completed, ahead),
                       program.data, reward.params, key, (), finish_)


def _beams(budget: int, settings):
    """:math:`B` beams of width :math:`\\min(\\text{beam\\_width}, B)` (``None`` unless it divides :math:`B`)."""
    width = min(settings.get("beam_width", 4), budget)
    return None if budget % width else ((budget,), {"beam_width": width})


@method(budget=_beams)
def beam_search(program, num_beams: int, *, beam_width: int, key: jax.Array, reward,
                answer_fn: Optional[Callable] = None, select: str = "argmax", filter_duplicates: bool = False,
                sort_completed: bool = True, lookahead: int = 0):
    r"""Beam search (Snell et al. 2024): keep the top :math:`N/M` active prefixes by reward score,
    expand each :math:`M` ways; finished beams go to a pool of completed beams (see the module doc).

    Parameters
    ----------
    program
        A :class:`~ppl.lm.LMProgram` without potential; its ``max_steps`` bounds the search.
    num_beams
        :math:`N` (the budget in rollouts); a multiple of ``beam_width``.
    beam_width
        :math:`M`, the expansions of each kept prefix.
    key
        A ``jax.random.key`` (it draws the steps; the selection is deterministic).
    reward
        The reward model (``params`` and ``log_score(params, state)``).
    answer_fn
        ``token_ids -> answer`` (default: the whole generation).
    select
        ``"argmax"`` (the best-scored final beam) or ``"vote"`` (score-weighted vote).
    filter_duplicates
        Before each selection, drop active beams whose generation equals an earlier active
        beam's (search-and-learn's ``filter_duplicates``; off by default, as there).
    sort_completed
        Keep the :math:`N` *best* completed beams (default) or, as search-and-learn's default
        ``sort_completed=False``, the :math:`N` *first* to complete (in order of completion,
        then slot).
    lookahead
        Score each candidate after :math:`k` more greedy steps, which are not kept
        (search-and-learn's ``lookahead``; none at the last step;
        :func:`ppl.lm.potentials.lookahead`). The look-ahead tokens count as generated.

    Returns
    -------
    ScalingResult
        The :math:`N` final beams sorted by score (``sort_completed``; else in order of
        completion, the beams still active at the step limit last); ``log_weights`` are their log-scores and
        ``scores`` their scores (empty slots: weight 0, score NaN). ``diagnostics``:
        ``num_steps``, ``valid`` (which slots hold a beam), ``beam_width``.
    """
    return _search("beam_search", program, num_beams, beam_width, key, reward, answer_fn, select, False,
                   filter_duplicates, sort_completed, lookahead)


@method(budget=_beams)
def dvts(program, num_beams: int, *, beam_width: int, key: jax.Array, reward,
         answer_fn: Optional[Callable] = None, select: str = "argmax", lookahead: int = 0):
    r"""Diverse verifier tree search: :math:`N/M` independent subtrees, each keeping its best of
    :math:`M` candidates and expanding it :math:`M` ways per step, until its best candidate has
    finished (see the module doc).

    Parameters
    ----------
    program, num_beams, beam_width, key, reward, answer_fn, select, lookahead
        As for :func:`beam_search`.

    Returns
    -------
    ScalingResult
        The :math:`N` candidates of the subtrees' last expansions (slots
        :math:`[gM, (g+1)M)` are subtree :math:`g`), weighted by their scores;
        ``diagnostics``: ``num_steps``, ``subtrees`` (:math:`N/M`), ``beam_width``.
    """
    return _search("dvts", program, num_beams, beam_width, key, reward, answer_fn, select, True, ahead=lookahead)
