"""What every process of a run needs before any model is loaded: the validated base and adapters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from ...adapters import AdapterSet, BaseCheckpoint, load_adapter_set
from ...config import RunConfig
from ...masking import group_labels, target_groups


@dataclass
class RunInputs:
    """What every process of a run needs: the validated base checkpoint and adapters and the mask's
    module groups — no model and no data (a parallel driver holds only this; its workers load the rest)."""

    cfg: RunConfig
    base: BaseCheckpoint
    adapters: AdapterSet
    groups: list

    @property
    def task_names(self) -> list[str]:
        return self.adapters.tasks

    def target_layout(self) -> tuple[list[int], list[int]]:
        """Each adapted matrix's transformer layer and mask group (what the cost model needs to know)."""
        targets = self.adapters.targets
        return [t.layer for t in targets], target_groups(targets, self.groups, self.cfg.search.grouping)


def load_inputs(cfg: RunConfig, log: Optional[Callable[[str], None]] = None) -> RunInputs:
    (log or (lambda _msg: None))("checking base model and adapters")
    base = BaseCheckpoint(cfg.base)
    adapters = load_adapter_set(base, {t.name: t.adapter for t in cfg.tasks}, layer_regex=cfg.layer_regex)
    return RunInputs(cfg, base, adapters, group_labels(adapters.targets, cfg.search.grouping))
