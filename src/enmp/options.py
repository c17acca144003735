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
from typing import Any, Callable, Iterator, Mapping, Optional

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
            text = "one of " + ", ".join(show_value(c) for c in self.choices)
        elif self.type is float and self.low is None and self.high is None:
            text = "a finite number"  # NaN and ±inf are refused, and "a number" alone would not say so
        else:
            text = _TYPE_WORDS[self.type] + (f" {self._bounds()}" if self._bounds() else "")
        if self.sequence:
            text += " (or a list of them)"
        return text + (" or null" if self.nullable else "")

    def check(self, value: Any, where: str) -> Any:
        """`value` as this option's type, or one EnmpError line naming `where`, what is accepted and the default."""
        checked = self._checked(value)
        if checked is _MISSING:  # the message is built only when needed: merges check values on every call
            raise EnmpError(f"{self.name} must be {self.describe()}, got {value!r}", where=where,
                            fix=f"e.g. {self.name}: {show_value(self.default)} (the default)")
        return checked

    def _checked(self, value: Any) -> Any:
        """`value` as this option's type, or _MISSING when it is not accepted."""
        if value is None and self.nullable:
            return None
        if self.sequence and isinstance(value, (list, tuple)) and value:
            items = [dataclasses.replace(self, sequence=False)._checked(v) for v in value]
            return _MISSING if any(v is _MISSING for v in items) else items
        if self.choices is not None:
            return next((c for c in self.choices if type(c) is type(value) and c == value), _MISSING)
        if self.type is bool:
            return value if isinstance(value, bool) else _MISSING
        if self.type is str:
            return value if isinstance(value, str) and value else _MISSING
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return _MISSING
        if self.type is int:
            if not isinstance(value, numbers.Integral):
                return _MISSING
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                return _MISSING
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return _MISSING
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            return _MISSING
        return value


class _Missing:
    pass


_MISSING = _Missing()


def show_value(value: Any) -> str:
    """A value as a user writes it in YAML or on a command line: null, true/false, 0.5."""
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

    def resolve(self, given: Mapping[str, Any], where: str, owner: str = "",
                where_of: Optional[Callable[[str], str]] = None) -> dict[str, Any]:
        """Every option's value: given ones checked, the rest their defaults. An unknown key is an error that
        lists the accepted ones (`owner` names whose options they are, e.g. "search 'fast'"). A bad value's
        error names `where.name`, or `where_of(name)` when a setting is reached in several ways (a merge
        parameter is both the CLI flag `--top-k` and the config key `merge.top_k`)."""
        unknown = sorted(set(given) - set(self._by_name))
        if unknown:
            raise EnmpError(f"{owner + ' has ' if owner else ''}no option(s) {', '.join(map(str, unknown))}",
                            where=where, fix=f"accepted: {', '.join(self._by_name) or 'none'}")
        place = where_of or (lambda name: f"{where}.{name}")
        return {name: (o.check(given[name], place(name)) if name in given else o.default)
                for name, o in self._by_name.items()}

    def rows(self) -> list[dict[str, str]]:
        """One row per option (name, default, accepted values, help): for `--help` texts and the docs."""
        return [{"name": o.name, "default": show_value(o.default), "accepts": o.describe(), "help": o.help}
                for o in self._by_name.values()]
