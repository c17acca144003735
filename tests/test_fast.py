"""`fast`: racing statistics and the strategy on a synthetic per-example problem (no models involved).

Each task has examples split over folds. Pruning one of the hidden 'negative' modules makes some wrong
examples right; pruning any other module makes some right examples wrong. So the full merge is beaten
exactly by masks that prune negative modules, and every score is per example, as the engine reports them.
"""

from __future__ import annotations

import numpy as np
import pytest

from enmp.errors import EnmpError
from enmp.search import get_strategy
from enmp.masking import keep_from_str, keep_to_str
from enmp.search.final_choice import RIDGE, consensus_mask, final_contenders, ridge_effects, surrogate_mask
from enmp.search.racing import paired_margin, pooled_fitness

SHAPE = (4, 5)
EXPERT = 80.0
PER_FOLD = 40  # examples per task and fold


def oracle(neg: np.ndarray, seed: int = 0):
    """fold → per-task normalized per-example scores of a mask, deterministic per (mask, example)."""
    n_folds = 8
    rng = np.random.default_rng(seed)
    base = rng.random((SHAPE[0], n_folds, PER_FOLD)) < 0.7
    fix = rng.random((SHAPE[0] * SHAPE[1], SHAPE[0], n_folds, PER_FOLD)) < 0.25
    hurt = rng.random((SHAPE[0] * SHAPE[1], SHAPE[0], n_folds, PER_FOLD)) < 0.08

    def scores(mask: np.ndarray, folds) -> dict:
        right = base.copy()
        for i in np.flatnonzero(~mask.ravel()):
            right = right | fix[i] if neg.ravel()[i] else right & ~hurt[i]
        return {f: [right[t, f] * (1e4 / EXPERT) for t in range(SHAPE[0])] for f in folds}

    return scores


def drive(s, scores):
    """Run like the engine does: each candidate scored on the folds it asks for."""
    rounds = []
    while not s.done:
        cands = s.ask()
        fs = [scores(c.mask, c.folds) for c in cands]
        fits = [pooled_fitness(f, c.folds) for f, c in zip(fs, cands)]
        s.tell(cands, fits, fs)
        rounds.append(cands)
    return rounds


def make(**kw):
    return get_strategy("fast")(SHAPE, rho=0.2, seed=kw.pop("seed", 1), popsize=8, generations=kw.pop("generations", 12),
                                **kw)


NEG = np.zeros(SHAPE, dtype=bool)
NEG[0, 1] = NEG[2, 3] = True


# ---------------------------------------------------------------------- racing statistics
def test_paired_margin_is_the_fitness_difference_with_a_paired_standard_error():
    a = {0: [np.array([100.0, 100.0, 0.0, 100.0])], 1: [np.array([0.0, 100.0])]}
    b = {0: [np.array([100.0, 0.0, 0.0, 100.0])], 1: [np.array([0.0, 100.0])]}
    mean, se = paired_margin(a, b, [0, 1])
    assert mean == pytest.approx(pooled_fitness(a, [0, 1]) - pooled_fitness(b, [0, 1])) == pytest.approx(100 / 6)
    d = np.array([0, 100, 0, 0, 0, 0.0])
    assert se == pytest.approx(np.sqrt(d.var(ddof=1) / d.size))
    assert paired_margin(a, a, [0, 1]) == (0.0, 0.0)  # identical predictions: no difference, no noise


# ---------------------------------------------------------------------- the strategy
def test_fast_finds_the_negative_modules_and_keeps_them_on_held_out_folds():
    s = make()
    drive(s, oracle(NEG))
    final = s.final_mask(full_fitness=0.0)
    assert (~final & NEG).sum() >= 1 and (~final & ~NEG).sum() == 0
    assert s.decision.startswith("kept the found mask")


def test_warm_start_points_the_mean_at_negative_modules():
    s = make(generations=1, probe=True)
    cands = s.ask()
    fs = [oracle(NEG)(c.mask, c.folds) for c in cands]
    s.tell(cands, [pooled_fitness(f, c.folds) for f, c in zip(fs, cands)], fs)
    mean = s.es.mean.reshape(SHAPE)
    assert (mean[NEG] > 0).all() and (mean[~NEG] < 0).all()
    assert len(cands) == 1 + SHAPE[0] * SHAPE[1] and cands[0].folds == s.search_folds  # full + one probe each
    assert all(c.folds == s.blocks[0] for c in cands[1:])


def test_racing_drops_candidates_that_cannot_beat_the_incumbent():
    s = make(race_z=1.0, stages=3)
    rounds = drive(s, oracle(NEG))
    race = [r for r in rounds if r and r[0].tag == ""]
    first, later = [r for r in race if r[0].folds == s.blocks[0]], [r for r in race if r[0].folds != s.blocks[0]]
    asked_first = sum(len(r) for r in first)
    assert later and sum(len(r) for r in later) < asked_first  # most candidates never see the later folds
    assert all(c.folds != s.confirm_folds for r in race for c in r)  # held-out folds only at the end


def test_no_better_mask_returns_the_full_merge_and_says_so():
    s = make()
    drive(s, oracle(np.zeros(SHAPE, dtype=bool)))  # every pruning hurts
    assert s.final_mask(full_fitness=0.0).all()
    assert s.decision.startswith("returned the full merge")


def test_early_stop_ends_before_the_generation_budget():
    s = make(generations=50, patience=2)
    drive(s, oracle(np.zeros(SHAPE, dtype=bool)))
    assert s.es_generation < 50 and s.stale >= 2


def test_same_seed_same_rounds_and_replay_reproduces_them():
    a, b = make(seed=3), make(seed=3)
    ra, rb = drive(a, oracle(NEG)), drive(b, oracle(NEG))
    assert [[(c.mask.tobytes(), c.folds) for c in r] for r in ra] == [[(c.mask.tobytes(), c.folds) for c in r] for r in rb]
    assert (a.final_mask(0.0) == b.final_mask(0.0)).all()


@pytest.mark.parametrize("options, match", [
    ({"folds": 2}, "folds must be an integer ≥ 3"),
    ({"folds": 4, "confirm_folds": 2, "stages": 3}, "cannot hold 2 held-out folds and 3 racing stages"),
    ({"race_z": -1.0}, "race_z must be a finite number ≥ 0"),
    ({"patience": 0}, "patience must be an integer ≥ 1"),
    ({"probe": "yes"}, "probe must be true or false"),
    ({"speed": 2}, "has no option"),
    ({"final": "vote"}, "final must be one of best, consensus, surrogate, union"),
    ({"voters": 0}, "voters must be an integer ≥ 1"),
    ({"confirm_z": -0.5}, "confirm_z must be a finite number ≥ 0"),
])
def test_bad_options_are_one_clear_error(options, match):
    with pytest.raises(EnmpError, match=match):
        make(**options)


def test_replaying_any_prefix_of_rounds_continues_identically():
    """What `--resume` does: a fresh strategy told the journaled rounds asks exactly what the original asked."""
    scores = oracle(NEG)
    ref = make(seed=2, generations=4)
    rounds = drive(ref, scores)
    asked = [[(c.mask.tobytes(), c.folds) for c in r] for r in rounds]
    for cut in (1, 3, len(rounds) - 1):
        s = make(seed=2, generations=4)
        for r in asked[:cut]:
            cands = s.ask()
            assert [(c.mask.tobytes(), c.folds) for c in cands] == r
            fs = [scores(c.mask, c.folds) for c in cands]
            s.tell(cands, [pooled_fitness(f, c.folds) for f, c in zip(fs, cands)], fs)
        assert asked[:cut] + [[(c.mask.tobytes(), c.folds) for c in r] for r in drive(s, scores)] == asked
        assert (s.final_mask(0.0) == ref.final_mask(0.0)).all() and s.decision == ref.decision


@pytest.mark.parametrize("shape", [(4, 5), (6, 32), (100, 80)])
def test_calibrated_start_prunes_the_asked_number_of_modules_at_any_size(shape):
    s = get_strategy("fast")(shape, rho=0.2, seed=1, popsize=64, generations=2, start_pruned=3)
    cands = s.ask()  # the full merge on the search folds
    fs = [{f: [np.ones(4)] * shape[0] for f in c.folds} for c in cands]
    s.tell(cands, [pooled_fitness(f, c.folds) for f, c in zip(fs, cands)], fs)
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


def test_surrogate_finds_the_negative_modules_from_every_scored_mask():
    scores, rng = oracle(NEG), np.random.default_rng(0)
    full = keep_to_str(np.ones(SHAPE, dtype=bool))
    masks = [full] + [keep_to_str(rng.random(SHAPE) > 0.2) for _ in range(60)]
    by_mask = {k: scores(keep_from_str(k), (0, 1, 2)) for k in masks}
    found = ~keep_from_str(surrogate_mask(by_mask, full, (0, 1, 2), n_prune=4))
    assert (found == NEG).all()  # both negative modules, and no more although four were allowed
    assert surrogate_mask({full: by_mask[full]}, full, (0, 1, 2), 4) == full  # nothing to learn from


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
    assert final_contenders("best", fitness, {}, full, (0,), 3, 8) == [good]
    assert final_contenders("consensus", fitness, {}, full, (0,), 3, 8) == [good]
    assert final_contenders("best", {full: 50.0, bad: 49.0}, {}, full, (0,), 3, 8) == []
    assert final_contenders("consensus", {full: 50.0, good: 51.0, _keep(3): 50.5}, {}, full, (0,), 3, 2) == []


def test_union_puts_every_kind_of_contender_to_the_check_once():
    scores = oracle(NEG)
    full = _keep()
    masks = [full, _keep(1, 13), _keep(1, 13, 4), _keep(1, 7), _keep(2)]
    by_mask = {k: scores(keep_from_str(k), (0, 1, 2)) for k in masks}
    fitness = {k: pooled_fitness(v, (0, 1, 2)) for k, v in by_mask.items()}
    union = final_contenders("union", fitness, by_mask, full, (0, 1, 2), 2, 3)
    parts = [final_contenders(rule, fitness, by_mask, full, (0, 1, 2), 2, 3) for rule in ("best", "consensus",
                                                                                          "surrogate")]
    assert union == list(dict.fromkeys(k for part in parts for k in part)) and len(union) == len(set(union))
    assert parts[1] == [_keep(1, 13)] and full not in union


@pytest.mark.parametrize("final", ["consensus", "surrogate", "union"])
def test_every_final_choice_keeps_only_negative_modules(final):
    s = make(final=final)
    drive(s, oracle(NEG))
    kept = s.final_mask(full_fitness=0.0)
    assert (~kept & NEG).sum() >= 1 and (~kept & ~NEG).sum() == 0 and s.decision.startswith("kept the found mask")


def test_confirm_z_demands_a_margin_in_standard_errors():
    s = make(confirm_z=50.0)  # no real gain is fifty standard errors on two folds
    drive(s, oracle(NEG))
    assert s.final_mask(full_fitness=0.0).all() and s.decision.startswith("returned the full merge")
