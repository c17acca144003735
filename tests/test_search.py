"""Search strategies on a synthetic mask problem with a known optimum (no models involved).

T = 6 tasks × G = 6 groups, budget ⌊0.2·36⌋ = 7. Five hidden 'negative' modules add +1 each when pruned;
pruning any other module costs −1. The best mask prunes exactly the negative set (fitness 85).
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from enmp.errors import EnmpError
from enmp.search import Candidate, Strategy, available_strategies, get_strategy

SHAPE = (6, 6)
BUDGET = 7
NEG = np.zeros(36, dtype=bool)
NEG[np.random.default_rng(2024).choice(36, 5, replace=False)] = True
NEG = NEG.reshape(SHAPE)
OPTIMUM = 85.0


def fitness(mask: np.ndarray) -> float:
    pruned = ~mask
    return 80.0 + float((pruned & NEG).sum()) - float((pruned & ~NEG).sum())


def drive(s: Strategy, fit=fitness, generations: int | None = None) -> list[tuple[bytes, float]]:
    """Run like the runner does; return the (mask bits, fitness) history."""
    hist = []
    while not s.done and (generations is None or len(hist) < generations):
        cands = s.ask()
        fits = [fit(c.mask) for c in cands]
        s.tell(cands, fits)
        hist.append([(c.mask.tobytes(), f) for c, f in zip(cands, fits)])
    return hist


def replay(s: Strategy, hist) -> Strategy:
    """Restore a strategy the way `--resume` does: ask again, check the masks, tell the logged fitnesses."""
    for gen in hist:
        cands = s.ask()
        assert [c.mask.tobytes() for c in cands] == [m for m, _ in gen]
        s.tell(cands, [f for _, f in gen])
    return s


def make(name: str, shape=SHAPE, **kw) -> Strategy:
    return get_strategy(name)(shape, **kw)


@pytest.fixture(scope="module")
def cma_run():
    s = make("cma", seed=1)
    return s, drive(s)


# ---------------------------------------------------------------------- registry and settings
def test_registry():
    assert set(available_strategies()) == {"cma", "cmawm", "crossfit", "fast", "greedy", "none", "random", "stepwise"}
    with pytest.raises(EnmpError, match="unknown search strategy"):
        get_strategy("evolution")


@pytest.mark.parametrize("name", ["cma", "random", "greedy", "none", "cmawm"])
@pytest.mark.parametrize("bad,message", [
    ({"rho": 0.0}, "search.rho: rho must be a number in (0, 1), got 0.0"),
    ({"rho": 1.0}, "search.rho: rho must be a number in (0, 1), got 1.0"),
    ({"rho": -0.1}, "search.rho: rho must be a number in (0, 1), got -0.1"),
    ({"rho": float("nan")}, "search.rho: rho must be a number in (0, 1), got nan"),
    ({"rho": True}, "search.rho: rho must be a number in (0, 1), got True"),
    ({"popsize": 1}, "search.popsize: popsize must be an integer ≥ 2, got 1"),
    ({"generations": 0}, "search.generations: generations must be an integer ≥ 1, got 0"),
    ({"seed": -1}, "search.seed: seed must be an integer ≥ 0, got -1"),
    ({"seed": 1.5}, "search.seed: seed must be an integer ≥ 0, got 1.5"),
    ({"nonsense": 3}, "search.options: search '{name}' has no option(s) nonsense"),
])
def test_bad_settings(name, bad, message):
    with pytest.raises(EnmpError, match=re.escape(message.replace("{name}", name))):
        make(name, **bad)


@pytest.mark.parametrize("name,kw,message", [
    ("cma", {"shape": (0, 3)}, "mask shape must be (tasks ≥ 1, groups ≥ 1), got (0, 3)"),
    ("cma", {"shape": (2, 2)}, "ρ = 0.2 allows no pruned module among 4 (⌊ρ·T·G⌋ = 0)"),  # ⌊0.2·4⌋ = 0
    ("cma", {"sigma0": 0.0}, "search.options.sigma0: sigma0 must be a number > 0, got 0.0"),
    ("cma", {"sigma0": float("inf")}, "sigma0 must be a number > 0, got inf"),
    ("cma", {"mean0": [0.0, 1.0]}, "mean0 must be a finite number or 36 finite numbers"),
    ("random", {"n_prune": 37}, "n_prune = 37 exceeds the 36 modules"),
    ("random", {"n_prune": -1}, "n_prune must be an integer ≥ 0 or null, got -1"),
    ("greedy", {"shape": (2, 2)}, "ρ = 0.2 allows no pruned module among 4"),
    ("cmawm", {"mean0": -1.0}, "mean0 must be a number in [0, 1] (or a list of them), got -1.0"),
    ("cmawm", {"sigma0": -0.3}, "sigma0 must be a number > 0, got -0.3"),
])
def test_bad_strategy_options(name, kw, message):
    with pytest.raises(EnmpError, match=re.escape(message)):
        make(name, **kw)


def test_none_needs_no_budget():
    s = make("none", shape=(1, 1))
    assert drive(s) == [[(np.ones((1, 1), bool).tobytes(), 80.0)]]


# ---------------------------------------------------------------------- ENMP (cma)
def test_cma_starts_from_full_merge():
    first = make("cma", seed=1).ask()
    assert len(first) == 16
    n_pruned = [int((~c.mask).sum()) for c in first]
    assert n_pruned.count(0) >= 4 and np.mean(n_pruned) < 1.5
    assert all(c.z.shape == (36,) and c.mask.dtype == bool and c.mask.shape == SHAPE for c in first)


def test_cma_finds_negative_set_within_budget(cma_run):
    s, hist = cma_run
    assert s.done and s.generation == 60 and len(hist) == 60
    assert s.best_fitness == OPTIMUM
    np.testing.assert_array_equal(~s.best.mask, NEG)
    assert all(np.frombuffer(m, bool).size - np.frombuffer(m, bool).sum() <= BUDGET
               for gen in hist for m, _ in gen)


def test_cma_deterministic_per_seed(cma_run):
    _, hist = cma_run
    np.random.seed(12345)  # numpy's global generator must not matter
    np.random.rand(7)
    assert drive(make("cma", seed=1), generations=8) == hist[:8]
    assert drive(make("cma", seed=2), generations=3) != hist[:3]
    assert drive(make("cma", seed=0), generations=2) == drive(make("cma", seed=0), generations=2)


def test_cma_replay_is_bit_identical(cma_run):
    _, hist = cma_run
    np.random.rand(3)
    s = replay(make("cma", seed=1), hist[:5])
    assert s.generation == 5 and hist[:5] + drive(s) == hist


def test_replay_reproduces_the_next_ask():
    s = make("cma", seed=3)
    told = drive(s, generations=2)
    asked = s.ask()
    t = replay(make("cma", seed=3), told)
    again = t.ask()
    assert [c.mask.tobytes() for c in again] == [c.mask.tobytes() for c in asked]
    assert all(np.array_equal(a.z, b.z) for a, b in zip(asked, again))
    s.tell(asked, [fitness(c.mask) for c in asked])
    t.tell(again, [fitness(c.mask) for c in again])
    assert [c.mask.tobytes() for c in s.ask()] == [c.mask.tobytes() for c in t.ask()]


def test_failed_candidates_never_win():
    def flaky(mask):
        return float("nan") if mask[0, 0] else -math.inf if (~mask).sum() == 0 else fitness(mask)

    s = make("cma", seed=1, generations=6, mean0=0.3)
    drive(s, fit=flaky)
    assert s.done and s.best is not None and math.isfinite(s.best_fitness)
    assert not s.best.mask[0, 0] and (~s.best.mask).sum() > 0

    s = make("cma", seed=1, generations=2)
    drive(s, fit=lambda m: float("inf"))  # +inf is as broken as NaN: treated as failed
    assert s.best is None and s.best_fitness == -math.inf


# ---------------------------------------------------------------------- protocol
def test_protocol_errors_and_idempotent_ask():
    s = make("random", seed=1, generations=1)
    with pytest.raises(RuntimeError):
        s.tell([], [])
    a, b = s.ask(), s.ask()
    assert [c.mask.tobytes() for c in a] == [c.mask.tobytes() for c in b]
    with pytest.raises(ValueError):
        s.tell(a[:-1], [0.0] * (len(a) - 1))
    with pytest.raises(ValueError):
        s.tell(a[::-1], [0.0] * len(a))
    s.tell(a, [0.0] * len(a))
    assert s.done and s.best.mask.tobytes() == a[0].mask.tobytes()  # ties keep the earlier candidate
    with pytest.raises(RuntimeError):
        s.ask()


@pytest.mark.parametrize("name", ["cma", "cmawm", "random", "greedy", "none"])
def test_every_strategy_resumes_by_replaying_json_fitnesses(name):
    """Failures (-inf, NaN) and floats survive the JSON journal exactly, so any prefix replays bit-identically."""
    def flaky(mask):
        return float("nan") if not mask[0, 0] else -math.inf if not mask[1, 1] else fitness(mask) + 1 / 3

    kw = {"generations": 6, "popsize": 5} if name not in ("greedy", "none") else {}
    ref = make(name, seed=2, **kw)
    hist = drive(ref, fit=flaky)
    asked = [[m for m, _ in gen] for gen in hist]
    logged = [[(m, json.loads(json.dumps(f))) for m, f in gen] for gen in hist]
    for cut in range(len(hist) + 1):
        s = replay(make(name, seed=2, **kw), logged[:cut])
        assert asked[:cut] + [[m for m, _ in gen] for gen in drive(s, fit=flaky)] == asked
        assert s.best_fitness == ref.best_fitness and s.best.mask.tobytes() == ref.best.mask.tobytes()


# ---------------------------------------------------------------------- baselines
def test_random_prunes_exactly_n_prune():
    s = make("random", seed=4, generations=3, popsize=5)
    hist = drive(s)
    assert [len(g) for g in hist] == [5, 5, 5]
    assert {36 - int(np.frombuffer(m, bool).sum()) for g in hist for m, _ in g} == {BUDGET}
    assert drive(make("random", seed=4, generations=3, popsize=5)) == hist
    s = make("random", seed=4, generations=2, n_prune=3)
    assert all(int((~c.mask).sum()) == 3 for c in s.ask())


def test_greedy_prunes_positive_gain_modules():
    s = make("greedy")
    probes = s.ask()
    assert len(probes) == 37 and probes[0].tag == "full" and all(c.tag == "probe" for c in probes[1:])
    assert all(int((~c.mask).sum()) == 1 for c in probes[1:])
    s.tell(probes, [fitness(c.mask) for c in probes])
    (final,) = s.ask()
    assert final.tag == "final"
    np.testing.assert_array_equal(~final.mask, NEG)
    s.tell([final], [fitness(final.mask)])
    assert s.done and s.n_generations == 2 and s.best_fitness == OPTIMUM


def test_greedy_caps_by_budget_and_skips_failures():
    gain = np.arange(36, dtype=float).reshape(SHAPE) - 20  # modules 21..35 help, 35 the most

    def fit(mask):
        return float("nan") if not mask[5, 5] else 50.0 + float(gain[~mask].sum())

    s = make("greedy")
    drive(s, fit=fit, generations=1)
    (final,) = s.ask()
    assert np.flatnonzero(~final.mask.ravel()).tolist() == list(range(28, 35))  # 35 failed; 7 largest next


def test_none_is_one_full_mask():
    s = make("none")
    (c,) = s.ask()
    assert c.mask.all() and c.mask.shape == SHAPE and c.z is None
    s.tell([c], [70.0])
    assert s.done and s.best_fitness == 70.0


# ---------------------------------------------------------------------- sample-efficient option
def test_cmawm_finds_negative_set_and_resumes():
    s = make("cmawm", seed=1)
    first = s.ask()
    assert np.mean([(~c.mask).sum() for c in first]) < 3  # starts near the full merge
    hist = [[(c.mask.tobytes(), fitness(c.mask)) for c in first]]
    s.tell(first, [f for _, f in hist[0]])
    hist += drive(s, generations=49)
    rest = drive(s)
    assert s.best_fitness == OPTIMUM
    np.testing.assert_array_equal(~s.best.mask, NEG)
    assert all(36 - np.frombuffer(m, bool).sum() <= BUDGET for g in hist + rest for m, _ in g)
    assert drive(replay(make("cmawm", seed=1), hist)) == rest
    assert isinstance(first[0], Candidate)
