"""A small least-recently-used cache of built (compiled) functions.

The engine and the methods build one compiled function per static structure of a run (program,
reward, sizes, options) and pass the data as traced arguments, so many runs share one compile.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Hashable

__all__ = ["LRUCache"]


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
