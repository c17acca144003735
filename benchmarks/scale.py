"""Scale benchmark (issue 14): how enmp's own per-generation overhead grows with tasks T and layers L.

Tiny wide-and-deep random Llama models (hidden 32, so a forward pass is cheap and enmp's overhead shows),
T random LoRA experts (rank 4 on q/k/v/o) over L layers, the faithful `cma` search (population 8, two
generations) driven by the real `SearchRun`, plus one row at the demo's size with a MiniLM-wide model.
Every setting runs in a fresh subprocess, so its peak RSS is its own. Per generation the search's wall time
is split by wrapping the engine's own functions:

  ask/tell (pycma and the strategy) · decode (latent → mask) · merge + patch (`LivePatcher.apply`: merge
  cache and merges) · prefix (the layer-output cache's planning and storing) · journal (`Journal.append`) ·
  other (evaluator bookkeeping, journal rows) · forward (the model's forward passes, `correct`).

`overhead_over_forward` = (generation wall time − forward) / forward, measured in the same run. Memory is
reported apart: the runtime (libraries imported and warmed up on a 1-layer model), the base model, the LoRA
factors, the merge and prefix caches (their own counters), the peak RSS, and the RSS after emptying the caches
and after `malloc_trim` (what the allocator kept). Writes benchmarks/results/scale.json.
Usage: python benchmarks/scale.py [--quick] [--generations 2] [--popsize 8] [--settings 6x6,100x80p,6x6@384/64]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

# (tasks, layers, grouping, hidden, val examples per task; None: the command line's)
FULL = [(t, n, "layer", None, None) for t in (6, 30, 100) for n in (6, 32, 80)]
FULL.append((100, 80, "projection", None, None))
# the demo's size with a MiniLM-wide model and the demo's 64 validation examples: its forward, not a tiny one
DEMO_LIKE = (6, 6, "layer", 384, 64)
QUICK = [(3, 4, "layer", None, None), (6, 8, "projection", None, None)]
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
PARTS = ("ask_tell", "decode", "merge_patch", "prefix", "journal", "other")
MB = 2**20


def rss_mb() -> float:
    """Resident memory now (Linux /proc), not the peak."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_setup(root: Path, tasks: int, layers: int, grouping: str, *, hidden: int, rank: int, n_val: int,
                n_test: int, generations: int, popsize: int) -> Path:
    """Base, T adapters (written straight as PEFT files: building 100 PEFT models of 80 layers would take
    minutes), heads, data and run.yaml under `root`; returns the YAML path."""
    import yaml
    from safetensors.torch import save_file

    from enmp.adapters import BaseCheckpoint
    from enmp.tiny import make_tiny_llama, sentence, write_csv, write_head

    base = make_tiny_llama(root / "base", hidden_size=hidden, num_layers=layers, num_heads=4, num_kv_heads=2,
                           intermediate_size=4 * hidden)
    shapes = BaseCheckpoint(str(base)).shapes
    gen = torch.Generator().manual_seed(0)
    rng = random.Random(0)
    labels = ["c0", "c1", "c2"]
    entries = []
    for t in range(tasks):
        adir = root / f"task{t}"
        adir.mkdir()
        factors = {}
        for layer in range(layers):
            for proj in PROJECTIONS:
                module = f"model.layers.{layer}.self_attn.{proj}"
                d_out, d_in = shapes[module + ".weight"]
                key = f"base_model.model.{module}"
                factors[f"{key}.lora_A.weight"] = torch.randn(rank, d_in, generator=gen) / d_in**0.5
                factors[f"{key}.lora_B.weight"] = 0.02 * torch.randn(d_out, rank, generator=gen)
        save_file(factors, str(adir / "adapter_model.safetensors"))
        (adir / "adapter_config.json").write_text(json.dumps({
            "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "target_modules": list(PROJECTIONS),
            "base_model_name_or_path": str(base), "task_type": None}))
        write_head(adir, labels, hidden, generator=gen, pooling="last")
        files = {}
        for split, n in (("val", n_val), ("test", n_test)):
            path = root / "data" / f"task{t}" / f"{split}.csv"
            write_csv(path, [{"text": sentence(rng), "label": rng.choice(labels)} for _ in range(n)])
            files[split] = str(path)
        entries.append({"name": f"task{t}", "adapter": str(adir), "data": {"files": files}})
    cfg = {"base": str(base), "tasks": entries, "merge": {"method": "ta", "lam": 0.3},
           "search": {"strategy": "cma", "generations": generations, "popsize": popsize, "rho": 0.2, "seed": 1,
                      "grouping": grouping, "random_repeats": 0, "track_test": False},
           "eval": {"val_samples": n_val, "batch_size": 64, "max_length": 16, "device": "cpu", "threads": 1},
           "output": {"save_model": False, "save_adapter": False}}
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class Timers:
    """Seconds per part, counted only while `active` (the search loop), with nested parts subtracted from
    the part that encloses them (decode inside ask, forward inside the evaluator), so parts add up."""

    def __init__(self):
        self.seconds = dict.fromkeys((*PARTS, "forward"), 0.0)
        self.active = False
        self._stack: list[list] = []

    def wrap(self, owner, attr: str, part: str) -> None:
        original = getattr(owner, attr)
        timers = self

        def timed(*args, **kwargs):
            if not timers.active:
                return original(*args, **kwargs)
            frame = [part, 0.0]
            timers._stack.append(frame)
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - t
                timers._stack.pop()
                timers.seconds[part] += spent - frame[1]
                if timers._stack:
                    timers._stack[-1][1] += spent

        setattr(owner, attr, timed)


def warm_up(config: Path) -> None:
    """Load and score a 1-task, 1-layer model of the same kind through the same code, so the runtime
    baseline holds the libraries' one-time state (modeling code, tokenizers, kernels), not just imports."""
    from enmp import LocalEvaluator, MergeParams, build_workspace, load_config

    ws = build_workspace(load_config(config))
    LocalEvaluator(ws, "ta", MergeParams(lam=0.3)).compute_expert("val")


def instrument(timers: Timers) -> None:
    """Time the engine's own functions (by wrapping them: the code measured is the code that runs)."""
    from enmp.engine.scoring import local
    from enmp.engine.run.journal import Journal
    from enmp.engine.scoring.patch import LivePatcher
    from enmp.engine.scoring.prefix import PrefixCache
    from enmp.search import cma_strategy
    from enmp.search.cma_strategy import CmaStrategy

    for owner, attr, part in ((CmaStrategy, "ask", "ask_tell"), (CmaStrategy, "tell", "ask_tell"),
                              (cma_strategy, "decode", "decode"), (LivePatcher, "apply", "merge_patch"),
                              (LivePatcher, "layer_signature", "prefix"), (PrefixCache, "begin", "prefix"),
                              (PrefixCache, "commit", "prefix"), (Journal, "append", "journal"),
                              (local, "correct", "forward")):
        timers.wrap(owner, attr, part)


def tensor_mb(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / MB


def run_setting(config: Path, warm: Path) -> dict:
    """One setting, in this (fresh) process: load, search with every part timed, measure memory."""
    import ctypes
    import gc

    from enmp import SearchRun, load_config, load_inputs

    warm_up(warm)
    gc.collect()
    runtime_mb = rss_mb()  # libraries imported and warmed up, nothing of this setting loaded
    timers = Timers()
    instrument(timers)
    wall = {}
    cfg = load_config(config)
    names = [tc.name for tc in cfg.tasks]
    known = {s: dict.fromkeys(names, 50.0) for s in ("val", "test")}  # random labels: reference scores are
    t = time.perf_counter()                                            # not what is measured, so given
    inputs = load_inputs(cfg)
    wall["load"] = time.perf_counter() - t  # adapters read and validated
    run = SearchRun(cfg, config.parent / "out", overwrite=True, console=Console(quiet=True), show_progress=False,
                    workspace=inputs, expert=known, base=known)
    setup_s = time.perf_counter() - t  # and the model and data loaded
    ev, strategy = run.evaluator, run.strategy
    cache, prefix = ev.cache, ev.live.prefix
    full_val = run.prepare()
    hits, misses = cache.hits, cache.misses
    timers.active = True
    t = time.perf_counter()
    decision = run.search(full_val)
    wall["search"] = time.perf_counter() - t
    timers.active = False
    wall["hits"], wall["misses"] = cache.hits - hits, cache.misses - misses
    run.finish(decision)
    gens, n_modules, popsize = strategy.generation, strategy.n_modules, cfg.search.popsize
    per_gen = {k: v / gens for k, v in timers.seconds.items()}
    gen_s = wall["search"] / gens
    per_gen["other"] = gen_s - sum(per_gen.values())  # evaluator bookkeeping, journal rows, history line
    forward = per_gen["forward"]
    logs = sum((run.run_dir / name).stat().st_size for name in ("evaluations.jsonl", "history.jsonl"))
    lookups = wall["hits"] + wall["misses"]
    out = {"tasks": len(ev.task_names), "layers": len(ev.ws.adapters.layers), "grouping": cfg.search.grouping,
           "modules": n_modules, "hidden": int(ev.ws.base.config["hidden_size"]),
           "val_samples": cfg.eval.val_samples, "generations": gens, "popsize": popsize,
           "es": strategy.es_note or "full-covariance CMA-ES",
           "overhead_over_forward": (gen_s - forward) / forward, "generation_s": gen_s, "forward_s": forward,
           **{f"{k}_over_forward": per_gen[k] / forward for k in PARTS}, **{f"{k}_s": per_gen[k] for k in PARTS},
           "merge_cache_hit_rate": wall["hits"] / lookups if lookups else None,
           "merge_cache_lookups_per_generation": lookups / gens,
           "journal_bytes_per_generation": logs / gens,
           "journal_bytes_per_popsize_module": logs / gens / (popsize * n_modules),
           "adapters_load_s": wall["load"], "setup_s": setup_s,
           "runtime_mb": runtime_mb, "peak_rss_mb": peak_rss_mb(),
           "base_model_mb": tensor_mb([*ev.ws.model.parameters(), *ev.ws.model.buffers()]),
           "patch_copies_mb": tensor_mb(ev.patcher.base),
           "lora_factors_mb": tensor_mb([t for ad in ev.ws.adapters.adapters for f in ad.factors.values()
                                         for t in (f.A, f.B)]),
           "merge_cache_mb": cache.bytes / MB, "merge_cache_key_mb": cache.key_bytes / MB,
           "merge_cache_entries": len(cache), "prefix_cache_mb": prefix.bytes / MB if prefix is not None else 0.0,
           "rss_end_mb": rss_mb()}
    out["rss_beyond_base_mb"] = out["peak_rss_mb"] - runtime_mb - out["base_model_mb"]
    out["rss_accounted_mb"] = sum(out[k] for k in ("lora_factors_mb", "merge_cache_mb", "merge_cache_key_mb",
                                                   "prefix_cache_mb", "patch_copies_mb"))
    # where the rest lives: what emptying both caches gives back, then what the allocator was holding on to
    cache.clear()
    if prefix is not None:
        prefix.clear()
    gc.collect()
    out["rss_caches_cleared_mb"] = rss_mb()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    out["rss_trimmed_mb"] = rss_mb()
    return out


def child(setting: tuple, args, root: Path, console: Console) -> dict:
    tasks, layers, grouping, hidden, n_val = setting
    t = time.perf_counter()
    sizes = dict(hidden=hidden or args.hidden, rank=args.rank, n_val=n_val or args.val_samples, n_test=2,
                 generations=args.generations, popsize=args.popsize)
    config = write_setup(root / "run", tasks, layers, grouping, **sizes)
    warm = write_setup(root / "warm", 1, 1, "layer", **sizes)
    console.log(f"T={tasks} L={layers} {grouping}: files written in {time.perf_counter() - t:.0f} s")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, __file__, "--run-setting", str(config), str(warm)], env=env,
                          capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"setting {setting} failed:\n{proc.stderr[-3000:]}")
    notes = sorted({line.split("Warning: ")[-1] for line in proc.stderr.splitlines() if "CMA-ES" in line})
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["notes"] = notes
    return result


def parse_settings(text: str) -> list[tuple]:
    """"6x6,100x80p,6x6@384/64": TASKSxLAYERS, p = projection grouping, @HIDDEN/VAL_EXAMPLES."""
    out = []
    for item in text.split(","):
        item, _, size = item.partition("@")
        hidden, n_val = (int(x) for x in size.split("/")) if size else (None, None)
        grouping = "projection" if item.endswith("p") else "layer"
        t, n = item.rstrip("p").split("x")
        out.append((int(t), int(n), grouping, hidden, n_val))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="two tiny settings (seconds), to check the script runs")
    ap.add_argument("--settings", help="e.g. 6x6,100x80,100x80p (TASKSxLAYERS, p = projection grouping)")
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--popsize", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--val-samples", type=int, default=8, help="per task")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per setting")
    ap.add_argument("--out", default="benchmarks/results/scale.json")
    ap.add_argument("--run-setting", nargs=2, help=argparse.SUPPRESS)  # internal: one setting in a fresh process
    args = ap.parse_args()
    if args.run_setting:
        print(json.dumps(run_setting(*map(Path, args.run_setting))))
        return 0
    if args.quick:
        args.generations, args.popsize, args.val_samples = 2, 4, 4
    settings = parse_settings(args.settings) if args.settings else QUICK if args.quick else [DEMO_LIKE, *FULL]
    console = Console(width=200)
    rows = []
    for setting in settings:
        with tempfile.TemporaryDirectory(prefix="enmp-bench-scale-") as tmp:
            r = child(setting, args, Path(tmp), console)
        rows.append(r)
        console.log(f"T={r['tasks']} L={r['layers']} {r['grouping']} (D={r['modules']}): overhead/forward "
                    f"{r['overhead_over_forward']:.3f}, forward {r['forward_s']:.2f} s/gen, peak RSS "
                    f"{r['peak_rss_mb']:.0f} MB, {r['es']}")
    table = Table(title=f"scale benchmark — cma, population {args.popsize} × {args.generations} generations; parts "
                        "as fractions of the forward")
    cols = ("T", "L", "hidden", "grouping", "D", "forward s/gen", "overhead / fwd", "ask/tell", "decode",
            "merge+patch", "prefix", "journal", "other", "cache hits", "load s", "LoRA MB", "cache MB", "peak RSS MB",
            "beyond base MB", "CMA-ES")
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        hit = r["merge_cache_hit_rate"]
        table.add_row(str(r["tasks"]), str(r["layers"]), str(r["hidden"]), r["grouping"], str(r["modules"]),
                      f"{r['forward_s']:.2f}",
                      f"{r['overhead_over_forward']:.3f}", *(f"{r[f'{k}_over_forward']:.3f}" for k in PARTS),
                      "—" if hit is None else f"{hit:.0%}", f"{r['adapters_load_s']:.1f}",
                      f"{r['lora_factors_mb']:.1f}", f"{r['merge_cache_mb'] + r['prefix_cache_mb']:.1f}",
                      f"{r['peak_rss_mb']:.0f}", f"{r['rss_beyond_base_mb']:.0f}",
                      "diagonal" if "diagonal" in r["es"] else "full")
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"popsize": args.popsize, "generations": args.generations, "rank": args.rank,
                               "hidden": args.hidden, "val_samples": args.val_samples,
                               "command": " ".join(["python", "benchmarks/scale.py", *sys.argv[1:]]),
                               "settings": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
