"""Engine benchmark (issue 5): naive rebuild-everything path vs the engine vs a plain forward pass.

For every merge method and the same N masks (drawn like ENMP candidates: a few pruned modules each),
all in one run on the demo model and tasks:
  (a) naive  — what the reference code does per candidate: copy the base model, merge every layer from
               scratch, tokenise the data, evaluate;
  (b) engine — one live model patched in place, merge cache warm after a first generation;
  (c) forward — one plain forward pass of the model over the same (pre-tokenised) validation data.
The three are timed interleaved, mask by mask (medians), so a machine whose load drifts affects all alike.
Prints engine/forward, merge+patch/forward (the engine's own merge work per candidate), naive/engine and
rebuild/patch (the naive path's copy + merge + tokenise time over the engine's merge + patch time: the part
the engine replaces) per method, checks (a) and (b) give the
same fitness, and writes benchmarks/results/engine.json.
Usage: python benchmarks/engine.py [--masks N] [--naive N] [--methods ta,ties] [--synthetic]
(--synthetic: a tiny random model instead of the demo cache, to check the benchmark runs; times mean nothing)
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from enmp import LocalEvaluator, MergeParams, build_workspace, fitness, merge
from enmp.demo.run import prepare_demo
# internals on purpose: the naive reference loop rebuilds what the engine does (scoring, parameter lookup,
# candidate masks) without going through it
from enmp.engine.scoring.patch import parameter_name
from enmp.evaluation import accuracy, load_examples
from enmp.masking import decode
from synthetic import QUICK, synthetic_setup  # benchmarks/synthetic.py

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
    """Rebuild everything for one candidate, as the reference implementation does; returns the fitness and
    the seconds spent before the forward passes (model copy, merge, tokenisation)."""
    started = time.perf_counter()
    model = copy.deepcopy(pristine)
    names = dict(model.named_parameters())
    groups = [str(g) for g in ws.groups]
    with torch.no_grad():
        for target in ws.adapters.targets:
            kept = [int(t) for t in np.flatnonzero(keep[:, groups.index(str(target.layer))])]
            delta = merge(method, ws.adapters.deltas(target, kept), params, target.shape)
            p = names[parameter_name(names, target.weight)]
            p.copy_((p.float() + delta).to(p.dtype))
    splits = []
    for tc, task in zip(ws.cfg.tasks, ws.tasks):
        ex = load_examples(tc.data, "val", task.head.labels, max_samples=ws.cfg.eval.val_samples,
                           seed=ws.cfg.eval.data_seed, where=tc.name)
        splits.append(task.prepare(ex, ws.processors[tc.kind], batch_size=ws.cfg.eval.batch_size,
                                   max_length=ws.cfg.eval.max_length))
    rebuild_s = time.perf_counter() - started
    scores = {task.name: accuracy(task, model, split) for task, split in zip(ws.tasks, splits)}
    return fitness(scores, expert), rebuild_s


def forward_only(ws):
    for task, split in zip(ws.tasks, ws.splits["val"]):
        accuracy(task, ws.model, split)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--masks", type=int, default=24)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--naive", type=int, default=8, help="masks also timed on the naive path")
    ap.add_argument("--cache", default=".cache/enmp-demo")
    ap.add_argument("--out", default="benchmarks/results/engine.json")
    ap.add_argument("--synthetic", action="store_true", help="tiny random model and data, not the demo cache")
    args = ap.parse_args()
    console = Console()
    if args.synthetic:
        tmp = tempfile.TemporaryDirectory(prefix="enmp-bench-engine-")  # removed when main returns
        cfg, _ = synthetic_setup(Path(tmp.name), **QUICK)
    else:
        cfg, _, _ = prepare_demo(Path(args.cache), console=console)
    ws = build_workspace(cfg)
    pristine = copy.deepcopy(ws.model)
    shape = (len(ws.tasks), len(ws.groups))
    warm = candidate_masks(shape, 16, seed=1)
    masks = candidate_masks(shape, args.masks, seed=2, exclude=warm)
    rows, results = [], {}
    n_naive = min(len(masks), args.naive)  # the naive path is slow: time it on a subset, compare fitness there
    for name in args.methods.split(","):
        params = METHODS[name]
        ev = LocalEvaluator(ws, name, params)
        expert = ev.compute_expert("val")
        for keep in warm:  # generation 1 warms the merge cache
            ev.evaluate(keep)
        # Interleaved per mask (forward, engine, naive) so load drift on a shared machine hits all three
        # alike. The forward runs the live model as it stands without the prefix cache: weights do not change
        # its cost, and restoring the base first would make the next candidate re-patch every matrix.
        t_fwd, t_patch, t_eng, t_rebuild, t_naive, engine_fit, naive_fit = [], [], [], [], [], [], []
        for i, keep in enumerate(masks):
            t = time.perf_counter()
            forward_only(ws)
            t_fwd.append(time.perf_counter() - t)
            t = time.perf_counter()
            ev.patcher.apply(keep, name, params)  # the merge + patch part of the engine's work
            t_patch.append(time.perf_counter() - t)
            engine_fit.append(ev.evaluate(keep).fitness)
            t_eng.append(time.perf_counter() - t)
            if i < n_naive:
                t = time.perf_counter()
                fit, rebuild_s = naive_fitness(ws, pristine, name, params, keep, expert)
                t_naive.append(time.perf_counter() - t)
                t_rebuild.append(rebuild_s)
                naive_fit.append(fit)
        same = all(abs(a - b) <= 1e-6 for a, b in zip(naive_fit, engine_fit))
        ev.patcher.restore()
        ev.cache.clear()
        forward_s, engine_s, naive_s = (float(np.median(x)) for x in (t_fwd, t_eng, t_naive))
        patch_s, rebuild_s = float(np.median(t_patch)), float(np.median(t_rebuild))
        results[name] = {"engine_over_forward": engine_s / forward_s, "naive_over_engine": naive_s / engine_s,
                         "same_fitness": same, "peak_rss_mb": peak_rss_mb(), "engine_s": engine_s,
                         "naive_s": naive_s, "forward_s": forward_s, "engine_patch_s": patch_s,
                         "naive_rebuild_s": rebuild_s, "rebuild_over_patch": rebuild_s / max(patch_s, 1e-9),
                         "merge_patch_over_forward": patch_s / forward_s, "naive_masks": n_naive}
        rows.append(name)
        console.log(f"{name}: engine/forward {engine_s / forward_s:.3f}, "
                    f"merge+patch/forward {patch_s / forward_s:.3f}, naive/engine {naive_s / engine_s:.2f}, "
                    f"rebuild/patch {rebuild_s / max(patch_s, 1e-9):.1f}, same fitness {same}")
    table = Table(title=f"engine benchmark — {len(masks)} distinct candidate masks per method")
    for col in ("method", "engine/forward", "merge+patch/forward", "naive/engine", "rebuild/patch", "same fitness",
                "peak RSS MB"):
        table.add_column(col, justify="right")
    for name in rows:
        r = results[name]
        table.add_row(name, f"{r['engine_over_forward']:.3f}", f"{r['merge_patch_over_forward']:.3f}",
                      f"{r['naive_over_engine']:.2f}",
                      f"{r['rebuild_over_patch']:.1f}", str(r["same_fitness"]), f"{r['peak_rss_mb']:.0f}")
    console.print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "benchmarks/engine.py", *sys.argv[1:]])
    Path(args.out).write_text(json.dumps({"masks": len(masks), "methods": results, "command": command},
                                         indent=2) + "\n")
    return 0 if all(r["same_fitness"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
