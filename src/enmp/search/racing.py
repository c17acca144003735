"""Paired statistics for racing candidates on validation folds (pure numpy; no models).

A candidate scored on some folds has, per task, one normalized score per example (100 × correct ÷ the
expert's accuracy). Two candidates scored on the same examples are compared example by example, so the
many examples both get right or both get wrong cancel out and the difference needs far fewer examples to
tell than two separate accuracies would.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

#: fold index → per task, the normalized per-example scores on that fold
FoldScores = Mapping[int, Sequence[np.ndarray]]


def _stack(scores: FoldScores, folds: Sequence[int]) -> list[np.ndarray]:
    n_tasks = len(next(iter(scores.values())))
    return [np.concatenate([np.asarray(scores[f][t], dtype=float) for f in folds]) for t in range(n_tasks)]


def pooled_fitness(scores: FoldScores, folds: Sequence[int]) -> float:
    """Mean over tasks of the mean normalized score on `folds`: the ENMP fitness restricted to them."""
    return float(np.mean([s.mean() for s in _stack(scores, folds)]))


def paired_margin(a: FoldScores, b: FoldScores, folds: Sequence[int]) -> tuple[float, float]:
    """(mean, standard error) of fitness(a) − fitness(b) on `folds`, from per-example paired differences.

    The fitness is a mean over tasks of per-task means, so its variance is Σ_t var_t / (n_t · T²).
    """
    diffs = [x - y for x, y in zip(_stack(a, folds), _stack(b, folds))]
    mean = float(np.mean([d.mean() for d in diffs]))
    var = sum((d.var(ddof=1) / d.size) if d.size > 1 else 0.0 for d in diffs) / len(diffs) ** 2
    return mean, math.sqrt(var)
