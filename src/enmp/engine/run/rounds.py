"""One ask/tell round of a search: score the asked candidates and turn outcomes into journal rows and back.

A row keeps each example's right/wrong (packed), so that a resumed search hands the strategy exactly the
outcomes it was told the first time, whatever examples the strategy asked for.
"""

from __future__ import annotations

from typing import Optional, Sequence

from ...masking import keep_to_str
from ...search import Candidate, Outcome
from ...search.outcome import pack_bits, unpack_bits
from ..scoring.evaluator import Evaluator


def evaluate_round(ev: Evaluator, cands: Sequence[Candidate], generation: int) -> tuple[list[dict], list[Outcome]]:
    """Journal rows and outcomes for `cands`, in their order (every candidate on its own examples)."""
    outcomes = ev.evaluate_many([c.mask for c in cands], "val", [c.examples for c in cands])
    return [journal_row(c, o, generation) for c, o in zip(cands, outcomes)], outcomes


def journal_row(cand: Candidate, out: Outcome, generation: int) -> dict:
    row = {"generation": generation, "keep": keep_to_str(cand.mask), "n_pruned": int((~cand.mask).sum()),
           "examples": None if cand.examples is None else cand.examples.key, "cached": out.cached,
           "scores": out.scores or {}, "fitness": out.fitness, "error": out.error}
    if cand.tag:
        row["tag"] = cand.tag
    if out.correct is not None:
        row["correct"] = [pack_bits(c) for c in out.correct]
    return row


def logged_outcome(row: dict, expert: dict[str, float], tasks: Sequence[str]) -> Outcome:
    """The outcome a journal row stands for: what a resumed strategy is told and its evaluator remembers."""
    correct: Optional[tuple] = tuple(unpack_bits(c) for c in row["correct"]) if "correct" in row else None
    return Outcome(row["fitness"], correct, tuple(expert[t] for t in tasks), row["scores"] or None,
                   row["error"], cached=row["cached"])
