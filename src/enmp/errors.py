"""User-facing errors: one clear line (what, where, how to fix); the CLI turns them into exit code 2."""

from __future__ import annotations


class EnmpError(Exception):
    """A problem with the user's input or environment that we can explain in one line."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        super().__init__(self.line())

    def line(self) -> str:
        parts = [self.what if self.where is None else f"{self.where}: {self.what}"]
        if self.fix:
            parts.append(self.fix)
        return " — ".join(parts).replace("\n", " ")


class NumericalError(EnmpError):
    """NaN/Inf in weights, merged updates or logits."""


def first_line(exc: BaseException, limit: int = 200, *, with_type: bool = False) -> str:
    """The first non-empty line of str(exc), cut to `limit` characters, or the type name when the message is
    empty: library errors are quoted inside one-line EnmpErrors, and an empty message must not IndexError.
    with_type prefixes the type name ("KeyError: 'x'")."""
    line = next((s.strip() for s in str(exc).splitlines() if s.strip()), "")[:limit]
    name = type(exc).__name__
    if not line:
        return name
    return f"{name}: {line}" if with_type else line
