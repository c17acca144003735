"""`crossfit` on synthetic per-example problems whose truth is known (no models involved).

Each task has N validation examples. Pruning a module flips some examples: a planted negative module makes
wrong examples right; every other module makes as many right examples wrong as it makes wrong ones right
(no effect on average), so on a finite split some masks look better than the full merge by luck alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from enmp.errors import EnmpError
from enmp.search import Outcome, ValidationData, get_strategy

SHAPE = (6, 6)
N = 150
EXPERT = 80.0


def oracle(planted: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    base = rng.random((SHAPE[0], N)) < 0.75
    flips = rng.random((SHAPE[0] * SHAPE[1], SHAPE[0], N))
    fix = flips < 0.06  # applied to wrong examples (25 %): 1.5 % of examples made right
    hurt = flips > 0.98  # applied to right examples (75 %): 1.5 % made wrong — no effect on average
    help_ = rng.random((SHAPE[0] * SHAPE[1], SHAPE[0], N)) < 0.3  # a planted module rights 30 % of the wrong

    def outcome(mask: np.ndarray, examples=None) -> Outcome:
        right = base.copy()
        for i in np.flatnonzero(~mask.ravel()):
            if planted.ravel()[i]:
                right = right | help_[i]
            else:
                right = (right | (fix[i] & ~base)) & ~(hurt[i] & base)
        index = examples.index if examples is not None else [np.arange(N)] * SHAPE[0]
        return Outcome.from_correct(tuple(right[t, ix] for t, ix in enumerate(index)), (EXPERT,) * SHAPE[0])

    return outcome


def run(planted: np.ndarray, seed: int, **options):
    outcome = oracle(planted, seed)
    s = get_strategy("crossfit")(SHAPE, seed=seed, **options)
    s.start(ValidationData((N,) * SHAPE[0], seed, outcome(np.ones(SHAPE, dtype=bool))))
    asked = []
    while not s.done:
        cands = s.ask()
        s.tell(cands, [outcome(c.mask, c.examples) for c in cands])
        asked.append([(c.mask.tobytes(), None if c.examples is None else c.examples.key) for c in cands])
    return s.decide(0.0), asked, s


PLANTED = np.zeros(SHAPE, dtype=bool)
PLANTED[1, 2] = PLANTED[4, 0] = True
NULL = np.zeros(SHAPE, dtype=bool)


@pytest.mark.parametrize("inner", ["greedy", "stepwise", "cma"])
def test_planted_modules_are_found_and_the_gain_is_estimated_out_of_fold(inner):
    decision, asked, s = run(PLANTED, seed=1, inner=inner, generations=30)
    pruned = ~decision.mask
    assert (pruned & PLANTED).sum() >= 1 and decision.text.startswith("kept")
    g = decision.expected_gain
    assert g.low < g.value < g.high and g.value > 0 and g.level == 0.9
    assert g.value <= s.held_out_gain()[0] + 1e-9 and "cross-fitted" in g.basis  # corrected for the test it passed
    if inner in ("greedy", "stepwise"):  # every single pruning asked once, on all examples, before the folds
        assert len(asked[0]) == SHAPE[0] * SHAPE[1] and all(key is None for _, key in asked[0])


def test_a_null_problem_returns_the_full_merge_in_nine_seeds_of_ten():
    full = [run(NULL, seed)[0] for seed in range(20)]
    kept_full = [d.mask.all() for d in full]
    assert sum(kept_full) >= 18, sum(kept_full)
    for d in full:
        if d.mask.all():
            assert d.text.startswith("returned the full merge") and d.expected_gain.value == 0.0
            assert (d.expected_gain.low, d.expected_gain.high) == (0.0, 0.0)


def test_the_held_out_check_reads_each_example_once_with_a_mask_chosen_without_it():
    _, _, s = run(PLANTED, seed=2, inner="stepwise")
    for fold, train in zip(s.folds, s.train):  # each fold's search never saw that fold
        for f, t in zip(fold.index, train.index):
            assert not set(f.tolist()) & set(t.tolist())
    covered = [np.sort(np.concatenate([f.index[t] for f in s.folds])) for t in range(SHAPE[0])]
    assert all((c == np.arange(N)).all() for c in covered)


def test_same_seed_same_rounds_and_replaying_a_prefix_continues_identically():
    d1, asked, _ = run(PLANTED, seed=3, inner="stepwise")
    d2, again, _ = run(PLANTED, seed=3, inner="stepwise")
    assert asked == again and (d1.mask == d2.mask).all()
    outcome = oracle(PLANTED, 3)
    for cut in (1, len(asked) // 2, len(asked) - 1):
        s = get_strategy("crossfit")(SHAPE, seed=3, inner="stepwise")
        s.start(ValidationData((N,) * SHAPE[0], 3, outcome(np.ones(SHAPE, dtype=bool))))
        got = []
        while not s.done:
            cands = s.ask()
            got.append([(c.mask.tobytes(), None if c.examples is None else c.examples.key) for c in cands])
            s.tell(cands, [outcome(c.mask, c.examples) for c in cands])
        assert got == asked and (s.decide(0.0).mask == d1.mask).all()


def test_consensus_keeps_only_what_most_fold_searches_prune():
    decision, _, s = run(PLANTED, seed=4, inner="stepwise", final="consensus")
    votes = np.mean([~m for m in s.fold_masks], axis=0)
    assert ((~decision.mask) == (votes > 0.5)).all() and decision.text.startswith("kept")


@pytest.mark.parametrize("options, match", [
    ({"folds": 1}, "folds must be an integer ≥ 2"),
    ({"level": 1.0}, r"level must be a number in \[0.5, 1\)"),
    ({"inner": "fast"}, "inner must be one of"),
    ({"inner": "greedy", "sigma0": 0.3}, "inner search 'greedy' takes no sigma0"),
    ({"final": "best"}, "final must be one of refit, consensus"),
    ({"inner": "cma", "stability": 0.5}, "inner search 'cma' takes no stability"),
])
def test_bad_options_are_one_clear_error(options, match):
    with pytest.raises(EnmpError, match=match):
        get_strategy("crossfit")(SHAPE, **options)


def test_inner_greedy_defaults_are_not_forced_on_another_inner_search():
    s = get_strategy("crossfit")(SHAPE, inner="cma")  # `stability`'s default is inner greedy's, not an error
    assert "stability" not in s._inner_options and "mean0" in s._inner_options
    assert get_strategy("crossfit")(SHAPE)._inner_options == {"stability": 0.8}


def test_too_few_examples_for_the_folds_is_one_clear_error_before_anything_runs():
    s = get_strategy("crossfit")(SHAPE, folds=5)
    with pytest.raises(EnmpError, match="4 validation examples cannot fill the 5 folds of search 'crossfit'"):
        s.validate(ValidationData((4,) * SHAPE[0], 0))


def test_the_estimate_after_a_passed_test_is_median_unbiased_and_covers():
    """Among observations kept only above the threshold, the corrected estimate is below the truth half of the
    time and its 90 % interval covers the truth 90 % of the time; far above the threshold it is the plain one."""
    from enmp.search.effects import selected_estimate

    rng = np.random.default_rng(0)
    se, threshold = 1.0, 1.645
    for mu in (0.5, 2.0):
        x = mu + se * rng.standard_normal(20000)
        kept = x[x > threshold][:400]
        est = np.array([selected_estimate(v, se, threshold, 0.9) for v in kept])
        assert abs(np.mean(est[:, 0] <= mu) - 0.5) < 0.07
        assert abs(np.mean((est[:, 1] <= mu) & (mu <= est[:, 2])) - 0.9) < 0.05
    value, low, high = selected_estimate(1.66, 1.0, 1.645, 0.9)  # just past the threshold: bounded, not −∞
    assert 1.66 - 2.6 < low <= value <= high < 1.66
    value, low, high = selected_estimate(9.0, 1.0, 1.645, 0.9)
    assert value == pytest.approx(9.0, abs=1e-3) and high - value == pytest.approx(1.645, abs=1e-2)
