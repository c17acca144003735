"""Statistics of the replicate benchmark: means with bootstrap intervals stratified by merge method, paired
differences between strategies, safety, honesty and coverage (see the project's statistics notes).

A run is one (replicate, method, strategy): one fresh validation/test partition searched by one strategy.
Strata are merge methods (each has its own size of gain), so a bootstrap resample draws runs with
replacement within each method and keeps every method's share fixed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

B = 4000  # bootstrap resamples: the interval ends move by well under 0.01 between seeds of the resampler
LOSS = -0.5  # a run "loses" when its test Δ is below this (the safety target's threshold)


def stratified_interval(values: dict[str, Sequence[float]], stat: Callable[[np.ndarray], float] = np.mean,
                        level: float = 0.95, seed: int = 0) -> tuple[float, Optional[float], Optional[float]]:
    """(statistic of all values, low, high): percentile bootstrap resampling within each stratum. A stratum
    of one run has no spread to resample, so the interval would be falsely narrow: then low and high are
    None (too few runs for an interval)."""
    rng = np.random.default_rng(seed)
    groups = [np.asarray(v, dtype=float) for v in values.values() if len(v)]
    if not groups:
        return float("nan"), None, None
    whole = float(stat(np.concatenate(groups)))
    if any(len(g) < 2 for g in groups):
        return whole, None, None
    draws = np.empty(B)
    for b in range(B):
        draws[b] = stat(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups]))
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return whole, float(lo), float(hi)


def by_method(runs: Iterable[dict], key: Callable[[dict], float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        out[r["method"]].append(key(r))
    return dict(out)


def strategy_summary(runs: list[dict]) -> dict:
    """One strategy's runs: mean test Δ (95 % interval), losses, honesty, coverage, cost, pruned."""
    test = by_method(runs, lambda r: r["test_delta"])
    out = {"runs": len(runs), "methods": sorted(test),
           "test_delta": dict(zip(("mean", "low", "high"), stratified_interval(test))),
           "share_below": dict(zip(("mean", "low", "high"), stratified_interval(
               by_method(runs, lambda r: float(r["test_delta"] < LOSS))))),
           "reported_minus_test": dict(zip(("mean", "low", "high"), stratified_interval(
               by_method(runs, lambda r: r["reported"] - r["test_delta"])))),
           "per_method": {m: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                              "n": len(v)} for m, v in sorted(test.items())},
           "layer_examples": float(np.mean([r["cost"]["layer_examples"] for r in runs])),
           "pruned": float(np.mean([r["pruned"] for r in runs])),
           "kept_full": int(sum(r["pruned"] == 0 for r in runs))}
    with_interval = [r for r in runs if r.get("interval") is not None]
    if with_interval:
        covered = by_method(with_interval, lambda r: float(r["interval"][0] - 1e-9 <= r["test_delta"]
                                                           <= r["interval"][1] + 1e-9))
        out["coverage"] = dict(zip(("mean", "low", "high"), stratified_interval(covered)))
    return out


def paired(runs_a: list[dict], runs_b: list[dict]) -> dict:
    """test Δ of A − B on the (replicate, method) pairs both ran: mean, 95 % interval, SD of the difference."""
    b_at = {(r["replicate"], r["method"]): r for r in runs_b}
    pairs = [(r, b_at[(r["replicate"], r["method"])]) for r in runs_a if (r["replicate"], r["method"]) in b_at]
    if not pairs:
        return {"pairs": 0}
    diffs = by_method(({"method": a["method"], "d": a["test_delta"] - b["test_delta"]} for a, b in pairs),
                      lambda r: r["d"])
    mean, lo, hi = stratified_interval(diffs)
    flat = np.concatenate([np.asarray(v) for v in diffs.values()])
    return {"pairs": len(pairs), "mean": mean, "low": lo, "high": hi,
            "sd": float(flat.std(ddof=1)) if len(flat) > 1 else None,
            "win": lo is not None and lo > 0, "loss": hi is not None and hi < 0, "verdict": verdict(lo, hi)}


def verdict(low: Optional[float], high: Optional[float]) -> str:
    """What a paired interval of A − B shows (the table's and the docs page's words)."""
    if low is None:
        return "too few runs"
    return "A better" if low > 0 else "B better" if high < 0 else "no difference shown"


def summarise(results: list[dict], reference: str = "cma16x60") -> dict:
    """Per strategy its summary, every pair of strategies at the same validation size (`NAME@N`) compared, and
    each strategy's cost relative to the reference strategy's on the methods and replicates both ran."""
    strategies = sorted({r["strategy"] for r in results})
    runs = {s: [r for r in results if r["strategy"] == s] for s in strategies}
    out = {"strategies": {s: strategy_summary(runs[s]) for s in strategies}, "paired": {}}
    size = lambda name: name.partition("@")[2]  # noqa: E731  (the ablation compares strategies at one size)
    for a in strategies:
        for b in strategies:
            if a < b and size(a) == size(b):
                out["paired"][f"{a} − {b}"] = paired(runs[a], runs[b])
    if reference in runs:
        ref = {(r["replicate"], r["method"]): r["cost"]["layer_examples"] for r in runs[reference]}
        for s in strategies:
            mine = [(r["cost"]["layer_examples"], ref[(r["replicate"], r["method"])]) for r in runs[s]
                    if (r["replicate"], r["method"]) in ref]
            if mine:
                out["strategies"][s]["cost_vs_reference"] = float(sum(a for a, _ in mine) / sum(b for _, b in mine))
    return out
