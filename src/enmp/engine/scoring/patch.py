"""One live model, patched in place: each adapted weight holds W + ΔW(kept set) for the current mask.

Only matrices whose kept set (or merge spec) changed since the last candidate are rewritten, and every
rewrite starts from a saved copy of the base weight, so patch → unpatch is bit-exact and nothing drifts
over thousands of candidates.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ...adapters.types import AdapterSet, TargetMatrix
from ...errors import EnmpError
from ...masking import target_groups
from ...merging import MergeParams, merge_kept
from .accounting import layer_signature
from .cache import MergeCache


def find_parameter(model: torch.nn.Module, weight_name: str) -> torch.nn.Parameter:
    """The model parameter for a checkpoint tensor name, tolerating a class prefix on either side."""
    params = dict(model.named_parameters())
    return params[parameter_name(params, weight_name)]


def parameter_name(names, weight_name: str) -> str:
    if weight_name in names:
        return weight_name
    hits = [n for n in names if weight_name.endswith("." + n) or n.endswith("." + weight_name)]
    if len(hits) == 1:
        return hits[0]
    raise EnmpError(f"the loaded model has no parameter matching '{weight_name}'",
                    fix="load the base with the same architecture the adapters were trained on")


class LivePatcher:
    def __init__(self, model: torch.nn.Module, adapters: AdapterSet, groups: Sequence, grouping: str,
                 cache: Optional[MergeCache] = None):
        self.model, self.adapters = model, adapters
        self.cache = cache if cache is not None else MergeCache(0)  # an empty cache is falsy
        self.targets: list[TargetMatrix] = list(adapters.targets)
        self.group_index = target_groups(self.targets, groups, grouping)
        self.params = [find_parameter(model, t.weight) for t in self.targets]
        for p, t in zip(self.params, self.targets):
            if tuple(p.shape) != tuple(t.shape):
                raise EnmpError(f"model parameter for {t.weight} has shape {tuple(p.shape)}, adapters expect "
                                f"{t.shape}")
        self.base = [p.detach().clone() for p in self.params]
        # a float32 weight on the CPU takes base + ΔW in one kernel, written straight into it
        self._add_in_place = [p.dtype == torch.float32 and p.device.type == "cpu" for p in self.params]
        self._applied: list[tuple] = [()] * len(self.targets)  # () = base weight
        self.rewrites = 0
        # (spec, keep, its bytes) the weights hold: the later jobs of a candidate skip the loop
        self._last: Optional[tuple] = None
        self._signature: Optional[list] = None

    def delta(self, i: int, kept: tuple[int, ...], params: MergeParams, spec: tuple) -> torch.Tensor:
        """The merged ΔW of matrix i for `kept`; `spec` = (method, params.cache_key())."""
        target, method = self.targets[i], spec[0]

        def per_task(task: int, compute) -> torch.Tensor:  # a method's own per-task step (trim, drop), kept once
            return self.cache.get_or_compute((target.weight, task, spec), compute)

        # Merge math runs on the CPU in float32/float64 whatever the eval device and dtype.
        return self.cache.get_or_compute((target.weight, kept, *spec), lambda: merge_kept(
            method, self.adapters.deltas(target), kept, params, target.shape, per_task_cache=per_task))

    def layer_signature(self, n_layers: int) -> list[tuple]:
        """What each layer position currently holds (its matrices' kept sets and merge spec)."""
        if self._signature is None or len(self._signature) != n_layers:
            if self._last is None:
                raise RuntimeError("no complete patch applied: the layers' contents are unknown")
            spec, keep, _ = self._last
            self._signature = layer_signature([t.layer for t in self.targets], self.group_index, keep, spec, n_layers)
        return self._signature

    @torch.no_grad()
    def apply(self, keep: np.ndarray, method: str, params: MergeParams) -> int:
        """Patch the model to the merge of `keep` (T × G bools); returns how many matrices changed.

        `params` are taken as given (the evaluator resolved them once); `merge` fills a default inner method.
        """
        spec = (method, params.cache_key())
        keep_bytes = keep.tobytes()  # every task of a candidate asks again: a bytes compare is the cheapest check
        if self._last is not None and self._last[0] == spec and self._last[2] == keep_bytes \
                and self._last[1].shape == keep.shape:
            return 0
        self._last = self._signature = None  # until the loop completes (a failed merge leaves it half-applied)
        changed = 0
        by_group = [tuple(np.flatnonzero(col).tolist()) for col in keep.T]
        for i, param in enumerate(self.params):
            kept = by_group[self.group_index[i]]
            state = (kept, spec) if kept else ()
            if state == self._applied[i]:
                continue
            if kept:
                d = self.delta(i, kept, params, spec)
                if self._add_in_place[i]:
                    torch.add(self.base[i], d, out=param.data)
                else:
                    param.copy_((self.base[i].to(torch.float32) + d.to(param.device)).to(param.dtype))
            else:
                param.copy_(self.base[i])
            self._applied[i] = state
            changed += 1
        self.rewrites += changed
        self._last = (spec, keep.copy(), keep_bytes)
        return changed

    @torch.no_grad()
    def restore(self) -> None:
        """Put every adapted weight back to its exact base value."""
        for i, param in enumerate(self.params):
            if self._applied[i] != ():
                param.copy_(self.base[i])
                self._applied[i] = ()
        self._last = self._signature = None
