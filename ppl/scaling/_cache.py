"""A small cache of compiled functions, keyed by the static structure of a run.

Methods compile one function per (program structure, reward structure, sizes, options) and pass
the LM's weights, the prompt and the reward's parameters as traced data, so running the same
method on many prompts compiles once.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable

import jax

_CACHE: "OrderedDict[Hashable, Any]" = OrderedDict()
_SIZE = 64


def reward_key(reward) -> Hashable:
    """The static part of a reward model (``reward.static_key()`` if it has one, else itself)."""
    if reward is None:
        return None
    fn = getattr(reward, "static_key", None)
    return fn() if callable(fn) else reward


def cached_jit(key: Hashable, build: Callable[[], Callable], **jit_kwargs) -> Callable:
    """``jax.jit(build())``, built once per ``key`` (least recently used of 64 evicted)."""
    fn = _CACHE.get(key)
    if fn is None:
        fn = jax.jit(build(), **jit_kwargs)
        _CACHE[key] = fn
        if len(_CACHE) > _SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return fn
