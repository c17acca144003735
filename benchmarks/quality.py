"""Quality benchmark: does a search's gain hold on the test split, and at what cost?

Per merge method (λ of the base merge tuned on validation first, a fair baseline) and per strategy and seed:
test Δ and validation Δ of the searched mask over the full merge (mean normalized accuracy), the search's
cost (examples and example × layer forwards, `report.cost`) and the number of pruned modules. `cma` runs at
the paper's population 16 × 60 generations unless told otherwise; the others at their own sizes. The test
split never chooses anything. Writes benchmarks/results/quality.json and quality.png.

Usage: python benchmarks/quality.py [--methods ta,ties] [--strategies cma,fast,greedy,random] [--seeds 1,2,3]
       [--cma-size 16x60] [--size 8x20] [--val-samples N] [--test-samples N] [--quick] [--dev]
       python benchmarks/quality.py --merge A.json B.json ... [--partial] --out merged.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from rich.console import Console
from rich.table import Table

from enmp import LocalEvaluator, MergeParams, SearchRun, build_workspace, tune_lambda
from enmp.atomic_files import atomic_write_json
from enmp.demo.run import BASE_METHODS, DemoSettings, demo_config, prepare_demo
from environment import files_digest, machine  # benchmarks/environment.py
from synthetic import QUICK, synthetic_setup  # benchmarks/synthetic.py

METHODS = ("ta", "ties", "dare_ties", "tsv", "knots", "core_space", "iso_c")
DETERMINISTIC = ("greedy",)  # strategies measured once per method: they have no randomness


def run_one(ws, cfg, expert, base, run_dir: Path, console: Console) -> dict:
    t = time.perf_counter()
    report = SearchRun(cfg, run_dir, overwrite=True, console=console, workspace=ws, expert=expert,
                       base=base, show_progress=False).run()
    return report, {"test_delta": report.gain("test"), "val_delta": report.gain("val"),
            "examples": report.cost["examples"], "layer_examples": report.cost["layer_examples"],
            "pruned": len(report.pruned), "evaluations": report.evaluations, "decision": report.decision,
            "seconds": time.perf_counter() - t}


def summarise(runs: list[dict]) -> dict:
    out = {}
    for key in ("test_delta", "val_delta", "examples", "layer_examples", "pruned", "seconds"):
        values = np.array([r[key] for r in runs], dtype=float)
        out[key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out


def plot(results: dict, strategies: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results)
    x = np.arange(len(methods))
    width = 0.8 / len(strategies)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(methods)), 4))
    for i, s in enumerate(strategies):
        cell = [results[m][s]["summary"]["test_delta"] if s in results[m] else {"mean": np.nan, "std": 0.0}
                for m in methods]
        mean, std = [c["mean"] for c in cell], [c["std"] for c in cell]
        ax.bar(x + (i - (len(strategies) - 1) / 2) * width, mean, width, yerr=std, capsize=2, label=s)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, methods)
    ax.set_ylabel("test Δ mean normalized accuracy (points)")
    ax.set_title("searched mask vs the full merge on the held-out test split (mean ± std over seeds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def save(out: Path, settings: dict, results: dict, strategies: list[str], complete: bool) -> dict:
    """Per strategy: its mean test Δ over the methods it was measured on (`mean_over` names them)."""
    over = {st: [m for m in results if st in results[m]] for st in strategies}
    over = {st: ms for st, ms in over.items() if ms}
    means = {st: float(np.mean([results[m][st]["summary"]["test_delta"]["mean"] for m in ms]))
             for st, ms in over.items()}
    data = {"settings": settings, "complete": complete, "mean_test_delta": means, "mean_over": over,
            "methods": results}
    atomic_write_json(out, data)
    return data


def finish(results: dict, strategies: list[str], settings: dict, out: Path, console: Console, complete: bool) -> None:
    """Print the table and the means, write the JSON and the plot."""
    table = Table(title="searched mask − full merge, mean normalized accuracy (mean ± std over seeds); cost = "
                        "example × layer forwards of the search")
    for col in ("method", "λ", "strategy", "test Δ", "val Δ", "cost", "pruned", "s"):
        table.add_column(col, justify="right")
    for m, r in results.items():
        for st in (st for st in strategies if st in r):
            sm = r[st]["summary"]
            table.add_row(m, str(r["lam"]), f"{st} {r[st]['size']}",
                          f"{sm['test_delta']['mean']:+.2f} ± {sm['test_delta']['std']:.2f}",
                          f"{sm['val_delta']['mean']:+.2f} ± {sm['val_delta']['std']:.2f}",
                          f"{sm['layer_examples']['mean']:.3g}", f"{sm['pruned']['mean']:.1f}",
                          f"{sm['seconds']['mean']:.0f}")
    console.print(table)
    saved = save(out, settings, results, strategies, complete)
    console.print("mean test Δ over methods: " + ", ".join(f"{st} {v:+.2f} ({len(saved['mean_over'][st])})"
                                                           for st, v in saved["mean_test_delta"].items()))
    both = [m for m in results if "cma" in results[m] and "fast" in results[m]]
    if both:  # on the methods measured with both
        ratio = (np.mean([results[m]["fast"]["summary"]["layer_examples"]["mean"] for m in both])
                 / np.mean([results[m]["cma"]["summary"]["layer_examples"]["mean"] for m in both]))
        console.print(f"fast's cost / cma's cost (example × layer forwards, {', '.join(both)}): {ratio:.2f}")
    plot(results, strategies, out.with_suffix(".png"))


def strategy_seeds(strategy: str, seeds: list[int]) -> list[int]:
    """The seeds a strategy runs with: all of them, or the first alone for one without randomness."""
    return seeds[:1] if strategy in DETERMINISTIC else seeds


def run_seeds(settings: dict, strategy: str, runs: list[dict]) -> list[int]:
    """Each run's seed: recorded in the run, or (files written before runs recorded it) by run order."""
    return [r.get("seed", seed) for r, seed in zip(runs, strategy_seeds(strategy, settings["seeds"]))]


def merge(paths: list[str], out: Path, console: Console, partial: bool = False) -> int:
    """One result file from several complete ones, split over processes or machines by method, strategy or
    seed: a (method, strategy) cell in several files is combined when their seeds differ and its size is the
    same (never for a strategy without randomness); a method's λ and full merge must be equal everywhere.
    `partial` also takes unfinished runs: a run saves after each method, so their methods are whole."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    keys = ("cma_size", "options", "dev", "size", "val_samples", "test_samples", "tasks")
    for p, part in zip(paths, parts):
        if not part.get("complete", True) and not partial:
            raise SystemExit(f"{p}: an unfinished run (complete: false); merge finished ones, or pass --partial "
                             "to take the methods it finished")
        if any(part["settings"].get(k) != parts[0]["settings"].get(k) for k in keys):
            raise SystemExit(f"{p}: settings differ from {paths[0]}'s; only runs of one protocol can be merged")
    results: dict = {}
    strategies: list[str] = []
    shared = ("lam", "base")  # a method's entries that every file measuring it must agree on
    for p, part in zip(paths, parts):
        strategies += [st for st in part["settings"]["strategies"] if st not in strategies]
        for method, cells in part["methods"].items():
            have = results.setdefault(method, {k: v for k, v in cells.items() if k in shared})
            if any(have.get(k) != cells.get(k) for k in shared):
                raise SystemExit(f"{p}: {method}'s λ or full-merge scores differ from another file's")
            for st, cell in ((st, c) for st, c in cells.items() if st not in shared):
                seeds = run_seeds(part["settings"], st, cell["runs"])
                runs = [{**r, "seed": seed} for r, seed in zip(cell["runs"], seeds)]
                old = have.get(st)
                if old is not None and old["size"] != cell["size"]:
                    raise SystemExit(f"{p}: {method} × {st} at {cell['size']} here, {old['size']} elsewhere; "
                                     "merge runs of one size")
                if old is not None and (st in DETERMINISTIC or {r["seed"] for r in old["runs"]} & set(seeds)):
                    raise SystemExit(f"{p}: {method} × {st} measured twice (the same seed, or a strategy without "
                                     "randomness)")
                runs = sorted(runs + (old["runs"] if old else []), key=lambda r: r["seed"])
                have[st] = {**cell, "runs": runs, "summary": summarise(runs)}
    settings = {**parts[0]["settings"], "strategies": strategies,
                "seeds": sorted({seed for part in parts for seed in part["settings"]["seeds"]}),
                **{k: [part["settings"].get(k) for part in parts] for k in ("command", "machine", "experts_sha256")}}
    finish(results, strategies, settings, out, console, complete=True)
    return 0


def dev_split(data_dir: Path, tasks: list[str], out: Path) -> Path:
    """Each task's validation file cut in two: every third row becomes `test`, the others `val`."""
    import csv

    for task in tasks:
        with open(data_dir / task / "val.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        (out / task).mkdir(parents=True, exist_ok=True)
        for split, part in (("val", [r for i, r in enumerate(rows) if i % 3]), ("test", rows[::3])):
            with open(out / task / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(part)
    return out


def size(text: str) -> tuple[int, int]:
    pop, gens = text.lower().split("x")
    return int(pop), int(gens)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--strategies", default="cma,fast,greedy,random")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--cma-size", default="16x60", help="population x generations of cma (paper: 16x60)")
    ap.add_argument("--size", default="8x20", help="population x generations bound of the other strategies")
    ap.add_argument("--val-samples", type=int, default=None, help="per task (default: all of them)")
    ap.add_argument("--test-samples", type=int, default=None, help="per task (default: all of them)")
    ap.add_argument("--options", default="{}", help='JSON search.options for the non-cma strategies, e.g. '
                    '\'{"race_z": 2}\'')
    ap.add_argument("--quick", action="store_true", help="smallest sizes: checks the script runs")
    ap.add_argument("--synthetic", action="store_true", help="tiny random model and data, not the demo cache")
    ap.add_argument("--dev", action="store_true", help="development protocol for choosing defaults: every third "
                    "validation example of each task stands in for test, the rest is the validation split; the "
                    "real test split is not read")
    ap.add_argument("--cache", default=".cache/enmp-demo")
    ap.add_argument("--runs", default="runs/quality")
    ap.add_argument("--out", default="benchmarks/results/quality.json")
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="combine result files of runs split over processes "
                    "or machines (by method, strategy or seed; a method × strategy cell in several files only "
                    "with other seeds) into --out, then print the table; runs nothing")
    ap.add_argument("--partial", action="store_true", help="with --merge: also take unfinished runs (their "
                    "finished methods)")
    args = ap.parse_args()
    console = Console()
    if args.merge:
        return merge(args.merge, Path(args.out), console, args.partial)
    strategies, seeds = args.strategies.split(","), [int(s) for s in args.seeds.split(",")]
    if args.quick:
        args.cma_size, args.size = "2x2", "4x2"
    s = DemoSettings(val_samples=args.val_samples, test_samples=args.test_samples, random_repeats=0)
    if args.synthetic:  # the same demo-style configs, over synthetic files laid out like the demo cache
        root = Path(args.runs) / "synthetic-data"  # kept beside the runs: their configs point into it
        syn, _ = synthetic_setup(root, **QUICK)
        data_dir, experts_dir = root / "data", root
        tasks = [SimpleNamespace(name=t.name, pair=False) for t in syn.tasks]
        cfg = demo_config(Path(syn.base), data_dir, tasks, experts_dir, s)
    else:
        cfg, tasks, _ = prepare_demo(Path(args.cache), s, console)
        data_dir, experts_dir = Path(args.cache) / "data", Path(args.cache) / "experts"
        if args.dev:
            data_dir = dev_split(data_dir, [t.name for t in tasks], Path(args.runs) / "dev-data")
            cfg = demo_config(Path(cfg.base), data_dir, tasks, experts_dir, s)
    ws = build_workspace(cfg.model_copy(update={"search": cfg.search.model_copy(update={"strategy": "fast"})}))
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=1.0))
    expert = {split: ev.compute_expert(split) for split in ("val", "test")}
    results: dict = {}
    settings = {"strategies": strategies, "seeds": seeds, "cma_size": args.cma_size,
                "options": json.loads(args.options), "dev": args.dev, "size": args.size,
                "val_samples": args.val_samples, "test_samples": args.test_samples, "tasks": [t.name for t in tasks],
                "command": " ".join(["python", "benchmarks/quality.py", *sys.argv[1:]]), "machine": machine(),
                "experts_sha256": files_digest(Path(experts_dir).rglob("*.safetensors"))}
    for method in args.methods.split(","):
        extra, grid = BASE_METHODS[method]
        lam, _ = tune_lambda(ws, method, grid, expert["val"], **extra)
        results[method] = {"lam": lam}
        base = None
        for strategy in strategies:
            pop, gens = size(args.cma_size if strategy == "cma" else args.size)
            runs = []
            for seed in strategy_seeds(strategy, seeds):
                mcfg = demo_config(Path(cfg.base), data_dir, tasks, experts_dir, s, method, {"lam": lam, **extra})
                options = json.loads(args.options) if strategy == "fast" else {}
                mcfg.search = mcfg.search.model_copy(update={"strategy": strategy, "seed": seed, "popsize": pop,
                                                             "generations": gens, "track_test": False,
                                                             "options": options})
                mcfg.output.save_model = mcfg.output.save_adapter = False
                report, r = run_one(ws, mcfg, expert, base, Path(args.runs) / method / f"{strategy}-{seed}", console)
                base = {split: getattr(report.base, split).raw for split in ("val", "test")}  # scored once
                results[method]["base"] = {sp: getattr(report.base, sp).mean_normalized for sp in ("val", "test")}
                runs.append({**r, "seed": seed})
                console.log(f"{method} {strategy} seed {seed}: test Δ {r['test_delta']:+.2f}, val Δ "
                            f"{r['val_delta']:+.2f}, {r['layer_examples']:.3g} layer-examples, {r['pruned']} pruned, "
                            f"{r['seconds']:.0f} s {r['decision'] or ''}")
            results[method][strategy] = {"size": f"{pop}x{gens}", "runs": runs, "summary": summarise(runs)}
        save(Path(args.out), settings, results, strategies, complete=False)  # a long run keeps what it measured
    finish(results, strategies, settings, Path(args.out), console, complete=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
