"""The preallocated key/value cache: one ``(k, v)`` pair of ``[B, H_kv, T, D_h]`` buffers per layer.

Slot ``t`` of row ``b`` holds the key/value of the token at position ``t`` of that row. Nothing
records how many slots are filled: attention masks slots by *position* (a query at position
``p`` reads slots ``t <= p``), so slots past a row's current position may hold garbage (zeros,
or stale entries from a longer sequence this row was resampled from) without effect.

Every leaf has the batch axis first, so resampling particles is one gather on axis 0 of every
leaf (:func:`gather_cache`). The layout ``[B, H_kv, T, D_h]`` with the buffers donated to the
jitted step is the fastest we measured on CPU (see ``PLATFORM.md``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["LayerCache", "KVCache", "init_cache", "gather_cache", "write_cache"]


class LayerCache(NamedTuple):
    """Keys and values of one layer: ``k``, ``v`` of shape ``[B, H_kv, T, D_h]``."""

    k: jax.Array
    v: jax.Array


#: The cache of a whole model: a tuple with one :class:`LayerCache` per layer.
KVCache = tuple[LayerCache, ...]


def init_cache(num_layers: int, batch_size: int, num_kv_heads: int, max_length: int, head_dim: int,
               dtype=jnp.float32) -> KVCache:
    """Zero-filled cache of ``num_layers`` layers with buffers ``[batch_size, num_kv_heads, max_length, head_dim]``."""
    for name, v in (("batch_size", batch_size), ("max_length", max_length)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"init_cache: {name} must be a positive int, got {v!r}.")
    shape = (batch_size, num_kv_heads, max_length, head_dim)
    return tuple(LayerCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype)) for _ in range(num_layers))


def init_cache_for(config, batch_size: int, max_length: int, dtype) -> KVCache:
    """:func:`init_cache` for a model of ``config`` (an :class:`~ppl_models.lm.config.LMConfig`); a
    learned position table bounds ``max_length``."""
    if config.position == "learned" and max_length > config.max_position_embeddings:
        raise ValueError(
            f"init_cache: max_length={max_length} exceeds max_position_embeddings="
            f"{config.max_position_embeddings} of this model's learned position table."
        )
    return init_cache(config.num_layers, batch_size, config.num_kv_heads, max_length, config.head_dim, dtype)


def write_cache(layer: LayerCache, k: jax.Array, v: jax.Array, positions: jax.Array) -> LayerCache:
    """Write new keys/values ``k, v: [B, S, H_kv, D_h]`` into slots ``positions: int[B, S]``.

    Each row writes at its own positions (rows may be at different lengths). Positions outside
    ``[0, T)`` are dropped (scatter semantics), so they must be kept in range by the caller.
    """
    b = jnp.arange(k.shape[0])[:, None]
    # Advanced indices on axes 0 and 2 (separated by a slice) broadcast to [B, S] and come first:
    # the updated slots are laid out [B, S, H_kv, D_h], exactly like k and v.
    new_k = layer.k.at[b, :, positions].set(k.astype(layer.k.dtype), mode="drop")
    new_v = layer.v.at[b, :, positions].set(v.astype(layer.v.dtype), mode="drop")
    return LayerCache(new_k, new_v)


def gather_cache(cache, indices: jax.Array):
    """Select rows ``indices: int[N]`` of every leaf (resampling): ``leaf[indices]`` on axis 0."""
    return jax.tree.map(lambda x: jnp.take(x, indices, axis=0, mode="clip"), cache)
