"""What a strategy has learned example by example: each mask's normalized score on every validation example
it was scored on, and paired comparisons of two masks on the examples both saw.

Two masks scored on the same examples differ only where their predictions differ, so comparing them example
by example (paired) needs far fewer examples than comparing two separate accuracies. The fitness is a mean
over tasks of per-task means, so a paired difference's variance is Σ_t var_t / (n_t · T²).
Pure numpy; no models.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .outcome import Outcome, Subset


class Evidence:
    """Per mask (its keep-string) and task, a float array over the whole validation split: the example's
    normalized score where it was scored, NaN where not yet."""

    def __init__(self, sizes: Sequence[int]):
        self.sizes = tuple(int(n) for n in sizes)
        self._scores: dict[str, list[np.ndarray]] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._scores

    def keys(self) -> list[str]:
        return list(self._scores)

    def add(self, key: str, subset: Subset, outcome: Outcome) -> None:
        """Record a successful outcome of mask `key` on `subset` (a failed one teaches nothing)."""
        if outcome.failed:
            return
        rows = self._scores.setdefault(key, [np.full(n, np.nan) for n in self.sizes])
        for row, ix, values in zip(rows, subset.index, outcome.per_example()):
            row[ix] = values

    def covers(self, key: str, subset: Subset) -> bool:
        rows = self._scores.get(key)
        return rows is not None and all(not np.isnan(row[ix]).any() for row, ix in zip(rows, subset.index))

    def scores(self, key: str, subset: Subset) -> list[np.ndarray]:
        return [row[ix] for row, ix in zip(self._scores[key], subset.index)]

    def fitness(self, key: str, subset: Subset) -> float:
        """The ENMP fitness of mask `key` restricted to `subset`: mean over tasks of the mean normalized score."""
        return float(np.mean([s.mean() for s in self.scores(key, subset)]))

    def margin(self, a: str, b: str, subset: Subset) -> tuple[float, float]:
        """(mean, standard error) of fitness(a) − fitness(b) on `subset`, from per-example paired differences."""
        return paired_difference([x - y for x, y in zip(self.scores(a, subset), self.scores(b, subset))])


def paired_difference(diffs: Sequence[np.ndarray]) -> tuple[float, float]:
    """(mean, standard error) of a mean over tasks of per-task means of paired per-example differences."""
    mean = float(np.mean([d.mean() for d in diffs]))
    var = sum((d.var(ddof=1) / d.size) if d.size > 1 else 0.0 for d in diffs) / len(diffs) ** 2
    return mean, math.sqrt(var)
