"""A small least-recently-used cache of built (compiled) functions.

The engine and the methods build one compiled function per static structure of a run (program,
reward, sizes, options) and pass the data as traced arguments, so many runs share one compile.
"""

from __future__ import annotations

import functools
import hashlib
import types
from collections import OrderedDict
from typing import Any, Callable, Hashable

import jax
import numpy as np

__all__ = ["LRUCache", "cached_jit", "structural_key"]


class LRUCache:
    """``get(key, make)``: ``make()`` built once per ``key``; the least recently used evicted."""

    def __init__(self, size: int):
        self.size = int(size)
        self._items: "OrderedDict[Hashable, Any]" = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        try:
            value = self._items.get(key)
        except TypeError:  # an unhashable key: build without caching
            return make()
        if value is None:
            value = self._items[key] = make()
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(list(self._items))


#: The compiled functions of the methods of :mod:`ppl.scaling` and of batched runs.
JIT_CACHE = LRUCache(64)


def cached_jit(key: Hashable, build: Callable[[], Callable], **jit_kwargs) -> Callable:
    """``jax.jit(build())``, built once per ``key`` (the least recently used of 64 evicted)."""
    return JIT_CACHE.get(key, lambda: jax.jit(build(), **jit_kwargs))


class _Identity:
    """A key equal only to the very same object (kept alive by the key, so ids are not reused)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _Identity) and other.obj is self.obj


_MAX_HASHED_BYTES = 1 << 24  # larger arrays (model weights) are keyed by identity


def _array_key(x) -> tuple:
    a = np.asarray(x)
    return ("array", a.shape, a.dtype.str, hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest())


def structural_key(obj, _depth: int = 0) -> Hashable:
    """A hashable key under which two objects that compile to the same code are equal.

    What compiled code depends on, and so what the key holds:

    * arrays (numpy or concrete JAX): shape, dtype and a hash of the values (arrays over 16 MiB,
      such as model weights: identity);
    * numpyro distributions and other pytrees: their type, structure and leaves' keys, so
      ``dist.Normal(0, 1)`` built twice gives one key;
    * plain functions and lambdas: the code object, the defaults, the values captured in the
      closure (by this same rule) and the module globals they read (by identity), so the same
      ``lambda`` written in a loop, or a closure over equal arrays, gives one key;
      ``functools.partial``: the function and its arguments; a bound method: its object and
      function;
    * other hashable objects: themselves (their own ``__eq__``); anything else, and traced
      values: identity.

    What recompiles, then: a function with other code, other captured values, or another
    module; a distribution with other parameter values (they are compiled in as constants) or
    another type; a model object that is neither hashable nor a pytree, unless it is the same
    object.
    """
    if _depth > 8:
        return _Identity(obj)
    d = _depth + 1
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, type)):
        return (type(obj), obj)
    if isinstance(obj, jax.core.Tracer):
        return _Identity(obj)
    if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        return _array_key(obj) if np.size(obj) * np.dtype(obj.dtype).itemsize <= _MAX_HASHED_BYTES \
            else _Identity(obj)
    if isinstance(obj, types.MethodType):
        return ("method", structural_key(obj.__self__, d), structural_key(obj.__func__, d))
    if isinstance(obj, types.FunctionType):
        closure = tuple(structural_key(c.cell_contents, d) if _has_contents(c) else ("empty",)
                        for c in (obj.__closure__ or ()))
        defaults = structural_key(obj.__defaults__, d)
        kwdefaults = structural_key(obj.__kwdefaults__, d)
        return ("function", obj.__code__, closure, defaults, kwdefaults, _Identity(obj.__globals__))
    if isinstance(obj, functools.partial):
        return ("partial", structural_key(obj.func, d), structural_key(obj.args, d),
                structural_key(obj.keywords, d))
    leaves, treedef = jax.tree_util.tree_flatten(obj)
    if not (len(leaves) == 1 and leaves[0] is obj):  # a container: tuple, dict, distribution, ...
        return ("pytree", type(obj), treedef, tuple(structural_key(leaf, d) for leaf in leaves))
    try:
        hash(obj)
    except TypeError:
        return _Identity(obj)
    return obj


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell (a name assigned after the closure was made)
        return False
    return True

