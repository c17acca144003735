"""Console tables: rows expert / base merge / + ENMP / + random, columns tasks + mean, raw and normalized."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..engine.run.run_report import RunReport

_ROWS = (("expert", "expert"), ("base", "base merge"), ("enmp", "+ ENMP"), ("random", "+ random"),
         ("greedy", "+ greedy"))


def _cell(raw: float, norm: float | None, std: float | None = None) -> str:
    text = f"{raw:.2f}" if norm is None else f"{raw:.2f} ({norm:.1f})"
    return text if std is None else f"{text} ± {std:.2f}"


def results_table(report: RunReport, split: str) -> Table:
    tasks = report.tasks
    title = (f"{split} accuracy — method {report.method}, strategy {report.strategy} — cells: raw (normalized)")
    table = Table(title=title, title_justify="left")
    table.add_column("", style="bold")
    for t in tasks:
        table.add_column(t, justify="right")
    table.add_column("mean", justify="right", style="bold")
    expert = report.expert[split]
    table.add_row("expert", *[_cell(expert[t], None) for t in tasks], _cell(sum(expert.values()) / len(tasks), 100.0))
    for key, label in _ROWS[1:]:
        block = getattr(report, key)
        if block is None:
            continue
        s = getattr(block, split)
        table.add_row(label, *[_cell(s.raw[t], s.normalized[t]) for t in tasks],
                      _cell(s.mean_raw, s.mean_normalized, s.std))
    return table


def print_report(report: RunReport, console: Console | None = None) -> None:
    console = console or Console()
    for split in ("test", "val"):
        console.print(results_table(report, split))
    console.print(f"pruned {len(report.pruned)} module(s): "
                  + (", ".join(f"{t}@{l}" for t, l in report.pruned) or "none")
                  + f" — {report.evaluations} evaluations in {report.seconds:.1f} s")
    if report.decision:
        console.print(f"{report.strategy}: {report.decision}")
    g = report.expected_gain
    if g is not None:
        console.print(f"expected gain on new data: {g.value:+.2f} ({g.level:.0%} interval {g.low:+.2f} to "
                      f"{g.high:+.2f}) — {g.basis}")
    elif report.strategy != "none":
        console.print("no estimate from held-out data: the validation gain was measured where the mask was chosen "
                      "and overstates the gain to expect (a crossfit search reports one)")
    if report.random is not None:
        console.print(f"random baseline: {report.random.repeats} random masks pruning "
                      f"{report.random.n_pruned} module(s) each (mean ± std over repeats)")
