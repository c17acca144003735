"""`enmp search`: one search in one run directory — set-up, reference scores, the search, the paper's
baselines, and the run directory's outputs (mask, model, adapter, report)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from rich.console import Console

from ...atomic_files import atomic_dir, atomic_write_json, atomic_write_text, check_output_dir
from ...config import RunConfig
from ...errors import EnmpError
from ...masking import Mask
from ...merging import MergeParams
from ...metrics import fitness, summary
from ...search import Decision, Outcome, ValidationData, get_strategy
from ...search.outcome import pack_bits, unpack_bits
from ..loading.inputs import RunInputs, load_inputs
from ..loading.workspace import Workspace, build_workspace
from ..outputs.export import merged_deltas, write_adapter, write_model
from ..scoring.accounting import Cost
from ..scoring.local import LocalEvaluator
from .baselines import greedy_baseline, random_baseline
from .journal import Journal
from .loop import search
from .run_report import RunReport


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
        from ..scoring.parallel import ParallelEvaluator

        return ParallelEvaluator

    def local(inputs: RunInputs, method: str, params: MergeParams) -> LocalEvaluator:
        ws = inputs if isinstance(inputs, Workspace) else build_workspace(cfg, inputs=inputs, log=log)
        return LocalEvaluator(ws, method, params)

    return local


class SearchRun:
    """One search in one run directory; `run()` returns the `RunReport` (also saved as report.json)."""

    def __init__(self, cfg: RunConfig, run_dir: Path, *, resume: bool = False, overwrite: bool = False,
                 console: Optional[Console] = None, evaluator_factory: Optional[Callable] = None,
                 show_progress: bool = True, workspace: Optional[RunInputs] = None,
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
        # a caller running several searches on one model (the demo) passes its workspace and expert scores;
        # one that has only loaded the inputs (no model) passes them, and the evaluator loads the rest
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

    # ------------------------------------------------------------------ outputs
    def _write_outputs(self, mask: Mask, decision: Decision) -> None:
        out = self.cfg.output
        mask.save(self.run_dir / "mask.json")
        if not (out.save_model or out.save_adapter):
            return
        from ..outputs.model_card import search_command, write_card

        deltas = merged_deltas(self.inputs.adapters, mask, self.cfg.search.grouping, self.cfg.merge.method, self.params)
        j = self.journal  # the cards' scores: run() has just evaluated this mask, so these are cache hits
        scores = {s: {"expert": j.expert[s], "base": j.base[s], "enmp": self.evaluator.evaluate(mask.keep, s).scores}
                  for s in ("val", "test")}
        card = {"base": self.inputs.base, "adapters": self.inputs.adapters, "method": self.cfg.merge.method,
                "params": self.params, "grouping": self.cfg.search.grouping, "pruned": mask.pruned(),
                "scores": scores, "command": search_command(self.run_dir), "base_model_id": out.base_model_id,
                "expected_gain": None if decision.expected_gain is None else decision.expected_gain.to_json(),
                "decision": decision.text}
        if out.save_model:
            with atomic_dir(self.run_dir / "model", overwrite=True) as tmp:
                write_model(tmp, self.inputs.base, deltas, out.dtype, self._log)
                write_card(tmp, "model", **card)
        if out.save_adapter:
            with atomic_dir(self.run_dir / "adapter", overwrite=True) as tmp:
                write_adapter(tmp, self.inputs.base, deltas, out.adapter_rank, self._log)
                write_card(tmp, "adapter", **card)

    def prepare(self) -> Outcome:
        """Make the run directory (or take the interrupted one) and score the experts and the full merge;
        returns the full merge's validation outcome."""
        self._start_dir()
        self._started = time.perf_counter()
        full_val = self._reference_scores()
        if not self.resume:
            self.journal.start()
        return full_val

    def search(self, full_val: Outcome) -> Decision:
        """The ask/tell loop (replaying the journal first on resume); returns the strategy's decision."""
        return search(self.strategy, self.evaluator, self.journal, self.data, full_val,
                      track_test=self.cfg.search.track_test, console=self.console, show_progress=self.show_progress)

    def finish(self, decision: Decision, finish: Optional[Callable[[RunReport], None]] = None) -> RunReport:
        """Score the answer and the baselines, write the outputs and report.json (last: it marks a finished
        run); `finish(report)` (e.g. the plots) runs just before it."""
        j, ev, cfg = self.journal, self.evaluator, self.cfg
        mask = Mask(self.inputs.task_names, self.inputs.groups, decision.mask)
        enmp = {s: summary(ev.evaluate(decision.mask, s).scores, j.expert[s]) for s in ("val", "test")}
        random = random_baseline(make_strategy(cfg, ev.shape, name="random", n_prune=mask.n_pruned), ev, j.expert,
                                 cfg.search.random_repeats)
        greedy = greedy_baseline(make_strategy(cfg, ev.shape, name="greedy"), ev, j.expert) \
            if cfg.search.greedy_baseline else None
        report = RunReport(
            tasks=self.inputs.task_names, method=cfg.merge.method, strategy=cfg.search.strategy,
            params=self.params.to_dict(), layers=list(self.inputs.groups), pruned=mask.pruned(),
            evaluations=len(j.evaluations), forward_evaluations=sum(not e["cached"] for e in j.evaluations),
            cost=(j.history[-1] if j.history else {}).get("cost", Cost().to_json()),
            seconds=j.seconds, total_seconds=j.seconds + (time.perf_counter() - self._started), expert=j.expert,
            base={s: summary(j.base[s], j.expert[s]) for s in ("val", "test")}, enmp=enmp, random=random,
            greedy=greedy, decision=decision.text,
            expected_gain=None if decision.expected_gain is None else decision.expected_gain.to_json(),
            evidence=decision.details or None)
        self._write_outputs(mask, decision)
        if finish is not None:
            finish(report)
        report.save(self.run_dir / "report.json")
        return report

    def run(self, finish: Optional[Callable[[RunReport], None]] = None) -> RunReport:
        """prepare → search → finish: the whole run."""
        return self.finish(self.search(self.prepare()), finish)
