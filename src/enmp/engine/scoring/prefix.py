"""Reuse the hidden states of layers that a candidate shares with an earlier one.

Layer l's output depends only on the inputs and the weights of layers 0..l. Candidates of one CMA-ES
population mostly share their first layers' kept sets (they differ in a few modules), so the output of the
longest shared prefix is taken from a cache and only the layers above it run. The same batches go through
the same kernels, so scores are bit-identical to a full forward pass (tests check this).

Works for any model whose transformer layers sit in one nn.ModuleList and map hidden states to hidden
states (BERT, Llama, CLIP in transformers ≥ 5); elsewhere it switches itself off.
"""

from __future__ import annotations

import types
from collections import OrderedDict
from typing import Optional, Sequence

import torch


def find_layer_list(model: torch.nn.Module, param_names: Sequence[str],
                    layers: Sequence[int]) -> Optional[torch.nn.ModuleList]:
    """The ModuleList holding the transformer layers that the adapted parameters live in."""
    found = None
    for name, layer in zip(param_names, layers):
        parts = name.split(".")
        container = None
        for k, part in enumerate(parts[:-1]):
            if part == str(layer) and k > 0:
                mod = model.get_submodule(".".join(parts[:k]))
                if isinstance(mod, torch.nn.ModuleList):
                    container = mod
        if container is None or (found is not None and container is not found):
            return None
        found = container
    return found


class PrefixCache:
    """LRU of per-batch layer outputs keyed by (prefix signature, layer) within a memory budget."""

    def __init__(self, layer_list: torch.nn.ModuleList, budget_mb: float):
        self.layers = layer_list
        self.budget = int(budget_mb * 2**20)
        self.entries: OrderedDict[tuple, dict] = OrderedDict()
        self.bytes = 0
        self.layers_skipped = self.layers_run = 0
        self.layer_rows = 0  # rows (sequences or images) × layers actually run: the work done
        self._plan: Optional[dict] = None
        self._sig: Optional[Sequence] = None
        self._chain: list[int] = []
        for i, layer in enumerate(layer_list):
            layer.forward = types.MethodType(self._make_forward(i, layer.forward), layer)

    def _make_forward(self, index: int, original):
        cache = self

        def forward(_self, *args, **kwargs):
            plan = cache._plan
            if plan is None:
                return original(*args, **kwargs)
            if index <= plan["start"]:
                if index == plan["start"]:
                    cache.layers_skipped += plan["start"] + 1
                    return plan["cached"][plan["batch"]].clone()
                return args[0]  # skipped: the layer above it is skipped too, so this value is never used
            out = original(*args, **kwargs)
            cache.layers_run += 1
            cache.layer_rows += int(args[0].shape[0]) if args and isinstance(args[0], torch.Tensor) else 0
            if isinstance(out, torch.Tensor) and index < len(cache.layers) - 1:
                plan["record"].setdefault(index, {})[plan["batch"]] = out.detach().clone()
            return out

        return forward

    def begin(self, split: str, task: int, signature: Sequence) -> None:
        """Plan one task's evaluation: find the longest cached prefix of `signature` (one entry per layer).

        Keys hold a chain hash of the prefix (O(L) per candidate, not O(L²)); a hit is verified against the
        stored prefix, so a hash collision can never hand back another prefix's hidden states."""
        if signature is not self._sig:
            self._sig, chain, h = signature, [], 0
            for layer in signature:
                h = hash((h, layer))
                chain.append(h)
            self._chain = chain
        keys = [(split, task, i, h) for i, h in enumerate(self._chain)]
        start, cached = -1, None
        for i in range(len(keys) - 2, -1, -1):
            hit = self.entries.get(keys[i])
            if hit is not None and hit[0] == tuple(signature[: i + 1]):
                self.entries.move_to_end(keys[i])
                start, cached = i, hit[1]
                break
        self._plan = {"start": start, "cached": cached, "keys": keys, "record": {}, "batch": 0,
                      "signature": signature}

    def set_batch(self, batch: int) -> None:
        self._plan["batch"] = batch

    def commit(self) -> None:
        """Store what this evaluation computed (only complete layers: every batch ran)."""
        plan, self._plan = self._plan, None
        if plan is None:
            return
        n_batches = plan["batch"] + 1
        for index, outputs in plan["record"].items():
            key = plan["keys"][index]
            if len(outputs) != n_batches or key in self.entries:
                continue
            size = sum(t.numel() * t.element_size() for t in outputs.values())
            if size > self.budget:
                continue
            self.entries[key] = (tuple(plan["signature"][: index + 1]), outputs)
            self.bytes += size
            while self.bytes > self.budget:
                _, (_, old) = self.entries.popitem(last=False)
                self.bytes -= sum(t.numel() * t.element_size() for t in old.values())

    def abort(self) -> None:
        self._plan = None

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0
