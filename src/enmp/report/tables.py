"""Console tables: rows expert / base merge / + ENMP / + random, columns tasks + mean, raw and normalized."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import EnmpError
from ..io import read_json

_ROWS = (("expert", "expert"), ("base", "base merge"), ("enmp", "+ ENMP"), ("random", "+ random"),
         ("greedy", "+ greedy"))


def _cell(raw: float, norm: float | None, std: float | None = None) -> str:
    text = f"{raw:.2f}" if norm is None else f"{raw:.2f} ({norm:.1f})"
    return text if std is None else f"{text} ± {std:.2f}"


def results_table(report: dict, split: str) -> Table:
    tasks = report["tasks"]
    title = (f"{split} accuracy — method {report.get('method')}, strategy {report.get('strategy')} "
             f"— cells: raw (normalized)")
    table = Table(title=title, title_justify="left")
    table.add_column("", style="bold")
    for t in tasks:
        table.add_column(t, justify="right")
    table.add_column("mean", justify="right", style="bold")
    expert = report["expert"][split]
    table.add_row("expert", *[_cell(expert[t], None) for t in tasks], _cell(sum(expert.values()) / len(tasks), 100.0))
    for key, label in _ROWS[1:]:
        block = report.get(key)
        if not block or split not in block:
            continue
        s = block[split]
        std = s.get("std") if key == "random" else None
        mean_raw = sum(s["raw"].values()) / len(tasks)
        table.add_row(label, *[_cell(s["raw"][t], s["normalized"][t]) for t in tasks],
                      _cell(mean_raw, s["mean_normalized"], std))
    return table


def print_report(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    for split in ("test", "val"):
        if split in report.get("base", {}):
            console.print(results_table(report, split))
    pruned = report.get("pruned", [])
    console.print(f"pruned {len(pruned)} module(s): " + (", ".join(f"{t}@{l}" for t, l in pruned) or "none")
                  + f" — {report.get('evaluations', 0)} evaluations in {report.get('seconds', 0):.1f} s")
    if "random" in report and "n_pruned" in report["random"]:
        console.print(f"random baseline: {report['random'].get('repeats', '?')} random masks pruning "
                      f"{report['random']['n_pruned']} module(s) each (mean ± std over repeats)")


def load_report(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "report.json"
    report = read_json(path, missing=EnmpError(
        f"{path} not found", where="enmp report",
        fix="pass a run directory written by `enmp search` (it may still be running)"),
        corrupt=EnmpError("report.json is not valid JSON", where=str(path),
                          fix="re-run `enmp search --resume` on the run directory to rewrite it"))
    if not isinstance(report, dict) or not {"tasks", "expert", "base"} <= set(report):
        raise EnmpError("report.json lacks tasks/expert/base", where=str(path),
                        fix="pass a run directory written by `enmp search`")
    return report
