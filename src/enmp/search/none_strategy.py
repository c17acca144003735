"""No pruning: the plain merge, as the reference every search is compared with."""

from __future__ import annotations

from .base import Candidate, Strategy, register


@register("none")
class NoneStrategy(Strategy):
    summary = "no pruning: the plain merge"

    @property
    def n_generations(self) -> int:
        return 1

    def _ask(self) -> list[Candidate]:
        return [Candidate(self._full(), tag="full")]

    def _tell(self, cands, outcomes) -> None:
        """Nothing to learn: one evaluation, tracked as best by the base class."""
