"""Replicate benchmark: does a strategy's gain hold on data it never saw, and does it say how big it is?

Each replicate r draws a fresh validation/test partition of every task's labelled pool (the demo's
150 validation + 400 test examples per task, class-balanced, seed r), tunes each method's λ on that
validation split, scores the experts (the normalizers) on it, and runs every compared strategy on the same
partition (paired) with search seed r, through the real `SearchRun`. Per run it records the test Δ over
the full merge, the gain the strategy reports (its expected gain when it gives one, else its validation Δ)
and interval, the search's cost, the pruned modules and the decision. Outcomes come from a store of
per-example results over the pools (benchmarks/pool.py), so a replicate recomputes only what is new.

Replicates 101–110 are the development range (defaults were chosen there); 1–10 are the target range,
which chose nothing. Runs append to a results file per process (`--results DIR`), so the benchmark
resumes where it stopped and splits over processes or sessions; `--report` reads every file in DIR and
prints, per strategy, the mean test Δ with a bootstrap 95 % interval stratified by method, paired
differences, the share of runs below −0.5, reported − test, and interval coverage (JSON + PNG).

Usage: python benchmarks/replicates.py --replicates 1-10 --methods ta,ties --strategies crossfit,greedy
       [--variant NAME=JSON] [--results DIR] [--runs DIR] [--threads N] [--quick]
       python benchmarks/replicates.py --report [--replicates 1-10] [--results DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np
from rich.console import Console
from rich.table import Table

from enmp.atomic_files import atomic_write_json
from enmp.config import parse_config
from enmp.demo.run import BASE_METHODS, DemoSettings, prepare_demo
from enmp import SearchRun
from enmp import build_workspace
from enmp.merging import MergeParams, method_params
from enmp.metrics import accuracy, fitness
from environment import machine  # benchmarks/environment.py
from pool import PoolComputer, PoolEvaluator, PoolStore, partition, subsample, write_pool  # benchmarks/pool.py
from replicate_plots import plot, plot_sizes  # benchmarks/replicate_plots.py
from replicate_stats import summarise

#: the six distinct searches (CoreSpace with inner TSV searches exactly what TSV does: counted once, as TSV)
METHODS = ("ta", "ties", "dare_ties", "tsv", "knots", "iso_c")
#: merges measured besides the demo's own: name → (method, parameters besides λ and the demo's), e.g. the
#: subspace methods with their shared basis built before pruning (the paper's align-then-prune, Fig. 5)
MERGES = {m: (m, {}) for m in (*METHODS, "core_space")} | {
    "knots_atp": ("knots", {"order": "align_then_prune"}),
    "core_space_atp": ("core_space", {"order": "align_then_prune"}),
}
#: compared strategies: name → search settings (the current `fast` at the size the quality benchmark used)
STRATEGIES = {
    "crossfit": {"strategy": "crossfit"},
    "greedy": {"strategy": "greedy"},
    "fast": {"strategy": "fast", "popsize": 8, "generations": 20},
    "cma16x60": {"strategy": "cma", "popsize": 16, "generations": 60},
}
N_VAL = 150  # validation examples per task in each partition (the demo's split); the rest of a pool is test


def replicate_list(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


class Bench:
    """The pools, one live model over them, and the per-example store; partitions and λ per replicate."""

    def __init__(self, cache: Path, runs: Path, console: Console, quick: bool):
        self.console, self.runs = console, runs
        if quick:  # a tiny random model and data: checks the script end to end in seconds
            from synthetic import QUICK, synthetic_setup  # benchmarks/synthetic.py

            cfg, _ = synthetic_setup(runs / "synthetic-data", **{**QUICK, "n_val": 24, "n_test": 24})
            data_dir, tasks = runs / "synthetic-data" / "data", [t.name for t in cfg.tasks]
            self.n_val, self.experts = 12, runs / "synthetic-data"
            self.base = cfg.base
        else:
            cfg, demo_tasks, _ = prepare_demo(cache, DemoSettings(), console)
            data_dir, tasks = cache / "data", [t.name for t in demo_tasks]
            self.n_val, self.experts, self.base = N_VAL, cache / "experts", cfg.base
            self.pairs = {t.name: t.pair for t in demo_tasks}
        self.quick, self.tasks = quick, tasks
        self.pool_dir = write_pool(data_dir, tasks, runs / "pool-data")
        self.cfg = self._config("ta", {"lam": 1.0}, {"strategy": "none"}, 0)
        self.ws = build_workspace(self.cfg, splits=("val",), log=console.log)
        self.store = PoolStore(runs / "pool-outcomes", [len(ex) for ex in self.ws.examples["val"]])
        self.computer = PoolComputer(self.ws, self.store)

    def _config(self, method: str, merge: dict, search: dict, replicate: int):
        pair = getattr(self, "pairs", {})
        data = {"base": str(self.base),
                "tasks": [{"name": t, "adapter": str(self.experts / t),
                           "data": {"files": {"val": str(self.pool_dir / t / "pool.csv"),
                                              "test": str(self.pool_dir / t / "pool.csv")},
                                    "text": "text", "text_pair": "text_pair" if pair.get(t) else None,
                                    "label": "label"}} for t in self.tasks],
                "merge": {"method": method, **merge},
                "search": {"random_repeats": 0, "track_test": False, "seed": replicate, **search},
                "eval": {"batch_size": 128, "max_length": 48 if not self.quick else 32, "data_seed": replicate},
                "output": {"save_model": False, "save_adapter": False}}
        return parse_config(data, where="benchmarks/replicates.py", root=Path.cwd())

    def parts(self, replicate: int, n_val: Optional[int] = None) -> dict[str, list[np.ndarray]]:
        """Replicate r's partition; a smaller `n_val` (the validation-size ablation) keeps a seeded `n_val` of
        the validation draw and the same 400-per-task test split; a larger one draws on (the round-robin draw
        extends the demo-size one: its first 150 are the same) and tests on the rest of the pool."""
        draw = max(self.n_val, n_val or 0)
        split = [partition(ex.labels, draw, replicate, t) for t, ex in enumerate(self.ws.examples["val"])]
        val = [v if n_val is None else subsample(v, n_val, replicate, t) for t, (v, _) in enumerate(split)]
        return {"val": val, "test": [t for _, t in split]}

    def scores(self, keep: np.ndarray, method: str, params: MergeParams, parts) -> dict[str, dict[str, float]]:
        return {sp: {name: accuracy(self.computer.outcomes(keep, method, params, t, parts[sp][t]))
                     for t, name in enumerate(self.ws.task_names)} for sp in ("val", "test")}

    def expert(self, parts) -> dict[str, dict[str, float]]:
        out: dict = {"val": {}, "test": {}}
        for t, name in enumerate(self.ws.task_names):
            keep = np.zeros((len(self.tasks), len(self.ws.groups)), bool)
            keep[t] = True
            for sp in out:
                out[sp][name] = accuracy(self.computer.outcomes(keep, "ta", MergeParams(lam=1.0), t, parts[sp][t]))
        return out

    def tune(self, merge: str, parts, expert) -> tuple[dict, dict]:
        """λ of the full merge chosen on this partition's validation split (the first of equals)."""
        method, more = MERGES[merge]
        extra, grid = BASE_METHODS[method]
        extra = {**extra, **more}
        full = np.ones((len(self.tasks), len(self.ws.groups)), bool)
        best = None
        for lam in grid:
            params = method_params(method, lam=lam, **extra)
            raw = self.scores(full, method, params, parts)
            if best is None or fitness(raw["val"], expert["val"]) > best[2]:
                best = ({"lam": lam, **extra}, raw, fitness(raw["val"], expert["val"]))
        return best[0], best[1]


def run_one(bench: Bench, replicate: int, merge_name: str, name: str, search: dict, parts, expert, merge, base,
            console: Console) -> dict:
    method = MERGES[merge_name][0]
    cfg = bench._config(method, merge, search, replicate)
    run_dir = bench.runs / f"r{replicate}" / merge_name / name
    resume = (run_dir / "state/journal.json").is_file() and not (run_dir / "report.json").is_file()

    def factory(_inputs, m, params):
        return PoolEvaluator(bench.computer, parts, m, params)

    t = time.perf_counter()
    report = SearchRun(cfg, run_dir, resume=resume, overwrite=not resume, console=console, evaluator_factory=factory,
                       workspace=bench.ws, expert=expert, base=base, show_progress=False).run()
    gain = report.expected_gain
    return {"replicate": replicate, "method": merge_name, "strategy": name, "search": search, "lam": merge["lam"],
            "n_val": int(sum(len(ix) for ix in parts["val"]) // len(parts["val"])),
            "test_delta": report.gain("test"), "val_delta": report.gain("val"),
            "reported": gain.value if gain is not None else report.gain("val"),
            "interval": None if gain is None else [gain.low, gain.high], "cost": report.cost,
            "pruned": len(report.pruned), "evaluations": report.evaluations, "decision": report.decision,
            "seconds": time.perf_counter() - t}


def load_results(folder: Path) -> list[dict]:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                continue
    return rows


def run(args, console: Console) -> int:
    strategies = dict(STRATEGIES)
    for v in args.variant or []:
        name, _, spec = v.partition("=")
        strategies[name] = json.loads(spec)
    names = args.strategies.split(",")
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    done = {(r["replicate"], r["method"], r["strategy"]) for r in load_results(results)}
    suffix = "" if args.val_size is None else f"@{args.val_size}"  # the ablation's runs are named apart
    out = results / f"runs-{os.getpid()}-{int(time.time())}.jsonl"
    bench = Bench(Path(args.cache), Path(args.runs), console, args.quick)
    for replicate in replicate_list(args.replicates):
        parts = bench.parts(replicate, args.val_size)
        expert = bench.expert(parts)
        for method in args.methods.split(","):
            todo = [n for n in names if (replicate, method, n + suffix) not in done]
            if not todo:
                continue
            merge, base = bench.tune(method, parts, expert)
            for name in todo:
                row = run_one(bench, replicate, method, name + suffix, strategies[name], parts, expert, merge, base,
                              console)
                with open(out, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
                console.log(f"r{replicate} {method} {name}: test Δ {row['test_delta']:+.2f}, reported "
                            f"{row['reported']:+.2f}, {row['pruned']} pruned, {row['cost']['layer_examples']:.3g} "
                            f"layer-examples, {row['seconds']:.0f} s — {row['decision'] or ''}")
    return 0


def interval(s: dict) -> str:
    """mean [low, high], or the mean alone when there were too few runs for an interval."""
    if s["low"] is None:
        return f"{s['mean']:+.2f} (too few runs for an interval)"
    return f"{s['mean']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}]"


def report(args, console: Console) -> int:
    rows = [r for r in load_results(Path(args.results)) if r["replicate"] in set(replicate_list(args.replicates))]
    methods = args.methods.split(",") if args.methods else METHODS  # other merges (e.g. knots_atp) when named
    rows = [r for r in rows if r["method"] in methods]
    if args.strategies:
        rows = [r for r in rows if r["strategy"] in args.strategies.split(",")]
    if not rows:
        raise SystemExit("no results for these replicates")
    summary = summarise(rows)
    table = Table(title=f"replicates {args.replicates}: test Δ of the searched mask over the full merge (mean normalized "
                        "accuracy points); 95 % bootstrap intervals stratified by method")
    for col in ("strategy", "runs", "test Δ [95 %]", "test Δ < −0.5", "reported − test", "90 % interval covers",
                "cost (layer-ex.)", "vs cma16x60", "pruned", "full kept"):
        table.add_column(col, justify="right")
    for name, s in summary["strategies"].items():
        td, lo, rm = s["test_delta"], s["share_below"], s["reported_minus_test"]
        cov = s.get("coverage")
        table.add_row(name, str(s["runs"]), interval(td), f"{lo['mean']:.0%}", interval(rm),
                      "—" if cov is None else f"{cov['mean']:.0%}", f"{s['layer_examples']:.3g}",
                      f"{s['cost_vs_reference']:.2f}" if "cost_vs_reference" in s else "—", f"{s['pruned']:.1f}",
                      str(s["kept_full"]))
    console.print(table)
    pairs = Table(title="paired differences of test Δ (same replicate and method)")
    for col in ("A − B", "pairs", "mean [95 %]", "SD", "verdict"):
        pairs.add_column(col, justify="right")
    for key, p in summary["paired"].items():
        if p["pairs"]:
            pairs.add_row(key, str(p["pairs"]), interval(p),
                          f"{p['sd']:.2f}" if p["sd"] is not None else "—", p["verdict"])
    console.print(pairs)
    out = Path(args.out)
    atomic_write_json(out, {"replicates": args.replicates, "summary": summary, "runs": rows, "machine": machine(),
                            "command": " ".join(["python", "benchmarks/replicates.py", *sys.argv[1:]])})
    plot(summary, rows, out.with_suffix(".png"))
    if any("@" in name for name in summary["strategies"]):
        plot_sizes(summary, out.with_name(out.stem + "-by-size.png"), N_VAL)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicates", default="1-10", help="e.g. 1-10 (target) or 101-110 (development)")
    ap.add_argument("--methods", default=None, help=f"default (runs and --report): {','.join(METHODS)}; also "
                    f"{', '.join(sorted(set(MERGES) - set(METHODS)))}")
    ap.add_argument("--strategies", default=None, help=f"names: {', '.join(STRATEGIES)} or --variant ones")
    ap.add_argument("--variant", action="append", help='NAME=JSON search settings, e.g. '
                    '\'xf3={"strategy": "crossfit", "options": {"folds": 3}}\'')
    ap.add_argument("--cache", default=".cache/enmp-demo")
    ap.add_argument("--runs", default="runs/replicates")
    ap.add_argument("--results", default="benchmarks/results/replicates")
    ap.add_argument("--report", action="store_true", help="summarise the results in --results; runs nothing")
    ap.add_argument("--out", default="benchmarks/results/replicates.json")
    ap.add_argument("--val-size", type=int, default=None, help="validation examples per task (the ablation; "
                    "default: the demo's 150; above it the test split shrinks to the rest of the pool); runs are "
                    "named STRATEGY@N")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("ENMP_THREADS", "0")) or None)
    ap.add_argument("--quick", action="store_true", help="tiny synthetic model and data (a smoke check)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    console = Console(width=200)
    if args.report:
        return report(args, console)
    args.methods = args.methods or ",".join(METHODS)
    args.strategies = args.strategies or "crossfit,greedy,fast"
    return run(args, console)


if __name__ == "__main__":
    sys.exit(main())
