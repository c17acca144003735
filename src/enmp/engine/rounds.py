"""One ask/tell round of a search: score the asked candidates and turn results into journal rows.

A candidate asked on the whole validation split gets one result; one asked on `folds` (racing
strategies) gets one result per fold, and its row keeps each example's right/wrong so that a resumed
search can hand the strategy exactly what it was told (`fold_scores`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..masking import keep_to_str
from ..search import Candidate
from ..search.racing import FoldScores, pooled_fitness
from ..evaluation import fitness
from .evaluator import CandidateResult, Evaluator, fold_split


def fold_scores(row: dict, expert: dict[str, float]) -> Optional[FoldScores]:
    """Per fold, per task: each example's normalized score, 100 × (100 % if right else 0) ÷ the expert's
    accuracy (%), so that their mean is the normalized accuracy."""
    if "correct" not in row or row["error"] is not None:
        return None
    scale = {t: 1e4 / a if a > 0 else 0.0 for t, a in expert.items()}
    return {int(f): [np.array([c == "1" for c in bits[t]], dtype=float) * scale[t] for t in expert]
            for f, bits in row["correct"].items()}


def evaluate_round(ev: Evaluator, cands: Sequence[Candidate], generation: int,
                   expert: dict[str, float]) -> list[dict]:
    """Journal rows for `cands`, in their order (whole-split results, or per-fold results pooled)."""
    rows: list[Optional[dict]] = [None] * len(cands)
    whole = [i for i, c in enumerate(cands) if c.folds is None]
    for i, r in zip(whole, ev.evaluate_many([cands[i].mask for i in whole], "val") if whole else []):
        rows[i] = {"cached": r.cached, **r.to_json()}
    by_fold: dict[int, dict[int, object]] = {}
    for f in sorted({f for c in cands if c.folds for f in c.folds}):
        idx = [i for i, c in enumerate(cands) if c.folds and f in c.folds]
        by_fold[f] = dict(zip(idx, ev.evaluate_many([cands[i].mask for i in idx], fold_split(f))))
    for i, c in enumerate(cands):
        if c.folds is None:
            continue
        results = [by_fold[f][i] for f in c.folds]
        error = next((r.error for r in results if r.error is not None), None)
        row = {"cached": all(r.cached for r in results), "folds": list(c.folds),
               "scores": {str(f): r.scores for f, r in zip(c.folds, results)}, "fitness": float("-inf"),
               "error": error}
        if error is None:
            row["correct"] = {str(f): r.correct for f, r in zip(c.folds, results)}
            row["fitness"] = pooled_fitness(fold_scores(row, expert), c.folds)
        rows[i] = row
    return [{"generation": generation, "keep": keep_to_str(c.mask), "n_pruned": int((~c.mask).sum()), **row}
            for c, row in zip(cands, rows)]


def logged_results(row: dict, expert: dict[str, float]) -> list[tuple[str, CandidateResult]]:
    """(split, result) pairs a journal row stands for: what a resumed evaluator remembers."""
    if "folds" not in row:
        return [("val", CandidateResult(row["scores"], row["fitness"], row["error"]))]
    out = []
    for f in row["folds"]:
        scores = row["scores"][str(f)]
        if row["error"] is not None:  # the first failing fold is not known: remember none of them as failed
            continue
        out.append((fold_split(f), CandidateResult(scores, fitness(scores, expert), None,
                                                   correct=row["correct"][str(f)])))
    return out
