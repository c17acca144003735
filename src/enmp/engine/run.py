"""`enmp search`: expert and base scores, the mask search, baselines, and the run directory's outputs."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import RunConfig
from ..errors import EnmpError
from ..evaluation import fitness, summary
from ..atomic_files import atomic_dir, atomic_write_json, atomic_write_text, check_output_dir
from ..masking import Mask, keep_from_str, keep_to_str
from ..merging import MergeParams
from ..search import Decision, Outcome, ValidationData, get_strategy
from ..search.outcome import pack_bits, unpack_bits
from .accounting import Cost
from .export import merged_deltas, write_adapter, write_model
from .journal import Journal
from .local import LocalEvaluator
from .rounds import evaluate_round, logged_outcome
from .run_report import RunReport
from .workspace import RunInputs, Workspace, build_workspace, load_inputs


def make_strategy(cfg: RunConfig, shape: tuple[int, int], name: Optional[str] = None, **options):
    """The configured strategy, or strategy `name` with the run's rho, seed, population and generations (the
    baselines: random masks, greedy pruning) and the given options."""
    s = cfg.search
    if name is None:
        common, configured = s.settings()
        return get_strategy(s.strategy)(shape, **common, **{**configured, **options})
    common = {k: getattr(s, k) for k in ("rho", "seed", "popsize", "generations") if getattr(s, k) is not None}
    return get_strategy(name)(shape, **common, **options)


def default_evaluator_factory(cfg: RunConfig, log: Optional[Callable[[str], None]] = None) -> Callable:
    """In-process evaluator for one worker; Ray actors (imported only then) for several or a cluster.

    A factory takes (inputs, method, params); a `Workspace` passed as inputs is used as it is.
    """
    if cfg.parallel.workers > 1 or cfg.parallel.ray_address:
        from .parallel import ParallelEvaluator

        return ParallelEvaluator

    def local(inputs: RunInputs, method: str, params: MergeParams) -> LocalEvaluator:
        ws = inputs if isinstance(inputs, Workspace) else build_workspace(cfg, inputs=inputs, log=log)
        return LocalEvaluator(ws, method, params)

    return local


class SearchRun:
    """One search in one run directory; `run()` returns the `RunReport` (also saved as report.json)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, *, resume: bool = False, overwrite: bool = False,
                 console: Optional[Console] = None, evaluator_factory: Optional[Callable] = None,
                 show_progress: bool = True, workspace: Optional[Workspace] = None,
                 expert: Optional[dict] = None, base: Optional[dict] = None):
        # the saved config.yaml names every merge and search value used, so it replays this run whatever
        # defaults say
        cfg = cfg.model_copy(update={"merge": cfg.merge.resolved(), "search": cfg.search.resolved()})
        self.cfg, self.run_dir, self.resume = cfg, Path(run_dir), resume
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.params = cfg.merge.params()
        if not resume:
            check_output_dir(self.run_dir, overwrite)
        # a caller running several searches on one model (the demo) passes its workspace and expert scores
        self.inputs: RunInputs = workspace or load_inputs(cfg, log=self._log)
        # built once, before any model is loaded: bad search settings fail fast and nothing is written
        self.strategy = make_strategy(cfg, (len(self.inputs.task_names), len(self.inputs.groups)))
        factory = evaluator_factory or default_evaluator_factory(cfg, self._log)
        self.evaluator = factory(self.inputs, cfg.merge.method, self.params)
        self.data = ValidationData(tuple(self.evaluator.val_sizes), cfg.eval.data_seed)
        try:  # e.g. too few validation examples for the strategy's folds: before anything is written
            self.strategy.validate(self.data)
        except BaseException:
            self.evaluator.close()
            raise
        self.journal = Journal.load(self.run_dir) if resume else Journal(self.run_dir)
        if not resume:  # scores the caller already has for this exact merge (split → task → accuracy)
            self.journal.expert = {split: dict(scores) for split, scores in (expert or {}).items()}
            self.journal.base = {split: dict(scores) for split, scores in (base or {}).items()}

    def _log(self, msg: str) -> None:
        self.console.log(msg) if self.show_progress else None

    # ------------------------------------------------------------------ set-up
    def _start_dir(self) -> None:
        if self.resume:
            return
        if self.run_dir.exists():  # --overwrite, validated above: clear only now that inputs are good
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        atomic_write_text(self.run_dir / "config.yaml", self.cfg.to_yaml())

    def _reference_scores(self) -> Outcome:
        """Each expert alone and the full merge on both splits; returns the full merge's validation outcome,
        per example (every strategy compares with it)."""
        ev, j = self.evaluator, self.journal
        full = np.ones(ev.shape, dtype=bool)
        for split in ("val", "test"):
            if split not in j.expert:
                self._log(f"scoring each expert alone ({split})")
                j.expert[split] = ev.compute_expert(split)
            ev.expert[split] = j.expert[split]
        if j.base_correct:  # resume: the full merge is cached, as it was before
            expert = [j.expert["val"][t] for t in ev.task_names]
            full_val = Outcome(fitness(j.base["val"], j.expert["val"]), tuple(unpack_bits(c) for c in j.base_correct),
                               tuple(expert), j.base["val"])
            ev.remember(full, "val", None, full_val)
            ev.remember(full, "test", None, Outcome(fitness(j.base["test"], j.expert["test"]), scores=j.base["test"]))
            return full_val
        self._log("scoring the base merge (val)")
        full_val = ev.evaluate(full, "val")
        if full_val.failed:
            raise EnmpError("the full merge failed (NaN/Inf) on the validation split", where="enmp search",
                            fix="check the adapters and merge hyperparameters")
        j.base["val"], j.base_correct = full_val.scores, [pack_bits(c) for c in full_val.correct]
        if "test" not in j.base:
            self._log("scoring the base merge (test)")
            j.base["test"] = ev.evaluate(full, "test").scores
        atomic_write_json(self.run_dir / "expert.json", j.expert)
        return full_val

    # ------------------------------------------------------------------ search loop
    def _replay_journal(self, full: np.ndarray) -> dict[int, list[dict]]:
        """Resume: known outcomes are never recomputed, and the cost model learns what was computed (search
        cost counts from the full merge on, as in an uninterrupted run)."""
        ev, j = self.evaluator, self.journal
        if ev.cost_model is not None:
            ev.cost_model.reset()
        ev.see(full)
        logged: dict[int, list[dict]] = {}
        for e in j.evaluations:
            logged.setdefault(e["generation"], []).append(e)
            keep = keep_from_str(e["keep"])
            ev.remember(keep, "val", e["examples"], logged_outcome(e, j.expert["val"], ev.task_names))
            if e["error"] is None:
                ev.see(keep, e["examples"])
        return logged

    def _search(self, full_val: Outcome) -> Decision:
        """Ask/tell until done. On resume the strategy, rebuilt from the config (seeded), first replays the
        journaled rounds with their logged outcomes (no model, no pickle); each must match exactly."""
        cfg, ev, j = self.cfg, self.evaluator, self.journal
        strategy = self.strategy
        full = np.ones(ev.shape, dtype=bool)
        strategy.start(ValidationData(self.data.sizes, self.data.seed, full_val))
        logged = self._replay_journal(full)
        gen = n_evals = n_forward = 0
        started = time.perf_counter() - j.seconds
        logged_cost = j.history[j.generation - 1].get("cost", {}) if j.generation else {}
        best_key = None
        with Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("best {task.fields[best]:.2f} · evals {task.fields[evals]}"),
                      TimeElapsedColumn(), console=self.console, disable=not self.show_progress) as bar:
            task = bar.add_task("gen", total=strategy.n_generations, best=strategy.best_fitness, evals=0)
            while not strategy.done:
                cands = strategy.ask()
                gen += 1
                replay = gen <= j.generation
                if replay:
                    rows = logged.get(gen, [])
                    if [(r["keep"], r["examples"]) for r in rows] != [
                            (keep_to_str(c.mask), None if c.examples is None else c.examples.key) for c in cands]:
                        raise j.mismatch(gen, "the candidate masks differ")
                    outcomes = [logged_outcome(r, j.expert["val"], ev.task_names) for r in rows]
                else:
                    rows, outcomes = evaluate_round(ev, cands, gen)
                strategy.tell(cands, outcomes)
                n_evals += len(rows)
                n_forward += sum(not r["cached"] for r in rows)
                fits = [r["fitness"] for r in rows if np.isfinite(r["fitness"])]
                best = strategy.best.mask if strategy.best is not None else full
                line = {"generation": gen, "evaluations": n_evals, "forward_evaluations": n_forward,
                        "best_fitness": strategy.best_fitness, "reference_fitness": strategy.reference_fitness,
                        "gen_best": max(fits) if fits else None, "gen_mean": float(np.mean(fits)) if fits else None,
                        "failed": sum(r["error"] is not None for r in rows), "n_pruned": int((~best).sum())}
                if replay and any(j.history[gen - 1].get(k) != v for k, v in line.items()):
                    raise j.mismatch(gen, "its history line disagrees with the logged outcomes")
                if not replay:
                    line["elapsed"] = time.perf_counter() - started
                    spent = ev.search_cost.to_json()
                    line["cost"] = {k: logged_cost.get(k, 0) + spent[k] for k in spent}
                    if cfg.search.track_test:
                        prev = j.history[-1].get("best_test_fitness") if j.history else None
                        improved = keep_to_str(best) != best_key
                        line["best_test_fitness"] = (ev.evaluate(best, "test").fitness
                                                     if improved or prev is None else prev)
                    j.append(rows, line)
                best_key = keep_to_str(best)
                bar.update(task, completed=gen, best=strategy.best_fitness, evals=n_evals)
        if gen < j.generation:
            raise j.mismatch(gen, f"the journal has {j.generation} generations, the search {gen}")
        return strategy.decide(full_val.fitness)

    # ------------------------------------------------------------------ baselines
    def _random_baseline(self, n_prune: int) -> Optional[dict]:
        """Random masks pruning as many modules as the search's result (the paper's random baseline)."""
        repeats = self.cfg.search.random_repeats
        if repeats == 0:
            return None
        masks = make_strategy(self.cfg, self.evaluator.shape, name="random", n_prune=n_prune).sample(repeats)
        out = {"n_pruned": n_prune, "repeats": repeats}
        for split in ("val", "test"):
            expert = self.journal.expert[split]
            rows = [r.scores for r in self.evaluator.evaluate_many(masks, split)]
            raw = {t: float(np.mean([r[t] for r in rows])) for t in self.inputs.task_names}
            s = summary(raw, expert)
            s["mean_normalized"] = float(np.mean([fitness(r, expert) for r in rows]))
            s["std"] = float(np.std([fitness(r, expert) for r in rows]))
            out[split] = s
        return out

    def _greedy_baseline(self) -> dict:
        strategy = make_strategy(self.cfg, self.evaluator.shape, name="greedy")
        final = None
        while not strategy.done:
            cands = strategy.ask()
            strategy.tell(cands, self.evaluator.evaluate_many([c.mask for c in cands], "val"))
            final = cands[-1].mask
        out = {"n_pruned": int((~final).sum())}
        for split in ("val", "test"):
            out[split] = summary(self.evaluator.evaluate(final, split).scores, self.journal.expert[split])
        return out

    # ------------------------------------------------------------------ outputs
    def _write_outputs(self, mask: Mask) -> None:
        out = self.cfg.output
        mask.save(self.run_dir / "mask.json")
        if not (out.save_model or out.save_adapter):
            return
        from .model_card import search_command, write_card

        deltas = merged_deltas(self.inputs.adapters, mask, self.cfg.search.grouping, self.cfg.merge.method, self.params)
        j = self.journal  # the cards' scores: run() has just evaluated this mask, so these are cache hits
        scores = {s: {"expert": j.expert[s], "base": j.base[s], "enmp": self.evaluator.evaluate(mask.keep, s).scores}
                  for s in ("val", "test")}
        card = {"base": self.inputs.base, "adapters": self.inputs.adapters, "method": self.cfg.merge.method,
                "params": self.params, "grouping": self.cfg.search.grouping, "pruned": mask.pruned(),
                "scores": scores, "command": search_command(self.run_dir), "base_model_id": out.base_model_id}
        if out.save_model:
            with atomic_dir(self.run_dir / "model", overwrite=True) as tmp:
                write_model(tmp, self.inputs.base, deltas, out.dtype, self._log)
                write_card(tmp, "model", **card)
        if out.save_adapter:
            with atomic_dir(self.run_dir / "adapter", overwrite=True) as tmp:
                write_adapter(tmp, self.inputs.base, deltas, out.adapter_rank, self._log)
                write_card(tmp, "adapter", **card)

    def run(self, finish: Optional[Callable[[RunReport], None]] = None) -> RunReport:
        """Search and write the run directory; `finish(report)` (e.g. the plots) runs before report.json,
        whose appearance marks a finished run."""
        self._start_dir()
        started = time.perf_counter()
        full_val = self._reference_scores()
        if not self.resume:
            self.journal.start()
        decision = self._search(full_val)
        j, ev = self.journal, self.evaluator
        mask = Mask(self.inputs.task_names, self.inputs.groups, decision.mask)
        enmp = {s: summary(ev.evaluate(decision.mask, s).scores, j.expert[s]) for s in ("val", "test")}
        random = self._random_baseline(mask.n_pruned)
        greedy = self._greedy_baseline() if self.cfg.search.greedy_baseline else None
        report = RunReport(
            tasks=self.inputs.task_names, method=self.cfg.merge.method, strategy=self.cfg.search.strategy,
            params=self.params.to_dict(), layers=list(self.inputs.groups), pruned=mask.pruned(),
            evaluations=len(j.evaluations), forward_evaluations=sum(not e["cached"] for e in j.evaluations),
            cost=(j.history[-1] if j.history else {}).get("cost", Cost().to_json()),
            seconds=j.seconds, total_seconds=j.seconds + (time.perf_counter() - started), expert=j.expert,
            base={s: summary(j.base[s], j.expert[s]) for s in ("val", "test")}, enmp=enmp, random=random,
            greedy=greedy, decision=decision.text,
            expected_gain=None if decision.expected_gain is None else decision.expected_gain.to_json())
        self._write_outputs(mask)
        if finish is not None:
            finish(report)
        report.save(self.run_dir / "report.json")
        return report
