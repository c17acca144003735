"""Import every method module once so each registers itself (base.py imports this lazily)."""

from . import core_space, dare, iso_c, knots, ta, ties, tsv  # noqa: F401
