"""`enmp strategies` and `enmp methods` print what the declarations say (one source for help and docs)."""

from __future__ import annotations

from enmp.cli.catalog import catalog_rows
from enmp.merging import get_method
from enmp.search import available_strategies, get_strategy
from tiny_runs import cli


def test_every_strategy_and_method_is_listed_with_its_declared_options():
    strategies = {r["name"]: r for r in catalog_rows("strategies")}
    assert list(strategies) == available_strategies()
    assert [o["name"] for o in strategies["crossfit"]["options"]] == list(get_strategy("crossfit").OPTIONS)
    common = {o["name"]: o["default"] for o in strategies["crossfit"]["common"]}
    assert common["popsize"] == str(get_strategy("crossfit").DEFAULTS["popsize"])  # its own default, not cma's
    methods = {r["name"]: r for r in catalog_rows("methods")}
    assert [o["name"] for o in methods["ties"]["options"]] == list(get_method("ties").options)


def test_the_commands_print_tables_and_refuse_unknown_names():
    code, out, _ = cli("strategies", "fast")
    assert code == 0 and "race_z" in out and "confirm_folds" in out
    code, out, _ = cli("methods")
    assert code == 0 and "knots" in out and "iso_c" in out
    code, _, err = cli("methods", "mystery")
    assert code == 2 and "no method named 'mystery'" in err and "choose one of" in err
