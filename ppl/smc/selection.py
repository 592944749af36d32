r"""Deterministic selections for search (not unbiased: they pick, they do not resample).

Each maps per-particle log-scores to ancestor indices; wrapped in a
:class:`~ppl.smc.resampling.Selection` they are the kernel's selection step: :func:`expand_top`
is beam search's (keep the best :math:`k`, copy each :math:`N/k` times), :func:`subtree_best`
DVTS's (each group of slots continues its best member until that member has finished);
:func:`keep_n` keeps the best (or first) :math:`n` of a candidate set (beam search's pool of
completed beams).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["rank", "expand_top", "subtree_best", "keep_n"]

_LOWEST = float(jnp.finfo(jnp.float32).min)


def rank(log_s: jax.Array, valid: jax.Array) -> jax.Array:
    """Selection keys: the log-score of a valid entry (a score of 0 — log-score ``-inf`` — still
    ranks above every invalid entry), ``-inf`` for an invalid one."""
    return jnp.where(valid, jnp.maximum(log_s, _LOWEST), -jnp.inf)


def expand_top(log_s: jax.Array, active: jax.Array, keep: int) -> jax.Array:
    r"""Ancestors ``int32[N]`` of beam search's selection: the :math:`k = \min(\text{keep},
    \#\text{active})` best active slots (ties to the lower slot), slot :math:`j` continuing the
    :math:`\lfloor jk/N \rfloor`-th best. At least one slot must be active."""
    n = log_s.shape[0]
    _, idx = jax.lax.top_k(rank(log_s, active), keep)
    k = jnp.minimum(jnp.sum(active.astype(jnp.int32)), keep)
    return idx[(jnp.arange(n) * k) // n].astype(jnp.int32)


def subtree_best(log_s: jax.Array, done: jax.Array, stopped: jax.Array, width: int):
    """DVTS's selection: ``(ancestors int32[N], stopped bool[N])``. In each group of ``width``
    consecutive slots, every slot continues the best-scored one (ties to the lower slot), unless
    the group had stopped or its best has finished: then the group stops and keeps its slots."""
    n = log_s.shape[0]
    g = n // width
    best = jnp.argmax(rank(log_s, jnp.ones_like(done)).reshape(g, width), axis=1) + jnp.arange(g) * width
    stop = stopped.reshape(g, width)[:, 0] | done[best]
    slot = jnp.arange(n, dtype=jnp.int32)
    anc = jnp.where(jnp.repeat(stop, width), slot, jnp.repeat(best, width))
    return anc.astype(jnp.int32), jnp.repeat(stop, width)


def keep_n(scores: jax.Array, ok: jax.Array, n: int, by_score: bool = True) -> jax.Array:
    """Indices ``int32[n]`` of ``n`` entries among the ``ok`` ones: the best scored (``by_score``,
    ties to the lower index) or the first in order; the entries that are not ok come last."""
    first = jnp.where(ok, -jnp.arange(ok.shape[0], dtype=jnp.float32), -jnp.inf)
    return jax.lax.top_k(rank(scores, ok) if by_score else first, n)[1]
