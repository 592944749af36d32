"""A small cache of compiled functions, keyed by the static structure of a run.

Methods compile one function per (program structure, reward structure, sizes, options) and pass
the LM's weights, the prompt and the reward's parameters as traced data, so running the same
method on many prompts compiles once.
"""

from __future__ import annotations

from typing import Callable, Hashable

import jax

from ppl.core.cache import LRUCache

_CACHE = LRUCache(64)


def reward_key(reward) -> Hashable:
    """The static part of a reward model (``reward.static_key()`` if it has one, else itself)."""
    if reward is None:
        return None
    fn = getattr(reward, "static_key", None)
    return fn() if callable(fn) else reward


def cached_jit(key: Hashable, build: Callable[[], Callable], **jit_kwargs) -> Callable:
    """``jax.jit(build())``, built once per ``key`` (least recently used of 64 evicted)."""
    return _CACHE.get(key, lambda: jax.jit(build(), **jit_kwargs))
