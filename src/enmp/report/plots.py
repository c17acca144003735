"""PNG plots: search convergence and the task × layer map of pruned modules."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..engine.run.run_report import RunReport
from ..atomic_files import atomic_write_bytes


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _figure(size):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=size)


def plot_convergence(history: Sequence[dict], base_val: float, base_test: Optional[float], path: Path,
                     expected: Optional[dict] = None) -> None:
    """The search's best so far as a gain over the full merge, each point measured on the examples the strategy
    scored it on (`reference_fitness` is the full merge there; searches on the whole split compare with
    `base_val`), its test gain when tracked, and the expected gain on new data with its interval at the end."""
    fig, ax = _figure((7, 4))
    gens = [h["generation"] for h in history]
    gain = [np.nan if h.get("best_fitness") is None or not np.isfinite(h["best_fitness"]) else
            h["best_fitness"] - (base_val if h.get("reference_fitness") is None else h["reference_fitness"])
            for h in history]
    ax.plot(gens, gain, marker="o", ms=3, label="best so far, on the examples the search scored it on")
    test = [h.get("best_test_fitness") for h in history]
    if base_test is not None and any(v is not None for v in test):
        ax.plot(gens, [np.nan if v is None else v - base_test for v in test], marker="s", ms=3,
                label="its test gain (held out)")
    if expected is not None:
        x = (gens[-1] if gens else 0) + 1
        ax.errorbar([x], [expected["value"]], yerr=[[expected["value"] - expected["low"]],
                                                    [expected["high"] - expected["value"]]],
                    fmt="D", color="black", capsize=4, label=f"expected on new data ({expected['level']:.0%} interval)")
    ax.axhline(0.0, color="gray", ls="--", lw=1, label="full merge (no pruning)")
    ax.set_xlabel("round")
    ax.set_ylabel("gain over the full merge (mean normalized accuracy points)")
    ax.set_title("ENMP search")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=7)
    _save(fig, path)


def plot_mask(tasks: Sequence[str], layers: Sequence, keep: np.ndarray, path: Path) -> None:
    """Heat map of pruned modules (dark = pruned)."""
    keep = np.asarray(keep, dtype=bool)
    width = max(5.0, 0.45 * len(layers) + 2.5)
    fig, ax = _figure((width, max(2.5, 0.4 * len(tasks) + 1.5)))
    ax.imshow(~keep, cmap="Reds", vmin=0, vmax=1.4, aspect="auto")
    ax.set_xticks(range(len(layers)), [str(l) for l in layers], rotation=90 if len(layers) > 16 else 0,
                  fontsize=7 if len(layers) > 16 else 9)
    ax.set_yticks(range(len(tasks)), list(tasks))
    ax.set_xlabel("layer")
    ax.set_title(f"pruned modules ({int((~keep).sum())} of {keep.size})")
    for t, l in zip(*np.nonzero(~keep)):
        ax.text(l, t, "×", ha="center", va="center", color="black", fontsize=9)
    _save(fig, path)


def write_run_plots(run_dir: Path, report: RunReport, history: Sequence[dict]) -> None:
    """`plots/convergence.png` and `plots/mask.png` of a finished run."""
    plots = Path(run_dir) / "plots"
    plot_convergence(history, report.base.val.mean_normalized, report.base.test.mean_normalized,
                     plots / "convergence.png",
                     None if report.expected_gain is None else report.expected_gain.model_dump())
    keep = np.ones((len(report.tasks), len(report.layers)), dtype=bool)
    for task, layer in report.pruned:
        keep[report.tasks.index(task), report.layers.index(layer)] = False
    plot_mask(report.tasks, report.layers, keep, plots / "mask.png")
