"""Quality benchmark (issue 4): every merge method on the demo tasks — base vs + ENMP vs + random vs + greedy.

Test-split mean normalized accuracy per method, λ of each base merge tuned on validation first (fair
baseline), then ENMP on top of it. Writes benchmarks/results/quality.json and quality.png.
Usage: python benchmarks/quality.py [--methods ta,ties] [--generations N] [--popsize N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from enmp.demo.run import BASE_METHODS, DemoSettings, _tune_lambda, demo_config, prepare_demo
from enmp.engine.evaluator import Evaluator
from enmp.engine.run import SearchRun
from enmp.engine.workspace import build_workspace
from enmp.merging import MergeParams

METHODS = ("ta", "ties", "dare_ties", "tsv", "knots", "core_space", "iso_c")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    cols = [("base", "base merge"), ("enmp", "+ ENMP"), ("random", "+ random"), ("greedy", "+ greedy")]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 4))
    for i, (key, label) in enumerate(cols):
        vals = [results[n][key] for n in names]
        err = [results[n]["random_std"] for n in names] if key == "random" else None  # ± std over repeats
        ax.bar(x + (i - 1.5) * 0.2, vals, 0.2, yerr=err, label=label, capsize=2)
    ax.set_xticks(x, names)
    lo = min(min(results[n][k] for k, _ in cols) for n in names)
    ax.set_ylim(max(0, lo - 5), 101)
    ax.set_ylabel("test mean normalized accuracy (%)")
    ax.set_title("ENMP on the demo tasks (held-out test split)")
    ax.legend(fontsize=8, loc="upper left", ncol=4)  # above the bars: the y range ends at 101
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--generations", type=int, default=DemoSettings.generations)
    ap.add_argument("--popsize", type=int, default=DemoSettings.popsize)
    ap.add_argument("--cache", default=".cache/enmp-demo")
    ap.add_argument("--runs", default="runs/quality")
    ap.add_argument("--out", default="benchmarks/results/quality.json")
    args = ap.parse_args()
    console = Console()
    s = DemoSettings(popsize=args.popsize, generations=args.generations)
    cfg, tasks, _ = prepare_demo(Path(args.cache), s, console)
    ws = build_workspace(cfg)
    ev = Evaluator(ws, "ta", MergeParams(lam=1.0))
    expert = {split: ev.compute_expert(split) for split in ("val", "test")}
    results = {}
    for method in args.methods.split(","):
        extra, grid = BASE_METHODS[method]
        lam, _ = _tune_lambda(ws, method, extra, grid, expert["val"])
        mcfg = demo_config(Path(cfg.base), Path(args.cache) / "data", tasks, Path(args.cache) / "experts", s,
                           method, {"lam": lam, **extra})
        mcfg.search.greedy_baseline = True
        mcfg.output.save_model = mcfg.output.save_adapter = False
        t = time.perf_counter()
        report = SearchRun(mcfg, Path(args.runs) / method, overwrite=True, console=console, workspace=ws,
                           expert=expert).run()
        test = {k: report[k]["test"]["mean_normalized"] for k in ("base", "enmp", "random", "greedy")}
        results[method] = {**test, "random_std": report["random"]["test"]["std"], "lam": lam,
                           "pruned": len(report["pruned"]), "greedy_pruned": report["greedy"]["n_pruned"],
                           "val_base": report["base"]["val"]["mean_normalized"],
                           "val_enmp": report["enmp"]["val"]["mean_normalized"],
                           "evaluations": report["evaluations"], "seconds": time.perf_counter() - t}
        console.log(f"{method}: base {test['base']:.2f} → ENMP {test['enmp']:.2f} (random {test['random']:.2f}, "
                    f"greedy {test['greedy']:.2f})")
    table = Table(title=f"test mean normalized accuracy — population {s.popsize} × {s.generations} generations")
    for col in ("method", "λ", "base", "+ ENMP", "Δ", "+ random", "+ greedy", "pruned"):
        table.add_column(col, justify="right")
    for m, r in results.items():
        table.add_row(m, str(r["lam"]), f"{r['base']:.2f}", f"{r['enmp']:.2f}", f"{r['enmp'] - r['base']:+.2f}",
                      f"{r['random']:.2f} ± {r['random_std']:.2f}", f"{r['greedy']:.2f}", str(r["pruned"]))
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": {"popsize": s.popsize, "generations": s.generations, "rho": s.rho,
                                            "val_samples": s.val_samples, "test_samples": s.test_samples},
                               "methods": results}, indent=2) + "\n")
    plot(results, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
