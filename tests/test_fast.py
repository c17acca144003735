"""`fast`: paired statistics and the strategy on a synthetic per-example problem (no models involved).

Each task has N validation examples. Pruning one of the hidden 'negative' modules makes some wrong
examples right; pruning any other module makes some right examples wrong. So the full merge is beaten
exactly by masks that prune negative modules, and every score is per example, as the engine reports them.
"""

from __future__ import annotations

import numpy as np
import pytest

from enmp.errors import EnmpError
from enmp.masking import keep_from_str, keep_to_str
from enmp.search import Outcome, Subset, ValidationData, get_strategy
from enmp.search.evidence import Evidence, paired_difference
from enmp.search.final_choice import RIDGE, consensus_mask, final_contenders, ridge_effects, surrogate_mask

SHAPE = (4, 5)
EXPERT = 80.0
N = 320  # validation examples per task (8 folds of 40)


def oracle(neg: np.ndarray, seed: int = 0):
    """A mask's outcome on some examples: per task, right/wrong per example, deterministic per (mask, example)."""
    rng = np.random.default_rng(seed)
    base = rng.random((SHAPE[0], N)) < 0.7
    fix = rng.random((SHAPE[0] * SHAPE[1], SHAPE[0], N)) < 0.25
    hurt = rng.random((SHAPE[0] * SHAPE[1], SHAPE[0], N)) < 0.08

    def outcome(mask: np.ndarray, examples: Subset | None = None) -> Outcome:
        right = base.copy()
        for i in np.flatnonzero(~mask.ravel()):
            right = right | fix[i] if neg.ravel()[i] else right & ~hurt[i]
        index = examples.index if examples is not None else [np.arange(N)] * SHAPE[0]
        correct = tuple(right[t, ix] for t, ix in enumerate(index))
        return Outcome.from_correct(correct, (EXPERT,) * SHAPE[0])

    return outcome


def started(s, outcome):
    s.start(ValidationData((N,) * SHAPE[0], 0, outcome(np.ones(SHAPE, dtype=bool))))
    return s


def drive(s, outcome):
    """Run like the engine does: each candidate scored on the examples it asks for."""
    if s.data is None:
        started(s, outcome)
    rounds = []
    while not s.done:
        cands = s.ask()
        s.tell(cands, [outcome(c.mask, c.examples) for c in cands])
        rounds.append(cands)
    return rounds


def make(**kw):
    return get_strategy("fast")(SHAPE, rho=0.2, seed=kw.pop("seed", 1), popsize=8, generations=kw.pop("generations", 12),
                                **kw)


NEG = np.zeros(SHAPE, dtype=bool)
NEG[0, 1] = NEG[2, 3] = True


def _ex(c):
    return None if c.examples is None else c.examples.key


# ---------------------------------------------------------------------- paired statistics
def test_paired_margin_is_the_fitness_difference_with_a_paired_standard_error():
    ev = Evidence([6])
    everything = Subset.everything([6])
    ev.add("a", everything, Outcome(0.0, (np.array([1, 1, 0, 1, 0, 1], bool),), (100.0,)))  # expert at 100 %
    ev.add("b", everything, Outcome(0.0, (np.array([1, 0, 0, 1, 0, 1], bool),), (100.0,)))
    mean, se = ev.margin("a", "b", everything)
    assert mean == pytest.approx(ev.fitness("a", everything) - ev.fitness("b", everything)) == pytest.approx(100 / 6)
    d = np.array([0, 100, 0, 0, 0, 0.0])
    assert se == pytest.approx(np.sqrt(d.var(ddof=1) / d.size))
    assert ev.margin("a", "a", everything) == (0.0, 0.0)  # identical predictions: no difference, no noise
    assert paired_difference([d, d]) == pytest.approx((d.mean(), np.sqrt(2 * d.var(ddof=1) / d.size) / 2))


def test_evidence_only_covers_what_was_scored():
    ev = Evidence([10, 10])
    halves = Subset.folds([10, 10], 2, seed=0)
    ev.add("a", halves[0], Outcome(1.0, (np.ones(5, bool), np.zeros(5, bool)), (100.0, 100.0)))
    assert ev.covers("a", halves[0]) and not ev.covers("a", halves[1]) and not ev.covers("b", halves[0])
    ev.add("a", halves[1], Outcome(-np.inf, error="NaN"))  # a failure teaches nothing
    assert not ev.covers("a", halves[1])


def test_folds_partition_every_task_and_are_seeded():
    folds = Subset.folds([10, 7], 3, seed=4)
    for t, n in enumerate([10, 7]):
        assert sorted(np.concatenate([f.index[t] for f in folds]).tolist()) == list(range(n))
    assert [f.key for f in folds] == [f.key for f in Subset.folds([10, 7], 3, seed=4)]
    assert [f.key for f in folds] != [f.key for f in Subset.folds([10, 7], 3, seed=5)]
    assert Subset.union(folds[:2]).without(folds[0]) == folds[1]


# ---------------------------------------------------------------------- the strategy
def _decided(s):
    return s.decide(full_fitness=0.0)


def test_fast_finds_the_negative_modules_and_keeps_them_on_held_out_folds():
    s = make()
    drive(s, oracle(NEG))
    d = _decided(s)
    assert (~d.mask & NEG).sum() >= 1 and (~d.mask & ~NEG).sum() == 0
    assert d.text.startswith("kept the found mask") and d.expected_gain.low < d.expected_gain.value


def test_warm_start_points_the_mean_at_negative_modules():
    s = started(make(generations=1, probe=True), oracle(NEG))
    cands = s.ask()
    s.tell(cands, [oracle(NEG)(c.mask, c.examples) for c in cands])
    mean = s.es.mean.reshape(SHAPE)
    assert (mean[NEG] > 0).all() and (mean[~NEG] < 0).all()
    assert len(cands) == SHAPE[0] * SHAPE[1] and all(c.examples == s.blocks[0] for c in cands)  # one probe each


def test_racing_drops_candidates_that_cannot_beat_the_incumbent():
    s = make(race_z=1.0, stages=3)
    rounds = drive(s, oracle(NEG))
    race = [r for r in rounds if r and r[0].tag == ""]
    first, later = [r for r in race if r[0].examples == s.blocks[0]], [r for r in race if r[0].examples != s.blocks[0]]
    asked_first = sum(len(r) for r in first)
    assert later and sum(len(r) for r in later) < asked_first  # most candidates never see the later folds
    assert all(c.examples != s.confirm for r in race for c in r)  # held-out folds only at the end
    for block in s.blocks:  # the held-out examples are in no racing block
        assert all(not set(h.tolist()) & set(b.tolist()) for h, b in zip(s.confirm.index, block.index))


def test_no_better_mask_returns_the_full_merge_and_says_so():
    s = make()
    drive(s, oracle(np.zeros(SHAPE, dtype=bool)))  # every pruning hurts
    d = _decided(s)
    assert d.mask.all() and d.text.startswith("returned the full merge") and d.expected_gain is None


def test_early_stop_ends_before_the_generation_budget():
    s = make(generations=50, patience=2)
    drive(s, oracle(np.zeros(SHAPE, dtype=bool)))
    assert s.es_generation < 50 and s.stale >= 2


def test_same_seed_same_rounds_and_replay_reproduces_them():
    a, b = make(seed=3), make(seed=3)
    ra, rb = drive(a, oracle(NEG)), drive(b, oracle(NEG))
    assert [[(c.mask.tobytes(), _ex(c)) for c in r] for r in ra] == [[(c.mask.tobytes(), _ex(c)) for c in r] for r in rb]
    assert (_decided(a).mask == _decided(b).mask).all()


@pytest.mark.parametrize("options, match", [
    ({"folds": 2}, "folds must be an integer ≥ 3"),
    ({"folds": 4, "confirm_folds": 2, "stages": 3}, "cannot hold 2 held-out folds and 3 racing stages"),
    ({"race_z": -1.0}, "race_z must be a number ≥ 0"),
    ({"patience": 0}, "patience must be an integer ≥ 1"),
    ({"probe": "yes"}, "probe must be true or false"),
    ({"speed": 2}, "has no option"),
    ({"final": "vote"}, "final must be one of best, consensus, surrogate, union"),
    ({"voters": 0}, "voters must be an integer ≥ 1"),
    ({"confirm_z": -0.5}, "confirm_z must be a number ≥ 0"),
])
def test_bad_options_are_one_clear_error(options, match):
    with pytest.raises(EnmpError, match=match):
        make(**options)


def test_too_few_validation_examples_for_the_folds_is_one_clear_error():
    with pytest.raises(EnmpError, match="5 validation examples cannot fill the 8 folds"):
        make().start(ValidationData((5,) * SHAPE[0], 0, Outcome(1.0, tuple(np.ones(5, bool) for _ in range(4)),
                                                                 (100.0,) * 4)))


def test_replaying_any_prefix_of_rounds_continues_identically():
    """What `--resume` does: a fresh strategy told the journaled rounds asks exactly what the original asked."""
    outcome = oracle(NEG)
    ref = make(seed=2, generations=4)
    rounds = drive(ref, outcome)
    asked = [[(c.mask.tobytes(), _ex(c)) for c in r] for r in rounds]
    for cut in (1, 3, len(rounds) - 1):
        s = started(make(seed=2, generations=4), outcome)
        for r in asked[:cut]:
            cands = s.ask()
            assert [(c.mask.tobytes(), _ex(c)) for c in cands] == r
            s.tell(cands, [outcome(c.mask, c.examples) for c in cands])
        assert asked[:cut] + [[(c.mask.tobytes(), _ex(c)) for c in r] for r in drive(s, outcome)] == asked
        assert (_decided(s).mask == _decided(ref).mask).all() and _decided(s).text == _decided(ref).text


@pytest.mark.parametrize("shape", [(4, 5), (6, 32), (100, 80)])
def test_calibrated_start_prunes_the_asked_number_of_modules_at_any_size(shape):
    s = get_strategy("fast")(shape, rho=0.2, seed=1, popsize=64, generations=2, start_pruned=3)
    s.start(ValidationData((16,) * shape[0], 0, Outcome(100.0, tuple(np.ones(16, bool) for _ in range(shape[0])),
                                                        (100.0,) * shape[0])))
    pruned = [int((~c.mask).sum()) for c in s.ask()]
    assert 2.0 < np.mean(pruned) < 4.0  # cma's mean of −1 would prune ~2 % of the modules: 0.4 … 182


def test_start_pruned_null_keeps_cmas_start_and_bad_values_are_rejected():
    s = make(start_pruned=None)
    assert s.mean_start == -1.0
    for bad in (0, -1, "2", float("nan")):
        with pytest.raises(EnmpError, match="search.options.start_pruned"):
            make(start_pruned=bad)


# ---------------------------------------------------------------------- the final choice
def _keep(*pruned) -> str:
    keep = np.ones(SHAPE, dtype=bool)
    for i in pruned:
        keep.ravel()[i] = False
    return keep_to_str(keep)


def test_consensus_prunes_what_most_of_the_top_masks_prune():
    top = [_keep(1, 13, 4), _keep(1, 13), _keep(1, 7)]
    assert consensus_mask(top) == _keep(1, 13)  # 4 and 7 are each in one mask of three
    assert consensus_mask([_keep(1), _keep(2)]) == _keep()  # nothing in more than half


def _evidence(outcome, masks, examples):
    ev = Evidence((N,) * SHAPE[0])
    for k in masks:
        ev.add(k, examples, outcome(keep_from_str(k), examples))
    return ev


FIRST = Subset.folds((N,) * SHAPE[0], 8, 0)[0]


def test_surrogate_finds_the_negative_modules_from_every_scored_mask():
    outcome, rng = oracle(NEG), np.random.default_rng(0)
    full = keep_to_str(np.ones(SHAPE, dtype=bool))
    masks = [full] + [keep_to_str(rng.random(SHAPE) > 0.2) for _ in range(60)]
    ev = _evidence(outcome, masks, FIRST)
    found = ~keep_from_str(surrogate_mask(ev, full, FIRST, n_prune=4))
    assert (found == NEG).all()  # both negative modules, and no more although four were allowed
    assert surrogate_mask(_evidence(outcome, [full], FIRST), full, FIRST, 4) == full  # nothing to learn from


@pytest.mark.parametrize("n_candidates", [60, 7])
def test_ridge_effects_are_the_ridge_solution_from_either_side(n_candidates):
    """More candidates than modules (the demo) or fewer (large T·G): the same coefficients."""
    rng = np.random.default_rng(1)
    x = (rng.random((n_candidates, 20)) < 0.2).astype(float)
    y = rng.normal(size=n_candidates)
    expected = np.linalg.solve(x.T @ x + RIDGE * np.eye(20), x.T @ y)
    assert np.allclose(ridge_effects(x, y), expected, rtol=1e-10, atol=1e-12)


def test_final_contenders_never_offer_the_full_merge_or_worse_masks():
    full, good, bad = _keep(), _keep(1), _keep(2)
    fitness = {full: 50.0, good: 51.0, bad: 49.0}
    none = Evidence((N,) * SHAPE[0])
    assert final_contenders("best", fitness, none, full, FIRST, 3, 8) == [good]
    assert final_contenders("consensus", fitness, none, full, FIRST, 3, 8) == [good]
    assert final_contenders("best", {full: 50.0, bad: 49.0}, none, full, FIRST, 3, 8) == []
    assert final_contenders("consensus", {full: 50.0, good: 51.0, _keep(3): 50.5}, none, full, FIRST, 3, 2) == []


def test_union_puts_every_kind_of_contender_to_the_check_once():
    outcome = oracle(NEG)
    full = _keep()
    masks = [full, _keep(1, 13), _keep(1, 13, 4), _keep(1, 7), _keep(2)]
    ev = _evidence(outcome, masks, FIRST)
    fitness = {k: ev.fitness(k, FIRST) for k in masks}
    union = final_contenders("union", fitness, ev, full, FIRST, 2, 3)
    parts = [final_contenders(rule, fitness, ev, full, FIRST, 2, 3) for rule in ("best", "consensus", "surrogate")]
    assert union == list(dict.fromkeys(k for part in parts for k in part)) and len(union) == len(set(union))
    assert parts[1] == [_keep(1, 13)] and full not in union


@pytest.mark.parametrize("final", ["consensus", "surrogate", "union"])
def test_every_final_choice_keeps_only_negative_modules(final):
    s = make(final=final)
    drive(s, oracle(NEG))
    d = _decided(s)
    assert (~d.mask & NEG).sum() >= 1 and (~d.mask & ~NEG).sum() == 0 and d.text.startswith("kept the found mask")


def test_confirm_z_demands_a_margin_in_standard_errors():
    s = make(confirm_z=50.0)  # no real gain is fifty standard errors on two folds
    drive(s, oracle(NEG))
    assert _decided(s).mask.all() and _decided(s).text.startswith("returned the full merge")
