"""Typed settings declared once: an `Option` per setting (name, type, default, range or choices, help).

Merge methods declare their hyperparameters and search strategies their options with these (mergekit's
`ConfigParameterDef` is the model). Validation, config parsing, `--help` texts and the docs all read the one
declaration, so a new setting is one `Option` in the module that reads it.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional

from .errors import EnmpError

_TYPE_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "a word"}


@dataclass(frozen=True)
class Option:
    """One setting. `low`/`high` bound numbers (`*_open`: the bound itself is excluded); `choices` lists the
    accepted values (any type); `nullable` accepts None (YAML `null`), which then means what `help` says."""

    name: str
    type: type
    default: Any
    help: str
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: Optional[tuple] = None
    nullable: bool = False
    sequence: bool = False  # also accepts a list of such values (e.g. one initial mean per module)

    def with_default(self, default: Any) -> "Option":
        """The same setting with another default (a method or strategy that prefers its own value)."""
        return dataclasses.replace(self, default=default)

    # ------------------------------------------------------------------ checking
    def _bounds(self) -> str:
        lo = "" if self.low is None else f"{'>' if self.low_open else '≥'} {self.low:g}"
        hi = "" if self.high is None else f"{'<' if self.high_open else '≤'} {self.high:g}"
        if lo and hi and self.type is not int:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        return " and ".join(x for x in (lo, hi) if x)

    def describe(self) -> str:
        """What the option accepts, in words: 'a number in (0, 1)', 'one of best, union'."""
        if self.choices is not None:
            text = "one of " + ", ".join(_show(c) for c in self.choices)
        else:
            text = _TYPE_WORDS[self.type] + (f" {self._bounds()}" if self._bounds() else "")
        if self.sequence:
            text += " (or a list of them)"
        return text + (" or null" if self.nullable else "")

    def check(self, value: Any, where: str) -> Any:
        """`value` as this option's type, or one EnmpError line naming `where`, what is accepted and the default."""
        if value is None and self.nullable:
            return None
        if self.sequence and isinstance(value, (list, tuple)) and value:
            return [dataclasses.replace(self, sequence=False).check(v, where) for v in value]
        bad = EnmpError(f"{self.name} must be {self.describe()}, got {value!r}", where=where,
                        fix=f"e.g. {self.name}: {_show(self.default)} (the default)")
        if self.choices is not None:
            match = next((c for c in self.choices if type(c) is type(value) and c == value), _MISSING)
            if match is _MISSING:
                raise bad
            return match
        if self.type is bool:
            if not isinstance(value, bool):
                raise bad
            return value
        if self.type is str:
            if not isinstance(value, str) or not value:
                raise bad
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise bad
        if self.type is int:
            if not isinstance(value, numbers.Integral):
                raise bad
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise bad
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise bad
        return value


class _Missing:
    pass


_MISSING = _Missing()


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Options(Mapping[str, Option]):
    """An ordered set of declared options (a method's hyperparameters, a strategy's options)."""

    def __init__(self, *options: Option):
        self._by_name = {o.name: o for o in options}
        if len(self._by_name) != len(options):
            raise ValueError("option names must be unique")

    def __getitem__(self, name: str) -> Option:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __add__(self, other: "Options") -> "Options":
        return Options(*self.values(), *(o for o in other.values() if o.name not in self._by_name))

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: o.default for name, o in self._by_name.items()}

    def resolve(self, given: Mapping[str, Any], where: str, owner: str = "") -> dict[str, Any]:
        """Every option's value: given ones checked, the rest their defaults. An unknown key is an error that
        lists the accepted ones (`owner` names whose options they are, e.g. "search 'fast'")."""
        unknown = sorted(set(given) - set(self._by_name))
        if unknown:
            raise EnmpError(f"{owner + ' has ' if owner else ''}no option(s) {', '.join(map(str, unknown))}",
                            where=where, fix=f"accepted: {', '.join(self._by_name) or 'none'}")
        return {name: (o.check(given[name], f"{where}.{name}") if name in given else o.default)
                for name, o in self._by_name.items()}

    def rows(self) -> list[dict[str, str]]:
        """One row per option (name, default, accepted values, help): for `--help` texts and the docs."""
        return [{"name": o.name, "default": _show(o.default), "accepts": o.describe(), "help": o.help}
                for o in self._by_name.values()]
