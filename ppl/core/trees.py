"""Pytree helpers for particle sets (leaves with a leading particle axis)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["broadcast", "select_rows", "concat"]


def broadcast(tree, n: int):
    """``n`` copies of one state: every leaf gets a leading axis of length ``n``."""
    return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n,) + jnp.shape(a)), tree)


def select_rows(pred, on_true, on_false):
    """Per-row select on two pytrees with a leading axis (``pred`` is ``bool[N]``)."""

    def sel(a, b):
        return jnp.where(pred.reshape(pred.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree_util.tree_map(sel, on_true, on_false)


def concat(a, b):
    """Two particle sets as one: every leaf concatenated along the leading axis."""
    return jax.tree_util.tree_map(lambda u, v: jnp.concatenate([u, v], axis=0), a, b)
