"""Sample-efficiency benchmark (issue 5, item 4): the faithful ENMP search (pycma, population 16 × 60
generations) vs the optional `cmawm` strategy limited to a third of the faithful run's forward work.

On the demo (TA, λ tuned on validation like the demo does), one faithful run gives the final best validation
fitness F and its forward-pass work N (candidates that really ran the model; fitness-cache hits are free).
Each efficient run gets at most ⌊N/3⌋ candidates, so its forward work is ≤ N/3 whatever its cache hit rate.
It counts as a success when its best validation fitness reaches F (within 1e-9). Writes
benchmarks/results/search_efficiency.json. Usage:
    python benchmarks/search_efficiency.py [--seeds 1,2,3] [--popsize 8] [--generations 60] [--val-samples 64]
(--synthetic: random experts on a tiny model instead of the demo cache, to check the benchmark runs)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from rich.console import Console
from rich.table import Table

from enmp import LocalEvaluator, MergeParams, SearchRun, build_workspace, tune_lambda
from enmp.demo.run import BASE_METHODS, DemoSettings, demo_config, prepare_demo
from synthetic import QUICK, synthetic_setup  # benchmarks/synthetic.py


def search(ws, cfg, expert, base, run_dir: Path, console: Console) -> dict:
    cfg.search.random_repeats = 0
    cfg.search.track_test = False
    cfg.output.save_model = cfg.output.save_adapter = False
    t = time.perf_counter()
    SearchRun(cfg, run_dir, overwrite=True, console=console, workspace=ws, expert=expert, base=base).run()
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    final = history[-1]["best_fitness"]
    first = next(h for h in history if h["best_fitness"] >= final - 1e-9)
    return {"strategy": cfg.search.strategy, "seed": cfg.search.seed, "popsize": cfg.search.popsize,
            "generations": len(history), "best_fitness": final,
            "forward_evaluations": history[-1]["forward_evaluations"], "evaluations": history[-1]["evaluations"],
            "reached_final_at_forward_evaluations": first["forward_evaluations"],
            "seconds": time.perf_counter() - t,
            "curve": [(h["forward_evaluations"], h["best_fitness"]) for h in history]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2,3", help="seeds of the efficient runs")
    ap.add_argument("--faithful-seed", type=int, default=1)
    ap.add_argument("--popsize", type=int, default=8, help="population of the efficient strategy")
    ap.add_argument("--generations", type=int, default=60, help="faithful run's generations (paper: 60)")
    ap.add_argument("--strategy", default="cmawm")
    ap.add_argument("--val-samples", type=int, default=DemoSettings.val_samples, help="per task")
    ap.add_argument("--cache", default=".cache/enmp-demo")
    ap.add_argument("--runs", default="runs/search-efficiency")
    ap.add_argument("--out", default="benchmarks/results/search_efficiency.json")
    ap.add_argument("--synthetic", action="store_true", help="tiny random model and data, not the demo cache")
    args = ap.parse_args()
    console = Console()
    if args.synthetic:  # a few examples per split: use them all
        args.val_samples, test_samples = QUICK["n_val"], QUICK["n_test"]
    else:
        test_samples = 150  # the protocol of the recorded results (the demo's test size before it shrank to fit `fast`)
    s = DemoSettings(popsize=16, generations=args.generations, val_samples=args.val_samples,
                     test_samples=test_samples)
    if args.synthetic:  # the same demo-style config, over synthetic files laid out like the demo cache
        tmp = tempfile.TemporaryDirectory(prefix="enmp-bench-search-")  # removed when main returns
        root = Path(tmp.name)
        syn, _ = synthetic_setup(root, **QUICK)
        base_dir, data_dir, experts_dir = Path(syn.base), root / "data", root
        tasks = [SimpleNamespace(name=t.name, pair=False) for t in syn.tasks]
        cfg = demo_config(base_dir, data_dir, tasks, experts_dir, s)
    else:
        cfg, tasks, _ = prepare_demo(Path(args.cache), s, console)
        base_dir, data_dir, experts_dir = Path(cfg.base), Path(args.cache) / "data", Path(args.cache) / "experts"
    ws = build_workspace(cfg)
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=1.0))
    expert = {"val": ev.compute_expert("val")}
    extra, grid = BASE_METHODS["ta"]
    lam, base_fit = tune_lambda(ws, "ta", grid, expert["val"], **extra)
    full = LocalEvaluator(ws, "ta", MergeParams(lam=lam, **extra))
    full.expert.update(expert)
    base = {"val": full.scores(np.ones(full.shape, bool), "val")}

    def make(strategy: str, popsize: int, generations: int, seed: int):
        c = demo_config(base_dir, data_dir, tasks, experts_dir,
                        DemoSettings(popsize=popsize, generations=generations, seed=seed, val_samples=args.val_samples,
                                     test_samples=test_samples),
                        "ta", {"lam": lam, **extra})
        c.search.strategy = strategy  # cmawm keeps its own σ0 default (0.3, on the 0/1 scale)
        return c

    console.rule(f"faithful ENMP: cma 16 × {args.generations} (seed {args.faithful_seed})")
    fcfg = make("cma", 16, args.generations, args.faithful_seed)
    faithful = search(ws, fcfg, expert, base, Path(args.runs) / "faithful", console)
    budget = faithful["forward_evaluations"] // 3
    gens = max(1, budget // args.popsize)
    efficient = []
    for seed in (int(x) for x in args.seeds.split(",")):
        console.rule(f"{args.strategy} {args.popsize} × {gens} (≤ {budget} forward evaluations, seed {seed})")
        ecfg = make(args.strategy, args.popsize, gens, seed)
        r = search(ws, ecfg, expert, base, Path(args.runs) / f"{args.strategy}-{seed}", console)
        r["reached_faithful"] = r["best_fitness"] >= faithful["best_fitness"] - 1e-9
        efficient.append(r)
    table = Table(title=f"search efficiency on the demo (TA λ {lam}; base val fitness {base_fit:.2f})")
    for col in ("run", "forward evals", "best val fitness", "reached final at", "reaches faithful", "seconds"):
        table.add_column(col, justify="right")
    for name, r in [("cma 16 × %d (faithful)" % args.generations, faithful),
                    *[(f"{r['strategy']} {r['popsize']} × {r['generations']} seed {r['seed']}", r) for r in efficient]]:
        table.add_row(name, str(r["forward_evaluations"]), f"{r['best_fitness']:.3f}",
                      str(r["reached_final_at_forward_evaluations"]), str(r.get("reached_faithful", "—")),
                      f"{r['seconds']:.0f}")
    console.print(table)
    wins = sum(r["reached_faithful"] for r in efficient)
    console.print(f"{args.strategy} reached the faithful run's final validation fitness in {wins}/{len(efficient)} "
                  f"seeds with ≤ 1/3 of its forward work ({budget} of {faithful['forward_evaluations']})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"lam": lam, "base_val_fitness": base_fit, "faithful": faithful,
                               "budget_forward_evaluations": budget, "efficient": efficient,
                               "successes": wins}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
