"""Accuracy summaries: raw, normalized (merged / expert × 100) and their mean (the ENMP fitness)."""

from __future__ import annotations

import math
from typing import Mapping


def normalized(raw: Mapping[str, float], expert: Mapping[str, float]) -> dict[str, float]:
    return {t: (100.0 * raw[t] / expert[t] if expert[t] > 0 else 0.0) for t in raw}


def mean(values) -> float:
    values = list(values)
    return float(sum(values) / len(values)) if values else float("nan")


def fitness(raw: Mapping[str, float], expert: Mapping[str, float]) -> float:
    """Mean normalized accuracy; a failed candidate (any non-finite score) is −inf."""
    if any(not math.isfinite(v) for v in raw.values()):
        return float("-inf")
    return mean(normalized(raw, expert).values())


def summary(raw: Mapping[str, float], expert: Mapping[str, float]) -> dict:
    norm = normalized(raw, expert)
    return {"raw": dict(raw), "normalized": norm, "mean_raw": mean(raw.values()),
            "mean_normalized": mean(norm.values())}
