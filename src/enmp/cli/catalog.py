"""`enmp strategies` and `enmp methods`: what each search strategy and merge method is, and its options, read
from their one declaration (the docs' reference pages are generated from the same rows)."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.table import Table

from ..errors import EnmpError
from ..options import Options


def catalog_rows(kind: str) -> list[dict]:
    """One row per strategy or merge method: name, one-line summary, and its declared options' rows."""
    if kind == "strategies":
        from ..search import get_strategy, available_strategies
        from ..search.base import COMMON

        out = []
        for name in available_strategies():
            cls = get_strategy(name)
            common = Options(*(o.with_default(cls.DEFAULTS.get(n, o.default)) for n, o in COMMON.items()))
            out.append({"name": name, "summary": cls.summary, "common": common.rows(), "options": cls.OPTIONS.rows()})
        return out
    from ..merging import available_methods, get_method

    return [{"name": n, "summary": get_method(n).description, "options": get_method(n).options.rows()}
            for n in available_methods()]


def _options_table(title: str, rows: list[dict]) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("option", "default", "accepts", "what it does"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["default"], r["accepts"], r["help"])
    return table


def show_catalog(kind: str, name: Optional[str], console: Console) -> None:
    rows = catalog_rows(kind)
    if name is None:
        table = Table(title=f"{kind} (details: enmp {kind} NAME)", title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("what it does", overflow="fold")
        for r in rows:
            table.add_row(r["name"], r["summary"])
        console.print(table)
        return
    row = next((r for r in rows if r["name"] == name), None)
    if row is None:
        raise EnmpError(f"no {kind[:-1] if kind == 'methods' else 'strategy'} named '{name}'", where=f"enmp {kind}",
                        fix=f"choose one of: {', '.join(r['name'] for r in rows)}")
    console.print(f"[bold]{name}[/]: {row['summary']}")
    where = "search.options" if kind == "strategies" else "merge"
    console.print(_options_table(f"options ({where}.NAME in a run config)", row["options"]) if row["options"]
                  else f"no options of its own ({where})")
    if kind == "strategies":
        console.print(_options_table("settings every strategy takes (search.NAME), with this strategy's defaults",
                                     row["common"]))
