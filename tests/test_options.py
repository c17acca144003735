"""Declared options: one check per setting, one clear line per bad value, defaults filled in."""

from __future__ import annotations

import pytest

from enmp.errors import EnmpError
from enmp.options import Option, Options

OPTS = Options(
    Option("rate", float, 0.5, "a fraction", low=0, high=1, low_open=True, high_open=True),
    Option("count", int, 3, "how many", low=1),
    Option("flag", bool, False, "on or off"),
    Option("rule", str, "best", "which rule", choices=("best", "union")),
    Option("start", float, 2.0, "null keeps the old start", low=0, low_open=True, nullable=True),
)


def test_defaults_fill_what_is_not_given_and_values_take_their_type():
    assert OPTS.resolve({}, "search.options") == OPTS.defaults
    got = OPTS.resolve({"rate": 1 / 4, "count": 5, "start": None, "rule": "union"}, "search.options")
    assert got == {"rate": 0.25, "count": 5, "flag": False, "rule": "union", "start": None}
    assert isinstance(OPTS.resolve({"start": 3}, "x")["start"], float)  # an integer where a number is asked


@pytest.mark.parametrize("given, message", [
    ({"rate": 0}, r"search.options.rate: rate must be a number in \(0, 1\), got 0"),
    ({"rate": 1.0}, "rate must be a number in"),
    ({"rate": float("nan")}, "rate must be a number"),
    ({"rate": True}, "rate must be a number"),
    ({"count": 0}, "count must be an integer ≥ 1, got 0"),
    ({"count": 2.5}, "count must be an integer"),
    ({"flag": "yes"}, "flag must be true or false"),
    ({"rule": "vote"}, "rule must be one of best, union, got 'vote'"),
    ({"start": -1}, "start must be a number > 0 or null"),
    ({"speed": 2}, "no option.*speed.*accepted: rate, count, flag, rule, start"),
])
def test_each_bad_value_is_one_line_naming_the_field_and_the_default(given, message):
    with pytest.raises(EnmpError, match=message) as err:
        OPTS.resolve(given, "search.options")
    assert "\n" not in err.value.line()


def test_rows_describe_every_option_for_help_and_docs():
    rows = {r["name"]: r for r in OPTS.rows()}
    assert rows["rate"]["accepts"] == "a number in (0, 1)" and rows["rate"]["default"] == "0.5"
    assert rows["start"]["accepts"] == "a number > 0 or null" and rows["flag"]["default"] == "false"


def test_with_default_and_union_keep_one_declaration_per_name():
    more = OPTS + Options(Option("rate", float, 0.9, "ignored: already declared"), Option("extra", int, 1, "new"))
    assert list(more) == [*OPTS, "extra"] and more["rate"].default == 0.5
    assert OPTS["count"].with_default(7).default == 7 and OPTS["count"].default == 3
