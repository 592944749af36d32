r"""Whole generations with their step structure, for MCMC over LM states (particle Gibbs,
parallel tempering and power sampling in :mod:`ppl.scaling`).

An MCMC method over generations needs, for each step :math:`i` of a generation, where it ends in
the buffer, its log-probability under the LM and under the sampler, and (particle Gibbs) its
log-potential and the potential's memory after it (:func:`recorded`). A :class:`PathRecord` keeps them in the
particle's ``memory`` (:class:`~ppl.lm.LMState`), so they are gathered with it on resampling and
nothing is re-scored: :func:`truncate` cuts a generation back to a step boundary by changing
scalar fields only (the KV cache entries past the boundary are overwritten before they are read,
by the pending-token invariant of :class:`~ppl.lm.LMState`). :func:`duplicates` finds equal
generations in a particle set (beam search's ``filter_duplicates``, A*'s frontier).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ppl.lm.state import LMState

__all__ = ["PathRecord", "empty_record", "record_step", "recorded", "current", "truncate", "step_mask", "lite",
           "duplicates"]


class PathRecord(NamedTuple):
    """Per-step record of one generation of at most :math:`T` steps.

    Attributes
    ----------
    bounds
        ``int32[T + 1]``: the buffer length after each step (``bounds[0]`` is the prompt length;
        entries past the generation's ``num_steps`` are stale).
    log_p, log_q
        ``f32[T]``: each step's log-probability under the LM and under the sampler.
    log_g
        ``f32[T]``: each step's log-potential (untempered; 0 without a potential).
    memory
        The recorded potential's memory after each step, leaves ``[T + 1, ...]`` (index 0: the
        prompt's; index :math:`k`: after step :math:`k`), so a generation truncated to :math:`j`
        steps reads its memory at :math:`j` (``()`` without a potential).
    """

    bounds: jax.Array
    log_p: jax.Array
    log_q: jax.Array
    log_g: jax.Array
    memory: Any = ()


def empty_record(prompt_length, num_steps: int, memory=()) -> PathRecord:
    """The record of a generation with no step yet (one particle); ``memory``: the potential's
    memory at the prompt."""
    t = int(num_steps)
    zeros = jnp.zeros((t,), jnp.float32)
    history = jax.tree_util.tree_map(lambda m: jnp.broadcast_to(m, (t + 1,) + jnp.shape(m)), memory)
    return PathRecord(jnp.full((t + 1,), prompt_length, jnp.int32), zeros, zeros, zeros, history)


def record_step(prev: LMState, state: LMState, log_g=0.0, memory=()) -> PathRecord:
    """``prev.memory`` with the step ``prev -> state`` written at index ``prev.num_steps`` (its
    log-potential ``log_g``, and the potential's ``memory`` after it); unchanged for a finished
    ``prev`` (one particle)."""
    m = prev.memory
    live = ~prev.done
    i = jnp.clip(prev.num_steps, 0, m.log_p.shape[0] - 1)

    def put(a, v, at=i):
        return a.at[at].set(jnp.where(live, v, a[at]))

    return PathRecord(put(m.bounds, state.length, i + 1), put(m.log_p, state.step_log_p),
                      put(m.log_q, state.step_log_q), put(m.log_g, log_g),
                      jax.tree_util.tree_map(lambda h, v: put(h, v, i + 1), m.memory, memory))


def recorded(potential, num_steps: int, scale=1.0):
    r"""``potential`` (a :class:`~ppl.lm.potentials.MemoryPotential`, or ``None`` for none) with the
    generation's :class:`PathRecord` as the particle's memory: each step's :math:`\log p`,
    :math:`\log q`, boundary and :math:`\log G` (before ``scale``), and the potential's memory
    after each step. The log-potential is ``scale`` times the potential's (a tempered chain's
    :math:`\beta`). What MCMC over generations needs: a generation cut back to :math:`j` steps
    (:func:`truncate`) keeps its past weights and the potential's memory at :math:`j`, so its
    children are weighed as if they had grown from the cut prefix. The potential must not keep
    state that has read the particle's tokens (an incremental reward's cache: give
    ``incremental=False``)."""
    from ppl.lm.potentials import MemoryPotential

    T = int(num_steps)
    if potential is not None and potential.incremental:
        raise ValueError("recorded: the potential keeps an incremental reward's state, which a truncated "
                         "generation cannot roll back; build it with incremental=False")

    def update(prev, state):
        if potential is None:
            return jnp.zeros((), jnp.float32), record_step(prev, state)
        log_g, memory = potential.update(prev._replace(memory=current(prev)), state)
        return log_g * scale, record_step(prev, state, log_g, memory)

    def init(prompt):
        memory = () if potential is None else potential.initial(prompt)
        return empty_record(prompt.prompt_length, T, memory)

    name = "record" if potential is None else f"recorded({potential.name})"
    return MemoryPotential(update, None, name, () if potential is None else potential.horizons, init=init)


def current(state: LMState):
    """The recorded potential's memory of one generation (with a :class:`PathRecord` memory) at its
    ``num_steps``."""
    k = jnp.clip(state.num_steps, 0, state.memory.log_g.shape[0])
    return jax.tree_util.tree_map(lambda h: h[k], state.memory.memory)


def truncate(state: LMState, j) -> LMState:
    r"""One generation (with a :class:`PathRecord` memory) after its first ``j`` steps (``j``
    clipped to ``[0, K]``). Only scalar fields change; the state is ``done`` only at
    :math:`j \ge K` of a generation that finished (end of sequence or a full buffer)."""
    m = state.memory
    k = state.num_steps
    i = jnp.clip(j, 0, k)
    prev = jnp.maximum(i - 1, 0)
    return state._replace(
        length=m.bounds[i],
        step_start=jnp.where(i > 0, m.bounds[prev], state.prompt_length),
        num_steps=i.astype(state.num_steps.dtype),
        done=state.done & (i >= k),
        step_log_p=jnp.where(i > 0, m.log_p[prev], 0.0),
        step_log_q=jnp.where(i > 0, m.log_q[prev], 0.0),
    )


def step_mask(num_steps_total: int, start, stop):
    """``[B, T]`` mask of the steps ``start <= i < stop`` (``start``, ``stop`` are ``[B]``)."""
    idx = jnp.arange(int(num_steps_total))
    return (idx >= start[:, None]) & (idx < stop[:, None])


def lite(state: LMState) -> LMState:
    """A state without its KV cache (what results keep of pooled particles)."""
    return state._replace(cache=None)


def duplicates(x, active: jax.Array) -> jax.Array:
    """``bool[N]``: active beams whose generation equals an earlier active beam's (the first
    occurrence is kept, as search-and-learn's ``filter_duplicates``). Rows are compared by
    length and two 32-bit polynomial hashes of their tokens."""
    n, width = x.tokens.shape
    valid = jnp.arange(width)[None] < x.length[:, None]
    tok = x.tokens.astype(jnp.uint32) + jnp.uint32(1)

    def digest(base):
        powers = jnp.cumprod(jnp.full((width,), base, jnp.uint32))
        return jnp.sum(jnp.where(valid, tok * powers, jnp.uint32(0)), axis=1, dtype=jnp.uint32)

    h1, h2 = digest(1000003), digest(2654435761)
    same = (h1[:, None] == h1[None]) & (h2[:, None] == h2[None]) & (x.length[:, None] == x.length[None])
    earlier = jnp.arange(n)[None] < jnp.arange(n)[:, None]
    return active & jnp.any(same & earlier & active[None], axis=1)
