"""Align-then-prune for the subspace methods (paper §4.4, Fig. 5): `order` of KnOTS and CoreSpace.

prune_then_align (the default) builds the shared basis from the kept tasks only; align_then_prune builds it from
every task and drops the pruned tasks' aligned components before the inner merge.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

from enmp.config import MergeConfig
from enmp.errors import EnmpError
from enmp.merging import MergeParams, merge, merge_kept, method_params
from enmp.merging.linalg import drop_zero_spectrum
from enmp.tiny import make_task_set
from test_merging import CONFIGS, SATURATED, assert_close, make_deltas, single_thread  # noqa: F401 (fixture)
from tiny_runs import cli

SUBSPACE = [("knots", "ties"), ("knots", "ta"), ("core_space", "tsv"), ("core_space", "ta"), ("core_space", "ties"),
            ("core_space", "iso_c")]
PRUNE, ALIGN = "prune_then_align", "align_then_prune"


def order_params(order: str, inner: str, **kw) -> MergeParams:
    return MergeParams(lam=0.7, top_k=60.0, inner=inner, order=order, **kw)


@pytest.mark.parametrize("shape,ranks", CONFIGS)
@pytest.mark.parametrize("method,inner", SUBSPACE)
@pytest.mark.parametrize("iso", [False, True])
def test_nothing_pruned_both_orders_are_bit_identical(method, inner, shape, ranks, iso):
    deltas = make_deltas(shape, ranks, seed=3)
    every = range(len(deltas))
    prune = merge_kept(method, deltas, every, order_params(PRUNE, inner, iso=iso), shape)
    align = merge_kept(method, deltas, every, order_params(ALIGN, inner, iso=iso), shape)
    assert torch.equal(prune, align)
    assert torch.equal(prune, merge(method, deltas, order_params(PRUNE, inner, iso=iso), shape))


@pytest.mark.parametrize("shape,ranks", CONFIGS)
@pytest.mark.parametrize("method,inner", SUBSPACE)
def test_a_pruned_task_prune_then_align_drops_it_align_then_prune_keeps_its_basis(method, inner, shape, ranks):
    """prune_then_align == merging without the task (bit for bit). align_then_prune differs where the inner
    merge depends on the basis (TIES trims coordinates in it; TSV's per-task share counts the basis' size); with
    a linear inner merge (TA) or Iso-C the pruned task's components are simply absent: both orders agree,
    as U S V_tᵀ = ΔW_t and U_ref U_refᵀ ΔW_t V_ref V_refᵀ = ΔW_t whichever tasks built the basis."""
    deltas = make_deltas(shape, ranks, seed=4)
    kept = [0, 2]
    without = merge(method, [deltas[i] for i in kept], order_params(PRUNE, inner), shape)
    assert torch.equal(merge_kept(method, deltas, kept, order_params(PRUNE, inner), shape), without)
    align = merge_kept(method, deltas, kept, order_params(ALIGN, inner), shape)
    basis_dependent = inner == "ties" or (inner == "tsv" and (shape, ranks) != SATURATED)
    if basis_dependent:
        assert not torch.allclose(align, without, rtol=1e-3, atol=1e-5)
    else:  # (SATURATED: both bases span the whole space, and TSV is invariant to rotating it)
        assert_close(align, without)
    if inner == "ta":
        assert_close(align, 0.7 * sum(deltas[i].dense(torch.float64) for i in kept))


@pytest.mark.parametrize("shape,ranks", CONFIGS)
def test_knots_ta_align_then_prune_is_the_joint_basis_times_the_kept_blocks(shape, ranks):
    """[ΔW_1 … ΔW_T] = U S [V_1ᵀ … V_Tᵀ] over every task; with task 1 pruned: λ U S (V_0ᵀ + V_2ᵀ)."""
    deltas = make_deltas(shape, ranks, seed=5)
    dense = torch.cat([d.dense(torch.float64) for d in deltas], dim=1)
    U, S, Vh = drop_zero_spectrum(*torch.linalg.svd(dense, full_matrices=False), 1e-10)
    blocks = torch.split(Vh, shape[1], dim=1)
    expected = 0.7 * (U * S) @ (blocks[0] + blocks[2])
    assert_close(merge_kept("knots", deltas, [0, 2], order_params(ALIGN, "ta"), shape), expected)


def test_nothing_kept_is_zeros_in_both_orders():
    deltas = make_deltas((6, 5), (2, 3))
    for order in (PRUNE, ALIGN):
        assert torch.equal(merge_kept("knots", deltas, [], order_params(order, "ties"), (6, 5)), torch.zeros(6, 5))


def test_merge_of_kept_deltas_refuses_align_then_prune():
    """`merge` sees only the kept tasks, so it cannot align before pruning: one clear error, not a silent
    prune-then-align merge."""
    with pytest.raises(EnmpError, match="align_then_prune needs every task's update.*merge_kept"):
        merge("core_space", make_deltas((6, 5), (2, 3)), order_params(ALIGN, "tsv"), (6, 5))


@pytest.mark.parametrize("method,given,message", [
    ("ties", {"order": ALIGN}, "--order / merge.order: merge method 'ties' takes no order — use order only with "
                               "knots or core_space"),
    ("knots", {"order": "align_first"}, "order must be one of prune_then_align, align_then_prune, got 'align_first'"),
])
def test_invalid_order_is_one_clear_line(method, given, message):
    for call in (lambda: method_params(method, **given), lambda: MergeConfig(method=method, **given)):
        with pytest.raises(EnmpError, match=re.escape(message)) as err:
            call()
        assert "\n" not in err.value.line()


def test_run_config_takes_order_and_writes_it_out():
    assert MergeConfig(method="knots").resolved().order == PRUNE
    cfg = MergeConfig(method="core_space", order=ALIGN)
    assert cfg.params().order == ALIGN and cfg.resolved().model_dump()["order"] == ALIGN


def test_enmp_merge_order_flag_end_to_end(tmp_path):
    """`--order align_then_prune` with a task pruned everywhere differs from merging without it; with
    prune_then_align they are equal; the card's command line names the order."""
    base, adapters = make_task_set(tmp_path / "set", "bert")
    mask = tmp_path / "mask.json"
    mask.write_text(json.dumps({"tasks": list(adapters), "layers": [0, 1],
                                "keep": [[1, 1], [0, 0], [1, 1]]}))
    flags = [x for n, p in adapters.items() for x in ("--adapter", f"{n}={p}")]
    kept = [x for n in ("task0", "task2") for x in ("--adapter", f"{n}={adapters[n]}")]

    def weights(name, *args):
        code, _, err = cli("merge", "--base", base, *args, "--method", "knots", "--out", tmp_path / name)
        assert code == 0, err
        return load_file(str(tmp_path / name / "model.safetensors"))

    without = weights("without", *kept)
    prune = weights("prune", *flags, "--mask", mask, "--order", PRUNE)
    align = weights("align", *flags, "--mask", mask, "--order", ALIGN)
    assert all(torch.equal(prune[k], without[k]) for k in without)
    assert any(not torch.equal(align[k], without[k]) for k in without)
    card = (tmp_path / "align" / "README.md").read_text()
    assert "--order align_then_prune" in card and "order: `align_then_prune`" in card
