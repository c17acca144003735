"""The ask/tell loop of one search: replay of a resumed journal, one round at a time, the history line.

On resume the strategy, rebuilt from the config (seeded), first replays the journaled rounds with their
logged outcomes (no model, no pickle); each round must match exactly, or the journal was edited or written
by another version. Cost is charged by the evaluator's cost model from what the search asked, so a replayed
run goes on charging exactly as the uninterrupted one did.
"""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ...masking import keep_to_str
from ...search import Decision, Outcome, Strategy, ValidationData
from ..scoring.evaluator import Evaluator
from .journal import Journal
from .rounds import evaluate_round, logged_outcome


def start_replay(ev: Evaluator, j: Journal, full: np.ndarray) -> dict[int, list[dict]]:
    """Resume: the journal's rows by round. A search's cost counts from the full merge on, as in an
    uninterrupted run; each replayed round then teaches the evaluator its outcomes, in the original order."""
    if ev.cost_model is not None:
        ev.cost_model.reset()
    ev.see(full)
    logged: dict[int, list[dict]] = {}
    for e in j.evaluations:
        logged.setdefault(e["generation"], []).append(e)
    return logged


def replay_round(ev: Evaluator, cands, rows: list[dict], expert: dict) -> list[Outcome]:
    """The outcomes a journaled round stands for; the evaluator remembers them (never recomputed) and its cost
    model learns what the candidates that ran computed (cached ones ran nothing)."""
    outcomes = [logged_outcome(r, expert, ev.task_names) for r in rows]
    for cand, row, out in zip(cands, rows, outcomes):
        ev.remember(cand.mask, "val", cand.examples, out)
        if row["error"] is None and not row["cached"]:
            ev.see(cand.mask, cand.examples)
    return outcomes


def _asked(cands) -> list[tuple]:
    return [(keep_to_str(c.mask), None if c.examples is None else c.examples.key) for c in cands]


def history_line(gen: int, strategy: Strategy, rows: list[dict], n_evals: int, n_forward: int) -> dict:
    """What the history keeps of a round: the strategy's best so far on its own scale and the full merge's
    value on the same examples (`reference_fitness`), this round's scores, failures and the best's size."""
    fits = [r["fitness"] for r in rows if np.isfinite(r["fitness"])]
    best = strategy.best.mask if strategy.best is not None else np.ones(strategy.shape, dtype=bool)
    return {"generation": gen, "evaluations": n_evals, "forward_evaluations": n_forward,
            "best_fitness": strategy.best_fitness, "reference_fitness": strategy.reference_fitness,
            "gen_best": max(fits) if fits else None, "gen_mean": float(np.mean(fits)) if fits else None,
            "failed": sum(r["error"] is not None for r in rows), "n_pruned": int((~best).sum())}


def search(strategy: Strategy, ev: Evaluator, j: Journal, data: ValidationData, full_val: Outcome, *,
           track_test: bool, console: Console, show_progress: bool) -> Decision:
    """Ask/tell until the strategy is done; every new round is appended to the journal before the next (and
    committed with its neighbours, `Journal.append`)."""
    full = np.ones(ev.shape, dtype=bool)
    strategy.start(ValidationData(data.sizes, data.seed, full_val))
    logged = start_replay(ev, j, full)
    gen = n_evals = n_forward = 0
    started = time.perf_counter() - j.seconds
    logged_cost = j.history[j.generation - 1].get("cost", {}) if j.generation else {}
    best_key = None
    with Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("best {task.fields[best]:.2f} · evals {task.fields[evals]}"),
                  TimeElapsedColumn(), console=console, disable=not show_progress) as bar, j:  # j: flushes at exit
        task = bar.add_task("gen", total=strategy.n_generations, best=strategy.best_fitness, evals=0)
        while not strategy.done:
            cands = strategy.ask()
            gen += 1
            replay = gen <= j.generation
            if replay:
                rows = logged.get(gen, [])
                if [(r["keep"], r["examples"]) for r in rows] != _asked(cands):
                    raise j.mismatch(gen, "the candidate masks differ")
                outcomes = replay_round(ev, cands, rows, j.expert["val"])
            else:
                rows, outcomes = evaluate_round(ev, cands, gen)
            strategy.tell(cands, outcomes)
            n_evals += len(rows)
            n_forward += sum(not r["cached"] for r in rows)
            line = history_line(gen, strategy, rows, n_evals, n_forward)
            best = strategy.best.mask if strategy.best is not None else full
            if replay and any(j.history[gen - 1].get(k) != v for k, v in line.items()):
                raise j.mismatch(gen, "its history line disagrees with the logged outcomes")
            if not replay:
                line["elapsed"] = time.perf_counter() - started
                spent = ev.search_cost.to_json()
                line["cost"] = {k: logged_cost.get(k, 0) + spent[k] for k in spent}
                if track_test:
                    prev = j.history[-1].get("best_test_fitness") if j.history else None
                    line["best_test_fitness"] = (ev.evaluate(best, "test").fitness
                                                 if keep_to_str(best) != best_key or prev is None else prev)
                j.append(rows, line)
            best_key = keep_to_str(best)
            bar.update(task, completed=gen, best=strategy.best_fitness, evals=n_evals)
    if gen < j.generation:
        raise j.mismatch(gen, f"the journal has {j.generation} generations, the search {gen}")
    return strategy.decide(full_val.fitness)
