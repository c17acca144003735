"""The paper's comparison merges of a run: random masks at the search's sparsity, and greedy pruning."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ...metrics import fitness, summary
from ...search import Strategy
from ..scoring.evaluator import Evaluator


def random_baseline(random: Strategy, ev: Evaluator, expert: dict, repeats: int) -> Optional[dict]:
    """`repeats` masks of the `random` strategy (pruning as many modules as the search's answer): the mean of
    their scores per split, and the spread of their fitness. None when the search pruned nothing (there is
    no sparsity to compare at)."""
    if repeats == 0 or random.n_prune == 0:
        return None
    masks = random.sample(repeats)
    out = {"n_pruned": random.n_prune, "repeats": repeats}
    for split in ("val", "test"):
        rows = [r.scores for r in ev.evaluate_many(masks, split)]
        raw = {t: float(np.mean([r[t] for r in rows])) for t in ev.task_names}
        s = summary(raw, expert[split])
        s["mean_normalized"] = float(np.mean([fitness(r, expert[split]) for r in rows]))
        s["std"] = float(np.std([fitness(r, expert[split]) for r in rows]))
        out[split] = s
    return out


def greedy_baseline(greedy: Strategy, ev: Evaluator, expert: dict) -> dict:
    """Greedy pruning scored on the whole validation split: the mask of its last round, on both splits."""
    final = None
    while not greedy.done:
        cands = greedy.ask()
        greedy.tell(cands, ev.evaluate_many([c.mask for c in cands], "val"))
        final = cands[-1].mask
    out = {"n_pruned": int((~final).sum())}
    for split in ("val", "test"):
        out[split] = summary(ev.evaluate(final, split).scores, expert[split])
    return out
