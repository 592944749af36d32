r"""Whole generations with their step structure, for MCMC over LM states (particle Gibbs,
parallel tempering and power sampling in :mod:`ppl.scaling`).

An MCMC method over generations needs, for each step :math:`i` of a generation, where it ends in
the buffer, its log-probability under the LM and under the sampler, and (particle Gibbs) the
log-odds of the reward's score of the prefix it ends. A :class:`PathRecord` keeps them in the
particle's ``memory`` (:class:`~ppl.lm.LMState`), so they are gathered with it on resampling and
nothing is re-scored: :func:`truncate` cuts a generation back to a step boundary by changing
scalar fields only (the KV cache entries past the boundary are overwritten before they are read,
by the pending-token invariant of :class:`~ppl.lm.LMState`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl.lm.state import LMState

__all__ = ["PathRecord", "empty_record", "record_step", "truncate", "step_mask", "lite"]


class PathRecord(NamedTuple):
    """Per-step record of one generation of at most :math:`T` steps.

    Attributes
    ----------
    bounds
        ``int32[T + 1]``: the buffer length after each step (``bounds[0]`` is the prompt length;
        entries past the generation's ``num_steps`` are stale).
    log_p, log_q
        ``f32[T]``: each step's log-probability under the LM and under the sampler.
    lo
        ``f32[T]``: the clipped log-odds of the reward's score of the prefix ending at each step
        (0 where nothing scores it).
    """

    bounds: jax.Array
    log_p: jax.Array
    log_q: jax.Array
    lo: jax.Array


def empty_record(prompt_length, num_steps: int) -> PathRecord:
    """The record of a generation with no step yet (one particle)."""
    t = int(num_steps)
    zeros = jnp.zeros((t,), jnp.float32)
    return PathRecord(jnp.full((t + 1,), prompt_length, jnp.int32), zeros, zeros, zeros)


def record_step(prev: LMState, state: LMState, lo=0.0) -> PathRecord:
    """``prev.memory`` with the step ``prev -> state`` written at index ``prev.num_steps`` (with
    the prefix's log-odds ``lo``); unchanged for a finished ``prev`` (one particle)."""
    m = prev.memory
    live = ~prev.done
    i = jnp.clip(prev.num_steps, 0, m.log_p.shape[0] - 1)

    def put(a, v):
        return a.at[i].set(jnp.where(live, v, a[i]))

    return PathRecord(m.bounds.at[i + 1].set(jnp.where(live, state.length, m.bounds[i + 1])),
                      put(m.log_p, state.step_log_p), put(m.log_q, state.step_log_q), put(m.lo, lo))


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
