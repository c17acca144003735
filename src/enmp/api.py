"""The public Python API: what the CLI, the demo and every benchmark use (`from enmp import ...`).

Running work, as the commands do: `run_search` (`enmp search`) and `merge_to_dir` (`enmp merge`). Scoring
merges in a script or notebook: `load_config` → `build_workspace` (model and data, loaded once) →
`LocalEvaluator(ws, method, params)` → `evaluate(mask)`; `tune_lambda` picks a base merge's λ on validation
as users of plain merges do. Writing a search: `Strategy` and the ask/tell types (`Candidate`, `Outcome`,
`Subset`, `ValidationData`, `Decision`, `Estimate`), registered by name. Everything else is internal and
may change between versions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from rich.console import Console

from .config import RunConfig, load_config, parse_config
from .engine.dry_run import dry_run
from .engine.loading.inputs import RunInputs, load_inputs
from .engine.loading.workspace import Workspace, build_workspace
from .engine.outputs.merge_dir import merge_to_dir
from .engine.run.probe import probe, probe_cost
from .engine.run.run_report import RunReport
from .engine.run.search_run import SearchRun, make_strategy
from .engine.scoring.evaluator import Evaluator
from .engine.scoring.local import LocalEvaluator
from .masking import Mask
from .merging import MergeParams, available_methods, get_method, merge, merge_kept, method_params
from .metrics import fitness, summary
from .atomic_files import atomic_dir, atomic_write_json, check_output_dir
from .report import print_report, write_run_plots
from .report.probe_view import plot_effects, print_probe
from .search import (Candidate, Decision, Estimate, Outcome, Strategy, Subset, ValidationData, available_strategies,
                     get_strategy)

__all__ = ["Candidate", "Decision", "Estimate", "Evaluator", "LocalEvaluator", "Mask", "MergeParams", "Outcome",
           "RunConfig", "RunInputs", "RunReport", "SearchRun", "Strategy", "Subset", "ValidationData", "Workspace",
           "available_methods", "available_strategies", "build_workspace", "dry_run", "fitness", "get_method", "get_strategy",
           "load_config", "load_inputs", "make_strategy", "merge", "merge_kept", "merge_to_dir", "method_params",
           "parse_config", "print_report", "probe_cost", "run_probe", "run_search", "summary", "tune_lambda", "write_run_plots"]


def run_search(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
               console: Optional[Console] = None, show_progress: bool = True, print_table: bool = True,
               **run_options) -> RunReport:
    """Search, write the run directory (with its plots) and print the results table.

    `run_options` go to `SearchRun` (e.g. a `workspace` and its `expert` scores when several searches
    share one loaded model, as the demo's do).
    """
    run = SearchRun(cfg, Path(run_dir), resume=resume, overwrite=overwrite, console=console,
                    show_progress=show_progress, **run_options)
    with run.evaluator:  # stops Ray workers, when there are any
        report = run.run(finish=lambda rep: write_run_plots(run.run_dir, rep, run.journal.history))
    if print_table:
        print_report(report, Console())  # the table goes to stdout, progress and logs to stderr
    return report


def tune_lambda(ws: Workspace, method: str, grid: Sequence[float], expert_val: dict[str, float],
                **params) -> tuple[float, float]:
    """(λ, validation fitness) of the full merge of `method` that scores best on validation over `grid` (the
    first of equals), the other hyperparameters `params` fixed: a fair base merge to compare a search with."""
    full = np.ones((len(ws.tasks), len(ws.groups)), bool)
    best = None
    for lam in grid:
        ev = LocalEvaluator(ws, method, method_params(method, lam=lam, **params))
        ev.expert["val"] = expert_val
        fit = fitness(ev.scores(full, "val"), expert_val)
        if best is None or fit > best[1]:
            best = (lam, fit)
    return best


def run_probe(cfg: RunConfig, out: str | Path, *, top: int = 5, mask: Optional[Mask] = None, overwrite: bool = False,
              console: Optional[Console] = None, print_table: bool = True) -> dict:
    """`enmp probe`: every module pruned alone (effect and paired SE, overall and per task) and the interaction
    check; writes `out`/probe.json and probe.png (atomically) and returns the data."""
    out = Path(out)
    check_output_dir(out, overwrite)  # before any work: a run never ends in a refused write
    data = probe(cfg, top=top, mask=mask, console=console)
    with atomic_dir(out, overwrite=True) as tmp:
        atomic_write_json(tmp / "probe.json", data)
        plot_effects(data, tmp / "probe.png")
    if print_table:
        print_probe(data, Console())
    return data
