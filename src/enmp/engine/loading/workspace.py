"""Everything an in-process evaluator needs, loaded once: the live model, the heads and the prepared data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from ...config import RunConfig
from ...dtypes import DTYPES
from ...evaluation import Examples, PreparedSplit, TaskKind
from ...search import Subset
from .inputs import RunInputs, load_inputs
from .model import build_task, load_model, load_processor, pick_device, quiet_transformers


@dataclass
class Workspace(RunInputs):
    """RunInputs plus the live model, the task heads and the preprocessed data of each split."""

    model: torch.nn.Module = None
    tasks: list[TaskKind] = field(default_factory=list)
    splits: dict[str, list[PreparedSplit]] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    processors: dict = field(default_factory=dict)  # task kind → tokenizer / image processor
    examples: dict[str, list[Examples]] = field(default_factory=dict)  # split → per task, as loaded

    _subsets: dict = field(default_factory=dict)  # (split, task, subset key) → PreparedSplit

    live: Any = None  # the scoring machinery on this live model, shared by its evaluators (scoring.live)

    def prepare(self, task: int, ex: Examples) -> PreparedSplit:
        """Model inputs for some examples of one task (tokenised or preprocessed once, batched by length)."""
        tc = self.cfg.tasks[task]
        return self.tasks[task].prepare(ex, self.processors[tc.kind], batch_size=self.cfg.eval.batch_size,
                                        max_length=self.cfg.eval.max_length).to(self.device)

    def prepared(self, split: str, task: int, subset: Optional[Subset] = None) -> PreparedSplit:
        """A split's prepared inputs for one task, or those of a subset of its examples (prepared on first use)."""
        if subset is None:
            return self.splits[split][task]
        key = (split, task, subset.key)
        if key not in self._subsets:
            self._subsets[key] = self.prepare(task, self.examples[split][task].subset(subset.index[task].tolist()))
        return self._subsets[key]


def build_workspace(cfg: RunConfig, *, splits=("val", "test"), inputs: Optional[RunInputs] = None,
                    log: Optional[Callable[[str], None]] = None) -> Workspace:
    """Load everything an in-process evaluator needs (reusing `inputs` when the caller has them)."""
    log = log or (lambda _msg: None)
    quiet_transformers()
    if cfg.eval.threads:
        torch.set_num_threads(cfg.eval.threads)
    device = pick_device(cfg.eval.device)
    inputs = inputs or load_inputs(cfg, log)
    base, adapters = inputs.base, inputs.adapters
    tasks = [build_task(tc, ad.directory, ad.extra) for tc, ad in zip(cfg.tasks, adapters.adapters)]
    kinds = {tc.kind for tc in cfg.tasks}
    processors = {k: load_processor(base, k, cfg.trust_remote_code) for k in kinds}  # as each kind declares
    ws = Workspace(cfg, base, adapters, inputs.groups, None, tasks, {s: [] for s in splits}, device, processors,
                   {s: [] for s in splits})
    for t, tc in enumerate(cfg.tasks):
        for split in splits:
            log(f"preparing {tc.name} ({split})")
            limit = cfg.eval.val_samples if split == "val" else cfg.eval.test_samples
            ex = tasks[t].examples(tc, split, max_samples=limit, seed=cfg.eval.data_seed, where=f"task '{tc.name}'")
            ws.examples[split].append(ex)
            ws.splits[split].append(ws.prepare(t, ex))
    log("loading base model")
    ws.model = load_model(base, kinds, DTYPES[cfg.eval.dtype], device, cfg.trust_remote_code)
    return ws
