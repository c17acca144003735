"""The machinery on a workspace's live model that every evaluator on it shares: one patcher (it alone knows
what the weights hold and their base values), its merge cache, and the prefix cache of layer outputs."""

from __future__ import annotations

from typing import Optional

import torch

from ..loading.workspace import Workspace
from .cache import MergeCache
from .patch import LivePatcher, parameter_name
from .prefix import PrefixCache, find_layer_list


class LiveModel:
    """`patcher`: one already on this model (two patchers of one model would each believe it holds their
    last mask)."""

    def __init__(self, ws: Workspace, patcher: Optional[LivePatcher] = None):
        self.ws = ws
        self.patcher = patcher or LivePatcher(ws.model, ws.adapters, ws.groups, ws.cfg.search.grouping,
                                              MergeCache(ws.cfg.eval.cache_mb))
        self.layers = self._layer_list()
        budget = ws.cfg.eval.prefix_cache_mb
        self.prefix: Optional[PrefixCache] = PrefixCache(self.layers, budget) if budget > 0 and self.layers else None

    def _layer_list(self) -> Optional[torch.nn.ModuleList]:
        """The ModuleList of transformer layers the adapters live in (None when it cannot be found)."""
        ws = self.ws
        names = dict(ws.model.named_parameters())
        targets = ws.adapters.targets
        found = find_layer_list(ws.model, [parameter_name(names, t.weight) for t in targets], [t.layer for t in targets])
        return found if found is not None and max(t.layer for t in targets) < len(found) else None

    @property
    def n_layers(self) -> int:
        """Transformer layers a forward pass runs (for cost accounting)."""
        if self.layers is not None:
            return len(self.layers)
        config = self.ws.base.config.get("vision_config") or self.ws.base.config
        return int(config.get("num_hidden_layers") or len(self.ws.adapters.layers))


def live_model(ws: Workspace) -> LiveModel:
    """The workspace's one LiveModel (made on first use)."""
    if ws.live is None:
        ws.live = LiveModel(ws)
    return ws.live
