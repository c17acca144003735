"""The replicate benchmark's pictures: test Δ per strategy with the reported-vs-measured scatter, and the
validation-size ablation."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> None:
    fig.savefig(path, dpi=120, bbox_inches="tight")
    pyplot().close(fig)


def plot_sizes(summary: dict, path: Path, full_size: int) -> None:
    """The validation-size ablation: each strategy's test Δ (95 % interval) against validation examples per
    task; runs without `@N` used the full split (`full_size` examples)."""
    plt = pyplot()
    lines: dict[str, list] = {}
    for name, s in summary["strategies"].items():
        base, _, size = name.partition("@")
        lines.setdefault(base, []).append((int(size) if size else full_size, s["test_delta"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (base, points) in enumerate(sorted(lines.items())):
        points.sort(key=lambda p: p[0])
        x = np.array([n for n, _ in points], dtype=float) * (1 + 0.03 * i)  # a small offset keeps bars apart
        mean = np.array([td["mean"] for _, td in points])
        low = np.array([np.nan if td["low"] is None else td["low"] for _, td in points])
        high = np.array([np.nan if td["high"] is None else td["high"] for _, td in points])
        err = np.nan_to_num([mean - low, high - mean])  # no bar where there were too few runs
        ax.errorbar(x, mean, yerr=err, fmt="o-", capsize=4, label=base)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.minorticks_off()  # only the measured sizes are labelled
    sizes = sorted({n for pts in lines.values() for n, _ in pts})
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.set_xlabel("validation examples per task")
    ax.set_ylabel("test Δ (points), mean and 95 % interval")
    ax.set_title("how much labelled data the search needs")
    ax.legend(fontsize=8)
    save(fig, path)


def plot(summary: dict, rows: list[dict], path: Path) -> None:
    """Each strategy's test Δ with its interval, and each run's reported gain against its test Δ."""
    plt = pyplot()
    names = list(summary["strategies"])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for i, n in enumerate(names):
        td = summary["strategies"][n]["test_delta"]
        bar = None if td["low"] is None else [[td["mean"] - td["low"]], [td["high"] - td["mean"]]]
        ax.errorbar(i, td["mean"], yerr=bar, fmt="o", capsize=4)
        mine = [r for r in rows if r["strategy"] == n]
        bx.scatter([r["reported"] for r in mine], [r["test_delta"] for r in mine], s=12, label=n)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("test Δ (points), mean and 95 % interval")
    ax.set_title("gain on data the search never saw")
    lim = [min(bx.get_xlim()[0], bx.get_ylim()[0]), max(bx.get_xlim()[1], bx.get_ylim()[1])]
    bx.plot(lim, lim, color="gray", lw=0.8, ls="--")
    bx.set_xlabel("gain the strategy reported")
    bx.set_ylabel("test Δ")
    bx.set_title("reported vs measured, one point per run")
    bx.legend(fontsize=8)
    save(fig, path)
