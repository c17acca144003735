"""Accuracy summaries: raw, normalized (merged / expert × 100) and their mean, the ENMP fitness.

One formula for everyone who computes a fitness: the engine from a model's predictions, a strategy from
the per-example outcomes it was told (e.g. the full merge on part of the split), reports and benchmarks.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np


def accuracy(correct) -> float:
    """Accuracy (%) of a vector of right/wrong (0 for no examples)."""
    return 100.0 * int(np.asarray(correct).sum()) / max(1, len(correct))


def normalized(raw: Mapping, expert: Mapping) -> dict:
    return {t: (100.0 * raw[t] / expert[t] if expert[t] > 0 else 0.0) for t in raw}


def mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else float("nan")


def fitness(raw: Mapping, expert: Mapping) -> float:
    """Mean normalized accuracy; a failed candidate (any non-finite score) is −inf."""
    if any(not math.isfinite(v) for v in raw.values()):
        return float("-inf")
    return mean(normalized(raw, expert).values())


def summary(raw: Mapping[str, float], expert: Mapping[str, float]) -> dict:
    norm = normalized(raw, expert)
    return {"raw": dict(raw), "normalized": norm, "mean_raw": mean(raw.values()),
            "mean_normalized": mean(norm.values())}
