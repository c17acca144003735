"""LRU cache of merged ΔW per (matrix, kept set, method, hyperparameters) under a memory budget."""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import Callable, Hashable

import torch


def key_size(key: Hashable) -> int:
    """The bytes a key's own tuples take (a kept set of T tasks is ~8·T bytes); strings and small ints
    are shared with the caller and not counted."""
    return sys.getsizeof(key) + sum(key_size(k) for k in key if type(k) is tuple) if type(key) is tuple else 0


class MergeCache:
    """Keeps the most recently used merged updates within `budget_mb` (0 disables caching).

    SVD-based merges of a kept set are expensive and candidates in a CMA-ES population share most
    layers' kept sets, so a hit turns a merge into a dictionary lookup. The budget bounds the values; the
    keys grow with the number of tasks, so their bytes are counted apart (`key_bytes`, in `stats`): ~0.9 kB
    per entry with 100 tasks, next to values of d_out × d_in floats.
    """

    def __init__(self, budget_mb: float = 1024):
        self.budget = int(budget_mb * 2**20)
        self._items: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self.bytes = 0
        self.key_bytes = 0
        self.hits = self.misses = 0

    def set_budget(self, budget_mb: float) -> None:
        """Change the budget, evicting least recently used entries until the cache fits."""
        self.budget = int(budget_mb * 2**20)
        self._evict()

    def _evict(self) -> None:
        while self.bytes > self.budget:
            key, old = self._items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()
            self.key_bytes -= key_size(key)

    def get_or_compute(self, key: Hashable, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return item
        self.misses += 1
        value = compute()
        size = value.numel() * value.element_size()
        if size <= self.budget:
            self._items[key] = value
            self.bytes += size
            self.key_bytes += key_size(key)
            self._evict()
        return value

    def clear(self) -> None:
        self._items.clear()
        self.bytes = self.key_bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> dict:
        return {"entries": len(self), "mb": self.bytes / 2**20, "key_mb": self.key_bytes / 2**20, "hits": self.hits,
                "misses": self.misses}
