"""Scale (issue 14): the linear-memory CMA-ES switch, and that the paper's faithful setting is untouched.

Below `FULL_COVARIANCE_MAX` modules every CMA-ES strategy must make exactly the pycma call it always made
(the paper's ENMP, bit for bit); above it pycma's diagonal variant keeps memory and time per generation
linear in the number of modules, and the run is told so.
"""

from __future__ import annotations

import time
import tracemalloc
import warnings

import cma
import numpy as np
import pytest
import torch

from enmp.engine.scoring.cache import MergeCache
from enmp.errors import EnmpError
from enmp.masking import decode
from enmp.search import Outcome, ValidationData
from enmp.search import get_strategy
from enmp.search.pycma import FULL_COVARIANCE_MAX, cma_options, evolution_strategy


def fitness(mask: np.ndarray) -> float:
    """A deterministic landscape: pruning the first column helps, anything else hurts a little."""
    return float(2.0 * (~mask[:, 0]).sum() - 0.1 * (~mask).sum())


@pytest.mark.parametrize("shape", [(6, 6), (6, 32), (6, 32 * 7)])  # demo, paper, paper with 7 projections
def test_paper_sizes_ask_exactly_what_pycma_default_asks(shape):
    s = get_strategy("cma")(shape, rho=0.2, seed=3, popsize=16, generations=4)
    ref = cma.CMAEvolutionStrategy(np.full(shape[0] * shape[1], -1.0), 0.5, cma_options(16, 3))
    assert s.es_note == "" and s.es.opts["CMA_diagonal"] is not True
    while not s.done:
        cands, zs = s.ask(), ref.ask()
        assert all(np.array_equal(c.mask, decode(z, 0.2, shape)) and np.array_equal(c.z, z)
                   for c, z in zip(cands, zs))
        fits = [fitness(c.mask) for c in cands]
        s.tell(cands, fits)
        ref.tell(zs, [-f for f in fits])


def test_above_threshold_diagonal_linear_memory_and_cheap():
    shape = (100, 200)  # 20,000 modules: a full covariance would be 3.2 GB per D × D matrix
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.warns(UserWarning, match="diagonal CMA-ES"):
        s = get_strategy("cma")(shape, rho=0.2, seed=1, popsize=8, generations=2)
    cands = s.ask()
    s.tell(cands, [fitness(c.mask) for c in cands])
    cands = s.ask()
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert s.es.opts["CMA_diagonal"] is True and type(s.es.sm).__name__ == "GaussStandardConstant"
    assert "20000 modules" in s.es_note and "diagonal" in s.es_note
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MB traced: not linear in the number of modules"
    assert seconds < 20 and len(cands) == 8 and cands[0].mask.shape == shape


def test_threshold_edge_and_forcing_option():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no note at the threshold itself
        at = get_strategy("cma")((1, FULL_COVARIANCE_MAX), rho=0.2, generations=1)
    assert at.es_note == "" and at.es.opts["CMA_diagonal"] is not True
    with pytest.warns(UserWarning):
        above = get_strategy("cma")((1, FULL_COVARIANCE_MAX + 1), rho=0.2, generations=1)
    assert above.es.opts["CMA_diagonal"] is True
    with pytest.warns(UserWarning, match="search.options.diagonal: true"):
        forced = get_strategy("cma")((6, 6), rho=0.2, generations=1, diagonal=True)
    assert forced.es.opts["CMA_diagonal"] is True
    full = get_strategy("cma")((1, FULL_COVARIANCE_MAX + 1), rho=0.2, generations=1, diagonal=False)
    assert full.es_note == "" and full.es.opts["CMA_diagonal"] is not True


@pytest.mark.parametrize("bad", ["yes", 1, 0, None, 2.0])
def test_bad_diagonal_option(bad):
    with pytest.raises(EnmpError) as e:
        get_strategy("cma")((6, 6), rho=0.2, diagonal=bad)
    assert e.value.where == "search.options.diagonal" and "auto" in e.value.fix


def test_constructor_is_pycma_default_below_threshold():
    a = evolution_strategy(np.full(192, -1.0), 0.5, 16, 7)
    b = cma.CMAEvolutionStrategy(np.full(192, -1.0), 0.5, cma_options(16, 7))
    assert all(np.array_equal(x, y) for x, y in zip(a.ask(), b.ask()))


def test_fast_switches_too():
    shape = (100, 30)  # 3,000 modules
    s = get_strategy("fast")(shape, rho=0.2, seed=1, popsize=8, generations=2)
    full = Outcome(100.0, tuple(np.ones(16, bool) for _ in range(shape[0])), (100.0,) * shape[0])
    with pytest.warns(UserWarning, match="diagonal CMA-ES"):
        s.start(ValidationData((16,) * shape[0], 0, full))
    assert s.es.opts["CMA_diagonal"] is True and len(s.ask()) == 8


def test_cmawm_refuses_what_it_cannot_hold():
    with pytest.raises(EnmpError) as e:
        get_strategy("cmawm")((100, 80), rho=0.2)
    assert "cma" in e.value.fix and "8000" in str(e.value)


def test_merge_cache_counts_key_bytes_apart_and_stays_bounded():
    cache = MergeCache(budget_mb=64 * 4096 / 2**20)  # 64 values of 1,024 floats
    for i in range(500):  # keys as the patcher makes them: 100 tasks' kept set per matrix
        kept = tuple(t for t in range(100) if t != i % 100)
        cache.get_or_compute(("w", kept, "ta", (i,)), lambda: torch.zeros(1024))
    stats = cache.stats()
    assert len(cache) == 64 and cache.bytes == 64 * 4096 and cache.misses == 500
    assert 0 < stats["key_mb"] * 2**20 < 64 * 2048  # ≈ 0.9 kB per 100-task key, kept apart from the budget
    cache.clear()
    assert cache.stats()["key_mb"] == 0
