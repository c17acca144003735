"""How `fast` picks the masks it checks on the held-out folds (`search.options.final`).

The masks that look best on the search folds are the ones whose scores were luckiest (the winner's curse),
so the held-out check sees mostly noise unless the masks put to it are more robust than "the top few":

* `best` — the `contenders` best masks by their fitness on the search folds, as they are;
* `consensus` — one mask: the modules pruned by a majority of the `voters` best masks. A module that only
  one lucky mask prunes is dropped; the modules that keep turning up in good masks stay;
* `surrogate` — one mask from every candidate the search scored, not only the winners: a ridge regression
  of each candidate's paired gain over the full merge (on the first racing block, which every candidate
  saw) on its pruned modules estimates each module's effect; the mask prunes the modules with a positive
  effect, largest first, as many as the best mask prunes;
* `union` — all of the above: masks found three different ways, so that a real gain that one way misses
  still reaches the check.

Pure functions over keep-strings and per-example `Evidence`; no models.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..masking import keep_from_str, keep_to_str
from .evidence import Evidence
from .outcome import Subset

#: option value → how the report names the mask it puts to the held-out check
FINAL_CHOICES = {"best": "the best contender", "consensus": "the consensus mask", "surrogate": "the surrogate's mask",
                 "union": "the best contender"}
RIDGE = 1.0  # shrinks module effects that few candidates tell apart toward zero


def ranked_better(full_fitness: Mapping[str, float], full: str) -> list[str]:
    """Masks scored on every search fold that beat the full merge there, best first."""
    better = [k for k, f in full_fitness.items() if k != full and f > full_fitness[full]]
    return sorted(better, key=lambda k: -full_fitness[k])


def consensus_mask(top: Sequence[str]) -> str:
    """The modules pruned by more than half of `top` (keep-strings of one shape)."""
    pruned = np.mean([~keep_from_str(k) for k in top], axis=0)
    return keep_to_str(pruned <= 0.5)


def ridge_effects(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ridge coefficients (XᵀX + λI)⁻¹ Xᵀy of y on the columns of x (candidates × modules).

    With fewer candidates than modules (large T·G) the same coefficients come from the candidates' side,
    Xᵀ(XXᵀ + λI)⁻¹ y: a system the size of the candidates instead of modules × modules."""
    m, n = x.shape
    if m < n:
        return x.T @ np.linalg.solve(x @ x.T + RIDGE * np.eye(m), y)
    return np.linalg.solve(x.T @ x + RIDGE * np.eye(n), x.T @ y)


def surrogate_mask(evidence: Evidence, full: str, examples: Subset, n_prune: int) -> str:
    """Prune the `n_prune` modules (at most; only positive ones) with the largest ridge-estimated effect on
    the fitness over `examples`, from every mask scored on all of them."""
    scored = [k for k in evidence.keys() if k != full and evidence.covers(k, examples)]
    if not scored:
        return full
    shape = keep_from_str(full).shape
    base = evidence.fitness(full, examples)
    x = np.asarray([(~keep_from_str(k)).ravel() for k in scored], dtype=float)
    y = np.asarray([evidence.fitness(k, examples) - base for k in scored])
    effect = ridge_effects(x, y)
    keep = np.ones(x.shape[1], dtype=bool)
    keep[[i for i in np.argsort(-effect, kind="stable")[:n_prune] if effect[i] > 0]] = False
    return keep_to_str(keep.reshape(shape))


def final_contenders(rule: str, full_fitness: Mapping[str, float], evidence: Evidence, full: str,
                     first_block: Subset, contenders: int, voters: int) -> list[str]:
    """The masks (keep-strings, distinct, never the full merge) to score on the held-out folds under `rule`."""
    ranked = ranked_better(full_fitness, full)
    if not ranked:
        return []
    out = []
    if rule in ("best", "union"):
        out += ranked[:contenders]
    if rule in ("consensus", "union"):
        out.append(consensus_mask(ranked[:voters]))
    if rule in ("surrogate", "union"):
        out.append(surrogate_mask(evidence, full, first_block, int((~keep_from_str(ranked[0])).sum())))
    return [k for k in dict.fromkeys(out) if k != full]
