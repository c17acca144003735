"""The Python entry points, one per CLI command that runs work: `run_search` and `merge_to_dir`.

They sit on top of the engine (which scores, searches and writes the run's data) and the report layer
(tables and plots), exactly as `enmp search` and `enmp merge` use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from rich.console import Console

from .config import RunConfig
from .engine.merge_dir import merge_to_dir
from .engine.run import SearchRun
from .engine.run_report import RunReport
from .report import print_report, write_run_plots

__all__ = ["merge_to_dir", "run_search"]


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
