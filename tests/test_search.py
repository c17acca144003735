"""Search strategies on a synthetic mask problem with a known optimum (no models involved).

T = 6 tasks × G = 6 groups, budget ⌊0.2·36⌋ = 7. Five hidden 'negative' modules add +1 each when pruned;
pruning any other module costs −1. The best mask prunes exactly the negative set (fitness 85).
"""

from __future__ import annotations

import math
import pickle

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


def make(name: str, shape=SHAPE, **kw) -> Strategy:
    return get_strategy(name)(shape, **kw)


@pytest.fixture(scope="module")
def cma_run():
    s = make("cma", seed=1)
    return s, drive(s)


# ---------------------------------------------------------------------- registry and settings
def test_registry():
    assert set(available_strategies()) == {"cma", "cmawm", "greedy", "none", "random"}
    with pytest.raises(EnmpError, match="unknown search strategy"):
        get_strategy("evolution")


@pytest.mark.parametrize("name", ["cma", "random", "greedy", "none", "cmawm"])
@pytest.mark.parametrize("bad", [
    {"rho": 0.0}, {"rho": 1.0}, {"rho": -0.1}, {"rho": float("nan")}, {"rho": True},
    {"popsize": 1}, {"generations": 0}, {"seed": -1}, {"seed": 1.5}, {"nonsense": 3},
])
def test_bad_settings(name, bad):
    with pytest.raises(EnmpError):
        make(name, **bad)


@pytest.mark.parametrize("name,kw", [
    ("cma", {"shape": (0, 3)}), ("cma", {"shape": (2, 2)}),  # (2, 2): ⌊0.2·4⌋ = 0 prunable modules
    ("cma", {"sigma0": 0.0}), ("cma", {"sigma0": float("inf")}), ("cma", {"mean0": [0.0, 1.0]}),
    ("random", {"n_prune": 37}), ("random", {"n_prune": -1}), ("greedy", {"shape": (2, 2)}),
    ("cmawm", {"mean0": -1.0}), ("cmawm", {"sigma0": -0.3}),
])
def test_bad_strategy_options(name, kw):
    with pytest.raises(EnmpError):
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


def test_cma_resume_is_bit_identical(cma_run):
    _, hist = cma_run
    s = make("cma", seed=1)
    part = drive(s, generations=5)
    state = s.state_dict()
    del s
    np.random.rand(3)
    s = Strategy.from_state(state)
    assert s.generation == 5 and get_strategy("cma").from_state(state).generation == 5
    assert part + drive(s) == hist


def test_resume_between_ask_and_tell():
    s = make("cma", seed=3)
    drive(s, generations=2)
    asked = s.ask()
    t = Strategy.from_state(s.state_dict())
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


def test_from_state_rejects_foreign_data():
    with pytest.raises(EnmpError):
        Strategy.from_state(b"not a pickle")
    with pytest.raises(EnmpError):
        Strategy.from_state(pickle.dumps({"x": 1}))
    with pytest.raises(EnmpError, match="'none' search"):
        get_strategy("cma").from_state(make("none").state_dict())


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
    state = s.state_dict()
    rest = drive(s)
    assert s.best_fitness == OPTIMUM
    np.testing.assert_array_equal(~s.best.mask, NEG)
    assert all(36 - np.frombuffer(m, bool).sum() <= BUDGET for g in hist + rest for m, _ in g)
    assert drive(Strategy.from_state(state)) == rest
    assert isinstance(first[0], Candidate)
