r"""A* decoding: best-first search over LM states with a bounded frontier.

Every partial solution :math:`x_{1:t}` (a prefix of :math:`t` reasoning steps) in the frontier
has the priority

.. math::

    f(x_{1:t}) = g(x_{1:t}) + h(x_{1:t}), \qquad g = \log p(x_{1:t}), \qquad h = \log r(x_{1:t}),

the LM's log-probability of the prefix (the path cost) and the reward model's log-score of it
(the heuristic: a PRM's estimate that the prefix leads to a correct answer, a learned twist, or
an exact value in tests). Each iteration pops the open prefix of highest :math:`f` and expands it
by one step, :math:`K` times (``children``: the LM samples the step, as in A*-decoding, 2025);
the children join the frontier, which keeps its best ``pool`` entries (the popped prefix's slot
and the :math:`K-1` worst go). The search stops when a *finished* solution has the highest
priority (A*'s goal test), or after ``expansions`` iterations (the budget); the answer is the
best finished solution (the best prefix if none finished). With an exact heuristic — :math:`h`
the largest :math:`\log p(c \mid x_{1:t}) + \log \varphi` over completions :math:`c` — every
prefix on the best solution's path has the largest :math:`f`, and the search expands exactly
that path.

It is a composition on the one kernel (:func:`ppl.smc.loop.build_filter`): the model is the
program with :func:`~ppl.lm.potentials.with_log_p` of the reward's potential (which keeps
:math:`g` and :math:`h` in each particle's memory), the particles are the frontier, the
selection (:func:`expand_best`) writes the popped prefix into its own and the :math:`K - 1` worst
slots, and the program's ``frozen`` rule (:func:`expanding`) holds every other slot, so a step
moves only the :math:`K` copies. The first step expands the prompt into the whole frontier.
Duplicated prefixes (equal tokens) rank last. Prefixes of equal :math:`f` are expanded together.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ppl.core.checks import check_int, check_key, check_reward, reward_key
from ppl.lm.compute import Compute, token_counter
from ppl.lm.paths import duplicates
from ppl.lm.potentials import from_reward, with_log_p
from ppl.lm.program import check_program
from ppl.scaling.aggregate import check_select
from ppl.scaling.method import method
from ppl.scaling.result import ScalingResult, finish
from ppl.smc import resampling as rs
from ppl.smc.base import OK
from ppl.smc.batch import ProblemCall
from ppl.smc.loop import build_filter

__all__ = ["a_star", "expand_best", "expanding", "priority"]


def priority(x) -> jax.Array:
    """``f = g + h [N]``: each prefix's log-probability under the LM plus its reward log-score."""
    return x.memory.log_p + x.memory.inner.last


def _closed(x, max_steps: int) -> jax.Array:
    return x.done | (x.num_steps >= max_steps)


def expanding(x, max_steps: int) -> jax.Array:
    """``bool[N]``: the prefixes expanded at the next step — the open ones of highest priority,
    if no finished solution ranks above them (the ``frozen`` rule holds every other slot)."""
    f, closed = priority(x), _closed(x, max_steps)
    best_open = jnp.max(jnp.where(closed, -jnp.inf, f))
    return ~closed & (f == best_open) & (best_open >= jnp.max(f)) & (best_open > -jnp.inf)


def expand_best(x, done, log_w, children: int, max_steps: int) -> jax.Array:
    """Ancestors ``int32[N]``: the open prefix of highest priority (duplicates ranked last) is
    copied into its own slot and ``children - 1`` others — its other copies first, then other
    duplicates, then the lowest priorities; every other slot keeps its prefix. Nothing moves
    when a finished solution ranks first."""
    n = log_w.shape[0]
    f, closed = priority(x), _closed(x, max_steps)
    dup = duplicates(x, jnp.ones((n,), bool))
    rank = jnp.where(dup, -jnp.inf, f)
    open_rank = jnp.where(closed, -jnp.inf, rank)
    b = jnp.argmax(open_rank)
    go = (open_rank[b] >= jnp.max(rank)) & (open_rank[b] > -jnp.inf)
    # The slots to overwrite, first to last: other copies of the popped prefix (which would
    # otherwise be expanded with it), other duplicates, then the lowest priorities.
    slots = jnp.arange(n, dtype=jnp.int32)
    within = jnp.arange(x.tokens.shape[1])[None] < x.length[:, None]
    same_b = (x.length == x.length[b]) & jnp.all(jnp.where(within, x.tokens == x.tokens[b][None], True), axis=1)
    tier = jnp.where(slots == b, 3, jnp.where(same_b, 0, jnp.where(dup, 1, 2)))
    victims = jnp.lexsort((rank, tier))[:children - 1]
    return jnp.where(go, slots.at[victims].set(b.astype(jnp.int32)), slots)


def _frozen(x, max_steps: int):
    return ~expanding(x, max_steps)


def _build(program, reward, pool: int, children: int, expansions: int):
    T = program.num_steps

    def run(data, rparams, key):
        pot = with_log_p(from_reward(reward, rparams, aggregate="last", weighting="ratio"))
        model = program.with_potential(pot, frozen=functools.partial(_frozen, max_steps=T), correct_proposal=False)
        model = model._replace(num_steps=expansions + 1)  # the prompt's expansion, then one per step
        res, failure, _ = build_filter(model, pool, rs.Selection(expand_best, (children, T)), 1.0,
                                       collect=token_counter)(data, key)
        x = res.particles
        return x, priority(x), _closed(x, T), res.aux, res.num_steps, failure

    return run


def _budget(B: int, settings):
    r"""At a budget of :math:`B` rollouts of :math:`T` steps: a frontier of :math:`N = \min(16, 4B)`,
    :math:`K = \min(\text{beam\_width}, B)` children, and as many expansions as fill the other
    :math:`BT - N` steps, at least :math:`T` (enough for one solution to reach the step limit, so
    a small budget may spend more than :math:`B` rollouts' tokens; the search stops earlier when
    a finished solution ranks first)."""
    T = int(settings.get("max_steps", 8))
    n, k = min(16, 4 * B), min(int(settings.get("beam_width", 4)), B)
    return (max(T, (B * T - n) // k),), {"pool": n, "children": k}


@method(budget=_budget)
def a_star(program, expansions: int, *, key: jax.Array, reward, pool: int = 16, children: int = 4,
           answer_fn: Optional[Callable] = None, select: str = "argmax"):
    r"""A* decoding (best-first search, priority log p + reward log-score); see the module doc.

    Parameters
    ----------
    program
        A :class:`~ppl.lm.LMProgram` without potential; its ``max_steps`` bounds a solution.
    expansions
        The budget: at most this many prefixes are expanded after the prompt.
    key
        A ``jax.random.key`` (it draws the steps; the search is deterministic given them).
    reward
        The heuristic (``params`` and ``log_score(params, state)``, :math:`r \in [0, 1]`).
    pool
        The frontier's size :math:`N` (the prompt is expanded into :math:`N` first steps).
    children
        :math:`K`, the steps sampled from each expanded prefix (:math:`\le N`).
    answer_fn, select
        As for the other methods: ``"argmax"`` (the best finished solution) or ``"vote"``.

    Returns
    -------
    ScalingResult
        The frontier: finished solutions weighted by their priority (open prefixes at weight 0,
        unless none finished), ``scores`` :math:`e^f = p(x_{1:t})\, r(x_{1:t})`. ``diagnostics``:
        ``expansions`` (prefixes expanded after the prompt, counting ties), ``finished`` (which
        slots hold a finished solution), ``goal``
        (whether the search stopped because a finished solution ranked first).
    """
    check_program(program, "a_star")
    e = check_int("expansions", expansions, 1)
    n = check_int("pool", pool, 1)
    k = check_int("children", children, 1)
    if k > n:
        raise ValueError(f"children: at most pool={n} steps can be sampled from a prefix, got children={k}")
    check_key(key)
    check_reward(reward, True, "a_star", program)
    check_select(select, ("argmax", "vote"), answer_fn)
    cache_key = ("a_star", program.static_key(), reward_key(reward), n, k, e)
    prompt_len = int(program.data["prompt_length"])

    def finish_(out) -> ScalingResult:
        x, f, closed, counts, steps, failure = out
        if int(failure) != OK:
            raise FloatingPointError(f"a_star: the reward model returned NaN scores by step {int(steps) - 1}")
        compute = Compute.from_counts(counts, prompt_len, program.lm, reward)
        ok = closed if bool(jnp.any(closed)) else jnp.ones_like(closed)
        stopped = int(steps) < e + 1 or not bool(jnp.any(expanding(x, program.num_steps)))
        diagnostics = {"expansions": int(steps) - 1, "finished": jax.device_get(closed), "pool": n,
                       "children": k, "goal": bool(stopped and jnp.any(closed))}
        return finish("a_star", x, jnp.where(ok, f, -jnp.inf), scores=jnp.exp(f),
                      answer_fn=answer_fn, select=select, compute=compute, budget=e, diagnostics=diagnostics)

    return ProblemCall("a_star", cache_key, lambda: _build(program, reward, n, k, e), program.data, reward.params,
                       key, (), finish_)
