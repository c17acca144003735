"""Engine exactness: in-place patching, restore, merge cache and fitness cache agree with fresh merges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enmp.config import load_config
from enmp.engine.scoring.cache import MergeCache
from enmp.engine.scoring.local import LocalEvaluator
from enmp.engine.scoring.live import live_model
from enmp.engine.outputs.export import merged_deltas
from enmp.engine.scoring.patch import LivePatcher
from enmp.engine.loading.workspace import build_workspace
from enmp.masking import Mask
from enmp.merging import MergeParams, resolved
from tiny_runs import make_run

METHODS = {
    "ta": MergeParams(lam=0.7),
    "ties": MergeParams(lam=1.1, top_k=80),
    "dare": MergeParams(lam=0.9, drop_rate=0.3, seed=3),
    "dare_ties": MergeParams(lam=1.1, top_k=80, drop_rate=0.2, seed=5),
    "tsv": MergeParams(lam=0.6),
    "knots": MergeParams(lam=1.1, top_k=90),
    "core_space": MergeParams(lam=0.5),
    "iso_c": MergeParams(lam=0.4),
    "core_space+iso": MergeParams(lam=0.9, iso=True),
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    path = make_run(tmp_path_factory.mktemp("engine"), "bert", n_tasks=3, n_val=16, n_test=16)
    return build_workspace(load_config(path))


def _masks(shape, n, seed=0):
    rng = np.random.default_rng(seed)
    out = [np.ones(shape, bool), np.zeros(shape, bool)]
    out += [rng.random(shape) > 0.35 for _ in range(n)]
    return out


def _snapshot(patcher):
    return [p.detach().clone() for p in patcher.params]


@pytest.mark.parametrize("name", list(METHODS))
def test_patch_matches_fresh_merge_and_restores_exactly(ws, name):
    method = name.split("+")[0]
    params = resolved(method, METHODS[name])
    patcher = LivePatcher(ws.model, ws.adapters, ws.groups, "layer", MergeCache(64))
    base = _snapshot(patcher)
    shape = (len(ws.tasks), len(ws.groups))
    for keep in _masks(shape, 6):
        patcher.apply(keep, method, params)
        fresh = merged_deltas(ws.adapters, Mask(ws.task_names, ws.groups, keep), "layer", method, params)
        for p, b, t in zip(patcher.params, base, patcher.targets):
            expected = (b.float() + fresh[t.weight]).to(p.dtype)
            assert torch.equal(p.detach(), expected), (name, t.weight)
    patcher.restore()
    for p, b in zip(patcher.params, base):
        assert torch.equal(p.detach(), b)


@pytest.mark.parametrize("budget_mb, once", [(64, True), (0, False)])
def test_per_task_steps_run_once_per_task_and_matrix(ws, monkeypatch, budget_mb, once):
    """DARE's drop and TIES' trim of one task's update do not depend on the kept set: the patcher keeps each
    (task, matrix) result in the merge cache (bit for bit what a fresh merge gives: the test above), so many
    candidates run it once; without a cache budget every merge runs it again."""
    from enmp.merging import dare

    calls = []
    trim = dare.trim_top_k
    monkeypatch.setattr(dare, "trim_top_k", lambda x, pct: calls.append(1) or trim(x, pct))
    patcher = LivePatcher(ws.model, ws.adapters, ws.groups, "layer", MergeCache(budget_mb))
    params = resolved("dare_ties", METHODS["dare_ties"])
    for keep in _masks((len(ws.tasks), len(ws.groups)), 6):  # the full mask first: every task in every matrix
        patcher.apply(keep, "dare_ties", params)
    patcher.restore()
    every = len(ws.tasks) * len(patcher.targets)
    assert (len(calls) == every) if once else (len(calls) > 2 * every)


def test_all_pruned_layer_is_bit_identical_to_base(ws):
    patcher = LivePatcher(ws.model, ws.adapters, ws.groups, "layer")
    base = _snapshot(patcher)
    keep = np.ones((len(ws.tasks), len(ws.groups)), bool)
    keep[:, 0] = False
    patcher.apply(keep, "tsv", MergeParams(lam=0.5))
    for p, b, t in zip(patcher.params, base, patcher.targets):
        assert torch.equal(p.detach(), b) == (t.layer == ws.groups[0])
    patcher.restore()


def test_only_changed_matrices_are_rewritten(ws):
    patcher = LivePatcher(ws.model, ws.adapters, ws.groups, "layer")
    shape = (len(ws.tasks), len(ws.groups))
    full = np.ones(shape, bool)
    per_layer = sum(t.layer == ws.groups[0] for t in patcher.targets)
    assert patcher.apply(full, "ta", MergeParams(lam=0.5)) == len(patcher.targets)
    assert patcher.apply(full, "ta", MergeParams(lam=0.5)) == 0
    keep = full.copy()
    keep[1, 0] = False
    assert patcher.apply(keep, "ta", MergeParams(lam=0.5)) == per_layer
    assert patcher.apply(keep, "ta", MergeParams(lam=0.6)) == len(patcher.targets)  # new spec: all change
    patcher.restore()


def test_no_drift_over_many_candidates(ws):
    patcher = LivePatcher(ws.model, ws.adapters, ws.groups, "layer", MergeCache(0))
    base = _snapshot(patcher)
    shape = (len(ws.tasks), len(ws.groups))
    first = np.ones(shape, bool)
    patcher.apply(first, "ties", MergeParams(lam=1.0, top_k=80))
    after_first = _snapshot(patcher)
    for keep in _masks(shape, 40, seed=1):
        patcher.apply(keep, "ties", MergeParams(lam=1.0, top_k=80))
    patcher.apply(first, "ties", MergeParams(lam=1.0, top_k=80))
    assert all(torch.equal(p.detach(), a) for p, a in zip(patcher.params, after_first))
    patcher.restore()
    assert all(torch.equal(p.detach(), b) for p, b in zip(patcher.params, base))


def test_merge_cache_lru_budget_and_hits():
    cache = MergeCache(budget_mb=3 * 4 * 1024 / 2**20)  # room for three 1024-float tensors
    calls = []

    def make(i):
        def compute():
            calls.append(i)
            return torch.full((1024,), float(i))
        return compute

    for i in range(3):
        cache.get_or_compute(i, make(i))
    cache.get_or_compute(0, make(0))  # hit, 0 becomes most recent
    cache.get_or_compute(3, make(3))  # evicts 1 (least recent)
    assert calls == [0, 1, 2, 3] and len(cache) == 3 and cache.bytes <= cache.budget
    cache.get_or_compute(1, make(1))
    assert calls[-1] == 1 and cache.hits == 1
    assert torch.equal(cache.get_or_compute(3, make(99)), torch.full((1024,), 3.0))


@pytest.mark.parametrize("method", ["ta", "dare_ties", "knots"])
def test_cached_and_uncached_evaluators_agree(ws, method):
    params = METHODS[method]
    cached = LocalEvaluator(ws, method, params, cache_mb=256)
    uncached = LocalEvaluator(ws, method, params)
    uncached.patcher = LivePatcher(ws.model, ws.adapters, ws.groups, "layer", MergeCache(0))
    uncached.cache = uncached.patcher.cache
    shape = cached.shape
    for keep in _masks(shape, 4, seed=2):
        a, b = cached.evaluate(keep), uncached.evaluate(keep)
        assert a.scores == b.scores and a.fitness == b.fitness
    again = cached.evaluate(_masks(shape, 4, seed=2)[3])
    assert again.cached
    assert cached.forward_evaluations == len({m.tobytes() for m in _masks(shape, 4, seed=2)})
    # back to the full kept set of layer 0 after other sets: served from the merge cache
    probe = np.ones(shape, bool)
    probe[0, -1] = False
    cached.patcher.restore()  # the live model now holds the base weights everywhere
    hits = cached.cache.hits
    assert cached.evaluate(probe).scores == uncached.evaluate(probe).scores
    cached.patcher.restore()
    assert cached.cache.hits > hits and uncached.cache.hits == 0
    cached.patcher.restore()
    uncached.patcher.restore()


def test_expert_scores_use_each_adapter_alone(ws):
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=0.3))
    expert = ev.compute_expert("val")
    assert set(expert) == set(ws.task_names)
    # the expert of task 0 equals a TA merge at λ=1 with only task 0 kept, scored on task 0
    keep = np.zeros(ev.shape, bool)
    keep[0] = True
    ev2 = LocalEvaluator(ws, "ta", MergeParams(lam=1.0))
    assert ev2.scores(keep, "val", tasks=[0])[ws.task_names[0]] == expert[ws.task_names[0]]
    ev.patcher.restore()
    ev2.patcher.restore()


@pytest.mark.parametrize("family", ["bert", "llama", "clip"])
def test_prefix_cache_is_exact_and_skips_layers(tmp_path, family):
    cfg = load_config(make_run(tmp_path, family, n_tasks=3, n_val=12, n_test=8))
    plain_cfg = cfg.model_copy(deep=True)
    plain_cfg.eval.prefix_cache_mb = 0
    fast, plain = build_workspace(cfg), build_workspace(plain_cfg)
    assert live_model(fast).prefix is not None and live_model(plain).prefix is None
    a, b = LocalEvaluator(fast, "ties", MergeParams(lam=0.8, top_k=80)), LocalEvaluator(plain, "ties", MergeParams(lam=0.8, top_k=80))
    shape = a.shape
    masks = _masks(shape, 10, seed=3)
    last = np.ones(shape, bool)
    last[:, -1] = False  # shares every layer but the last with the full merge
    for keep in masks + [last]:
        assert a.scores(keep, "val") == b.scores(keep, "val")
    assert live_model(fast).prefix.layers_skipped > 0
    a.patcher.restore()
    b.patcher.restore()
