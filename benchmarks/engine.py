"""Engine benchmark (issue 5): naive rebuild-everything path vs the engine vs a plain forward pass.

For every merge method and the same N masks (drawn like ENMP candidates: a few pruned modules each),
all in one run on the demo model and tasks:
  (a) naive  — what the reference code does per candidate: copy the base model, merge every layer from
               scratch, tokenise the data, evaluate;
  (b) engine — one live model patched in place, merge cache warm after a first generation;
  (c) forward — the unpatched model over the same (pre-tokenised) validation data.
Prints engine/forward and naive/engine per method, checks (a) and (b) give the same fitness, and writes
benchmarks/results/engine.json. Usage: python benchmarks/engine.py [--masks N] [--methods ta,ties]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from enmp.demo.run import prepare_demo
from enmp.engine.evaluator import Evaluator
from enmp.engine.patch import parameter_name
from enmp.engine.workspace import build_workspace
from enmp.evaluation import accuracy, fitness, load_examples
from enmp.masking import decode
from enmp.merging import MergeParams, merge

METHODS = {
    "ta": MergeParams(lam=0.3),
    "ties": MergeParams(lam=1.2, top_k=80),
    "dare_ties": MergeParams(lam=1.1, top_k=80, drop_rate=0.1, seed=1),
    "tsv": MergeParams(lam=0.6),
    "knots": MergeParams(lam=1.1, top_k=90, inner="ties"),
    "core_space": MergeParams(lam=0.5, inner="tsv"),
    "iso_c": MergeParams(lam=0.3),
}
SVD_METHODS = {"tsv", "knots", "core_space", "iso_c"}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def candidate_masks(shape, n, seed, exclude=()):
    """Distinct masks like a CMA-ES population around the full merge (latent N(−1, 0.5²) per module, ρ 0.2),
    none equal to a mask in `exclude` (so no timed candidate is a fitness-cache hit)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        z = -1 + 0.5 * rng.standard_normal(shape[0] * shape[1]) + rng.uniform(0, 1.2)
        keep = decode(z, 0.2, shape)
        if not keep.all() and all((keep != m).any() for m in [*out, *exclude]):
            out.append(keep)
    return out


def naive_fitness(ws, pristine, method, params, keep, expert):
    """Rebuild everything for one candidate, as the reference implementation does."""
    model = copy.deepcopy(pristine)
    names = dict(model.named_parameters())
    groups = [str(g) for g in ws.groups]
    with torch.no_grad():
        for target in ws.adapters.targets:
            kept = [int(t) for t in np.flatnonzero(keep[:, groups.index(str(target.layer))])]
            delta = merge(method, ws.adapters.deltas(target, kept), params, target.shape)
            p = names[parameter_name(names, target.weight)]
            p.copy_((p.float() + delta).to(p.dtype))
    scores = {}
    for tc, task in zip(ws.cfg.tasks, ws.tasks):
        ex = load_examples(tc.data, "val", task.head.labels, max_samples=ws.cfg.eval.val_samples,
                           seed=ws.cfg.eval.data_seed, where=tc.name)
        split = task.prepare(ex, ws.processors[tc.kind], batch_size=ws.cfg.eval.batch_size,
                             max_length=ws.cfg.eval.max_length)
        scores[task.name] = accuracy(task, model, split)
    return fitness(scores, expert)


def forward_only(ws):
    for task, split in zip(ws.tasks, ws.splits["val"]):
        accuracy(task, ws.model, split)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--masks", type=int, default=24)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--cache", default=".cache/enmp-demo")
    ap.add_argument("--out", default="benchmarks/results/engine.json")
    args = ap.parse_args()
    console = Console()
    cfg, _, _ = prepare_demo(Path(args.cache), console=console)
    ws = build_workspace(cfg)
    pristine = copy.deepcopy(ws.model)
    shape = (len(ws.tasks), len(ws.groups))
    warm = candidate_masks(shape, 16, seed=1)
    masks = candidate_masks(shape, args.masks, seed=2, exclude=warm)
    rows, results = [], {}
    for name in args.methods.split(","):
        params = METHODS[name]
        ev = Evaluator(ws, name, params, cfg.eval.cache_mb)
        expert = ev.compute_expert("val")
        for keep in warm:  # generation 1 warms the merge cache
            ev.evaluate(keep)
        # forward baseline measured next to each engine timing: the machine's load drifts between methods
        ev.patcher.restore()  # the plain forward runs the unpatched model (no prefix plan is active here)
        t = time.perf_counter()
        for _ in range(max(4, len(masks) // 4)):
            forward_only(ws)
        forward_s = (time.perf_counter() - t) / max(4, len(masks) // 4)
        t = time.perf_counter()
        engine_fit = [ev.evaluate(keep).fitness for keep in masks]
        engine_s = (time.perf_counter() - t) / len(masks)
        n_naive = min(len(masks), 6)  # the naive path is slow; time a subset, compare fitness on it
        t = time.perf_counter()
        naive_fit = [naive_fitness(ws, pristine, name, params, keep, expert) for keep in masks[:n_naive]]
        naive_s = (time.perf_counter() - t) / n_naive
        same = all(abs(a - b) <= 1e-6 for a, b in zip(naive_fit, engine_fit))
        ev.patcher.restore()
        ev.cache.clear()
        results[name] = {"engine_over_forward": engine_s / forward_s, "naive_over_engine": naive_s / engine_s,
                         "same_fitness": same, "peak_rss_mb": peak_rss_mb(), "engine_s": engine_s,
                         "naive_s": naive_s, "forward_s": forward_s}
        rows.append(name)
        console.log(f"{name}: engine/forward {engine_s / forward_s:.3f}, naive/engine {naive_s / engine_s:.2f}, "
                    f"same fitness {same}")
    table = Table(title=f"engine benchmark — {len(masks)} distinct candidate masks per method")
    for col in ("method", "engine/forward", "naive/engine", "same fitness", "peak RSS MB"):
        table.add_column(col, justify="right")
    for name in rows:
        r = results[name]
        table.add_row(name, f"{r['engine_over_forward']:.3f}", f"{r['naive_over_engine']:.2f}",
                      str(r["same_fitness"]), f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"masks": len(masks), "methods": results},
                                         indent=2) + "\n")
    return 0 if all(r["same_fitness"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
