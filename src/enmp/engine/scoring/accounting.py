"""What a search costs, as a property of the search itself: identical after `--resume`, with any number of
workers, and whatever the caches held.

`examples` counts the labelled examples of validation jobs that really ran (result-cache misses).
`layer_examples` counts rows × transformer layers a forward pass must run for them, given the layers this
search already computed on the same examples: layer l's output depends only on the inputs and layers 0..l,
so a candidate whose first layers hold what an earlier candidate's held reuses their outputs (the prefix
cache, counted as if it were unbounded). The model is charged in job order from the masks alone, so a
resumed run that replays its journal charges its next jobs exactly as the uninterrupted run did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np


@dataclass
class Cost:
    """Work done: what strategies are compared by (not candidates, which may be cache hits)."""

    examples: int = 0
    layer_examples: int = 0

    def add(self, examples: int, layer_examples: int) -> None:
        self.examples += examples
        self.layer_examples += layer_examples

    def to_json(self) -> dict[str, int]:
        return {"examples": self.examples, "layer_examples": self.layer_examples}


def layer_signature(target_layers: Sequence[int], target_groups: Sequence[int], keep: np.ndarray, spec: Hashable,
                    n_layers: int) -> list[tuple]:
    """What each transformer layer holds under the merge of `keep`: per adapted matrix in it, its kept tasks
    and the merge spec, or () for the base weight. Two masks whose first l signatures agree give the same
    hidden states after layer l."""
    by_group = [tuple(np.flatnonzero(col).tolist()) for col in np.asarray(keep, dtype=bool).T]
    sig: list[list] = [[] for _ in range(n_layers)]
    for layer, group in zip(target_layers, target_groups):
        kept = by_group[group]
        sig[layer].append((kept, spec) if kept else ())
    return [tuple(s) for s in sig]


class CostModel:
    """Charges validation jobs; `prefix` False (no layer stack found, or the prefix cache switched off) charges
    every layer of every row."""

    def __init__(self, target_layers: Sequence[int], target_groups: Sequence[int], n_layers: int, prefix: bool):
        self.target_layers, self.target_groups = list(target_layers), list(target_groups)
        self.n_layers, self.prefix = int(n_layers), bool(prefix)
        self._seen: set[tuple] = set()
        self.total = Cost()
        self._chains: dict[tuple, list[int]] = {}  # (mask bytes, spec) → chain hashes: a candidate's tasks share them

    def reset(self) -> None:
        """Forget every computed prefix and the total (a search starts from here)."""
        self._seen.clear()
        self.total = Cost()

    def _chain(self, keep: np.ndarray, spec: Hashable) -> list[int]:
        """Chained hashes of the layer prefixes a forward pass could store (every layer but the last): O(L) per
        mask (a collision could only miscount a cost)."""
        key = (np.asarray(keep, dtype=bool).tobytes(), spec)
        chain = self._chains.get(key)
        if chain is None:
            if len(self._chains) > 4096:  # a generation's masks are what repeats: keep the memory bounded
                self._chains.clear()
            sig = layer_signature(self.target_layers, self.target_groups, keep, spec, self.n_layers)
            chain, h = [], 0
            for layer in sig[:-1]:
                h = hash((h, layer))
                chain.append(h)
            self._chains[key] = chain
        return chain

    def _prefixes(self, view: str, task: int, keep: np.ndarray, spec: Hashable) -> list[tuple]:
        return [(view, task, i, h) for i, h in enumerate(self._chain(keep, spec))]

    def see(self, view: str, task: int, keep: np.ndarray, spec: Hashable) -> None:
        """Record that this job's layers were computed, without charging it (a resumed run's journal)."""
        if self.prefix:
            self._seen.update(self._prefixes(view, task, keep, spec))

    def charge(self, view: str, task: int, keep: np.ndarray, spec: Hashable, examples: int, rows: int) -> None:
        layers = self.n_layers
        if self.prefix:
            keys = self._prefixes(view, task, keep, spec)
            shared = next((i + 1 for i in range(len(keys) - 1, -1, -1) if keys[i] in self._seen), 0)
            layers -= shared
            self._seen.update(keys)
        self.total.add(examples, rows * layers)
