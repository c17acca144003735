"""How a probe is shown: a tasks × layers heat map of single-module effects (diverging, centred on 0, the
modules that help significantly marked) and a table of the most helpful modules and the interaction check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from .plots import _figure, _save


def plot_effects(data: dict, path: Path) -> None:
    """Red: pruning the module alone raises the mean normalized accuracy (a negative module); blue: it costs.
    A dot marks a gain above 1.96 paired standard errors."""
    gain = np.array([[np.nan if v is None else v for v in row] for row in data["gain"]])
    tasks, layers = data["tasks"], data["layers"]
    bound = max(float(np.nanmax(np.abs(gain))) if np.isfinite(gain).any() else 1.0, 1e-6)
    fig, ax = _figure((max(5.0, 0.45 * len(layers) + 3.0), max(2.5, 0.45 * len(tasks) + 1.5)))
    image = ax.imshow(gain, cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    fig.colorbar(image, ax=ax, label="gain when pruned alone (points)")
    for t, l in zip(*np.nonzero(np.array(data["significant"]))):
        ax.plot(l, t, "o", color="black", ms=4)
    ax.set_xticks(range(len(layers)), [str(x) for x in layers], rotation=90 if len(layers) > 16 else 0,
                  fontsize=7 if len(layers) > 16 else 9)
    ax.set_yticks(range(len(tasks)), list(tasks))
    ax.set_xlabel("layer")
    ax.set_title("effect of pruning each module alone (● significant gain)")
    _save(fig, path)


def print_probe(data: dict, console: Console, rows: int = 10) -> None:
    table = Table(title=f"most helpful single prunings ({data['method']}; gain in mean normalized accuracy points, "
                        "paired SE)", title_justify="left")
    for col in ("task", "layer", "gain", "SE"):
        table.add_column(col, justify="right" if col in ("gain", "SE") else "left")
    for r in data["ranked"][:rows]:
        table.add_row(str(r["module"][0]), str(r["module"][1]), f"{r['gain']:+.2f}", f"{r['se']:.2f}")
    console.print(table if data["ranked"] else "no module helps when pruned alone")
    if data["joints"]:
        joint = Table(title="interaction check: pruned together vs the sum of single gains", title_justify="left")
        for col in ("modules", "sum of single gains", "measured together"):
            joint.add_column(col, justify="right")
        for j in data["joints"]:
            joint.add_row(j["name"], f"{j['sum_of_single_gains']:+.2f}", f"{j['measured_gain']:+.2f}")
        console.print(joint)
