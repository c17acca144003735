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
from ..evaluation import fitness, summary
from ..io import atomic_dir, atomic_write_json, atomic_write_text, check_output_dir
from ..masking import Mask
from ..merging import MergeParams, get_method, resolve_params, validate_params
from ..report import plot_convergence, plot_mask, print_report
from ..search import get_strategy
from .evaluator import CandidateResult, Evaluator
from .export import merged_deltas, write_adapter, write_model
from .journal import Journal, keep_from_str, keep_to_str
from .workspace import Workspace, build_workspace


def merge_params(cfg: RunConfig) -> MergeParams:
    m = cfg.merge
    get_method(m.method)
    params = MergeParams(lam=m.lam, top_k=m.top_k, drop_rate=m.drop_rate, seed=m.seed, inner=m.inner, iso=m.iso)
    validate_params(m.method, params)
    return resolve_params(m.method, params)


def make_strategy(cfg: RunConfig, shape: tuple[int, int], name: Optional[str] = None, **options):
    s = cfg.search
    cls = get_strategy(name or s.strategy)
    if (name or s.strategy) in ("cma",):
        options.setdefault("sigma0", s.sigma0)
    return cls(shape, rho=s.rho, seed=s.seed, popsize=s.popsize, generations=s.generations, **options)


def default_evaluator_factory(cfg: RunConfig) -> Callable:
    """In-process Evaluator for one worker; Ray actors (imported only then) for several or a cluster."""
    if cfg.parallel.workers > 1 or cfg.parallel.ray_address:
        from .parallel import ParallelEvaluator

        return ParallelEvaluator
    return Evaluator


class SearchRun:
    """One search in one run directory; `run()` returns the report dict (also saved as report.json)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, *, resume: bool = False, overwrite: bool = False,
                 console: Optional[Console] = None, evaluator_factory: Optional[Callable] = None,
                 show_progress: bool = True, workspace: Optional[Workspace] = None,
                 expert: Optional[dict] = None, base: Optional[dict] = None):
        self.cfg, self.run_dir, self.resume = cfg, Path(run_dir), resume
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress
        self.params = merge_params(cfg)
        if not resume:
            check_output_dir(self.run_dir, overwrite)
        get_strategy(cfg.search.strategy)
        # a caller running several searches on one model (the demo) passes its workspace and expert scores
        self.ws: Workspace = workspace or build_workspace(cfg, log=self._log)
        factory = evaluator_factory or default_evaluator_factory(cfg)
        self.evaluator = factory(self.ws, cfg.merge.method, self.params, cfg.eval.cache_mb)
        make_strategy(cfg, self.evaluator.shape)  # settings are checked before anything is written
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

    def _reference_scores(self) -> None:
        ev, j = self.evaluator, self.journal
        full = np.ones(ev.shape, dtype=bool)
        for split in ("val", "test"):
            if split not in j.expert:
                self._log(f"scoring each expert alone ({split})")
                j.expert[split] = ev.compute_expert(split)
            ev.expert[split] = j.expert[split]
            if split not in j.base:
                self._log(f"scoring the base merge ({split})")
                j.base[split] = ev.evaluate(full, split).scores
        atomic_write_json(self.run_dir / "expert.json", j.expert)

    # ------------------------------------------------------------------ search loop
    def _search(self) -> tuple[np.ndarray, float]:
        cfg, ev, j = self.cfg, self.evaluator, self.journal
        shape = ev.shape
        state = j.strategy_state()
        strategy = make_strategy(cfg, shape) if state is None else get_strategy(cfg.search.strategy).from_state(state)
        for e in j.evaluations:  # resume: known results are never recomputed
            if e.get("split", "val") == "val":
                ev.remember(keep_from_str(e["keep"]), "val", CandidateResult(e["scores"], e["fitness"], e["error"]))
        base_fit = fitness(j.base["val"], j.expert["val"])
        best_keep, best_fit = np.ones(shape, dtype=bool), base_fit
        if strategy.best is not None and strategy.best_fitness > best_fit:
            best_keep, best_fit = strategy.best.mask.copy(), strategy.best_fitness
        started = time.perf_counter() - j.seconds
        total = strategy.n_generations
        with Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("best {task.fields[best]:.2f} · evals {task.fields[evals]}"),
                      TimeElapsedColumn(), console=self.console, disable=not self.show_progress) as bar:
            task = bar.add_task("gen", total=total, completed=j.generation, best=best_fit, evals=len(j.evaluations))
            while not strategy.done:
                cands = strategy.ask()
                results = ev.evaluate_many([c.mask for c in cands], "val")
                strategy.tell(cands, [r.fitness for r in results])
                j.generation += 1
                for c, r in zip(cands, results):
                    j.evaluations.append({"generation": j.generation, "keep": keep_to_str(c.mask),
                                          "n_pruned": int((~c.mask).sum()), "cached": r.cached, **r.to_json()})
                improved = strategy.best is not None and strategy.best_fitness > best_fit
                if improved:
                    best_keep, best_fit = strategy.best.mask.copy(), strategy.best_fitness
                fits = [r.fitness for r in results if np.isfinite(r.fitness)]
                line = {"generation": j.generation, "evaluations": len(j.evaluations),
                        "forward_evaluations": sum(not e["cached"] for e in j.evaluations),
                        "best_fitness": best_fit, "gen_best": max(fits) if fits else None,
                        "gen_mean": float(np.mean(fits)) if fits else None,
                        "failed": sum(r.error is not None for r in results), "n_pruned": int((~best_keep).sum()),
                        "elapsed": time.perf_counter() - started}
                if cfg.search.track_test:
                    prev = j.history[-1].get("best_test_fitness") if j.history else None
                    line["best_test_fitness"] = (ev.evaluate(best_keep, "test").fitness if improved or prev is None
                                                 else prev)
                j.history.append(line)
                j.seconds = line["elapsed"]
                j.save(strategy.state_dict())
                bar.update(task, completed=j.generation, best=best_fit, evals=len(j.evaluations))
        return best_keep, best_fit

    # ------------------------------------------------------------------ baselines
    def _random_baseline(self, n_prune: int) -> Optional[dict]:
        repeats = self.cfg.search.random_repeats
        if repeats == 0:
            return None
        shape = self.evaluator.shape
        rng = np.random.default_rng(self.cfg.search.seed)
        runs = {"val": [], "test": []}
        for _ in range(repeats):
            keep = np.ones(shape[0] * shape[1], dtype=bool)
            keep[rng.choice(keep.size, size=n_prune, replace=False)] = False
            for split in runs:
                runs[split].append(self.evaluator.evaluate(keep.reshape(shape), split).scores)
        out = {"n_pruned": n_prune, "repeats": repeats}
        for split, rows in runs.items():
            raw = {t: float(np.mean([r[t] for r in rows])) for t in self.ws.task_names}
            s = summary(raw, self.journal.expert[split])
            s["mean_normalized"] = float(np.mean([fitness(r, self.journal.expert[split]) for r in rows]))
            s["std"] = float(np.std([fitness(r, self.journal.expert[split]) for r in rows]))
            out[split] = s
        return out

    def _greedy_baseline(self) -> dict:
        strategy = make_strategy(self.cfg, self.evaluator.shape, name="greedy")
        final = None
        while not strategy.done:
            cands = strategy.ask()
            results = self.evaluator.evaluate_many([c.mask for c in cands], "val")
            strategy.tell(cands, [r.fitness for r in results])
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
        deltas = merged_deltas(self.ws.adapters, mask, self.cfg.search.grouping, self.cfg.merge.method, self.params)
        if out.save_model:
            with atomic_dir(self.run_dir / "model", overwrite=True) as tmp:
                write_model(tmp, self.ws.base, deltas, out.dtype)
        if out.save_adapter:
            with atomic_dir(self.run_dir / "adapter", overwrite=True) as tmp:
                write_adapter(tmp, self.ws.base, deltas, out.adapter_rank, self._log)

    def run(self) -> dict:
        self._start_dir()
        started = time.perf_counter()
        self._reference_scores()
        if not self.resume:
            self.journal.save(None)
        best_keep, _ = self._search()
        j, ev = self.journal, self.evaluator
        enmp = {s: summary(ev.evaluate(best_keep, s).scores, j.expert[s]) for s in ("val", "test")}
        mask = Mask(self.ws.task_names, self.ws.groups, best_keep)
        report = {"tasks": self.ws.task_names, "method": self.cfg.merge.method, "strategy": self.cfg.search.strategy,
                  "params": {k: v for k, v in self.params.__dict__.items()}, "layers": list(self.ws.groups),
                  "pruned": mask.pruned(), "evaluations": len(j.evaluations),
                  "forward_evaluations": sum(not e["cached"] for e in j.evaluations),
                  "seconds": j.seconds, "expert": j.expert,
                  "base": {s: summary(j.base[s], j.expert[s]) for s in ("val", "test")}, "enmp": enmp}
        random = self._random_baseline(mask.n_pruned)
        if random is not None:
            report["random"] = random
        if self.cfg.search.greedy_baseline:
            report["greedy"] = self._greedy_baseline()
        report["total_seconds"] = j.seconds + (time.perf_counter() - started)
        self._write_outputs(mask)
        plots = self.run_dir / "plots"
        plot_convergence(j.history, report["base"]["val"]["mean_normalized"],
                         report["base"]["test"]["mean_normalized"], plots / "convergence.png")
        plot_mask(mask.tasks, mask.layers, mask.keep, plots / "mask.png")
        atomic_write_json(self.run_dir / "report.json", report)
        return report


def run_search(cfg: RunConfig, run_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
               console: Optional[Console] = None, show_progress: bool = True, print_table: bool = True) -> dict:
    run = SearchRun(cfg, Path(run_dir), resume=resume, overwrite=overwrite, console=console,
                    show_progress=show_progress)
    try:
        report = run.run()
    finally:
        close = getattr(run.evaluator, "close", None)  # Ray workers, when there are any
        if close is not None:
            close()
    if print_table:
        print_report(report, Console())
    return report
