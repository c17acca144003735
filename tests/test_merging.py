"""Merge methods: required properties, dense reference implementations, determinism, validation."""

from __future__ import annotations

import math
import re

import pytest
import torch

from enmp.errors import EnmpError, NumericalError
from enmp.merging import (MergeParams, TaskDelta, available_methods, get_method, merge, method_params,
                          resolved)
from enmp.merging.iso_c import flatten_spectrum
from enmp.merging.linalg import lowrank_svd, nearest_orthogonal
from enmp.merging.sparsify import dare_drop, disjoint_mean, elect_sign, trim_top_k

LOW_RANK = ((20, 18), (2, 3, 5))  # Σr = 10 < min(d): bases are proper subspaces
SATURATED = ((12, 10), (3, 5, 8))  # Σr = 16 > min(d): ranks overlap and exceed the matrix
CONFIGS = [LOW_RANK, SATURATED]
ALL_VARIANTS = [(m, inner) for m in ("ta", "ties", "dare", "dare_ties", "tsv", "iso_c", "knots", "core_space")
                for inner in (None, *get_method(m).inner_choices)]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny matrices gain nothing from threads, and OpenMP spin-waits crawl on a shared 2-core box."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def make_deltas(shape, ranks, seed=0, positive=False):
    g = torch.Generator().manual_seed(seed)
    out = []
    for t, r in enumerate(ranks):
        B, A = torch.randn(shape[0], r, generator=g), torch.randn(r, shape[1], generator=g)
        if positive:
            B, A = B.abs(), A.abs()
        out.append(TaskDelta(B=B, A=A, scale=0.5 + 0.25 * t, seed_key=f"task{t}/q"))
    return out


def params(**kw):
    base = dict(lam=0.7, top_k=60.0, drop_rate=0.2, seed=5)
    return MergeParams(**{**base, **kw})


def assert_close(actual, expected, rel=1e-5):
    expected = expected.to(torch.float32)
    assert actual.shape == expected.shape
    atol = rel * max(float(expected.abs().max()), 1e-12)
    assert torch.allclose(actual, expected, rtol=rel, atol=atol), float((actual - expected).abs().max())


def nonzero_spectrum(M, rel=1e-4):
    S = torch.linalg.svdvals(M.to(torch.float64))
    return S[S > rel * S[0]] if S[0] > 0 else S[:0]


# ----------------------------------------------------------------------------- dense references

def ref_trim(x, pct):
    flat = x.flatten().tolist()
    n_keep = min(len(flat), max(1, math.floor(len(flat) * pct / 100 + 0.5)))
    order = sorted(range(len(flat)), key=lambda i: (-abs(flat[i]), i))
    keep = set(order[:n_keep])
    return torch.tensor([v if i in keep else 0.0 for i, v in enumerate(flat)], dtype=x.dtype).view_as(x)


def ref_ties(dense, pct):
    trimmed = [ref_trim(x, pct).flatten().tolist() for x in dense]
    out = []
    for values in zip(*trimmed):
        total = sum(values)
        sign = (total > 0) - (total < 0)
        agree = [v for v in values if v != 0 and ((v > 0) - (v < 0)) == sign]
        out.append(sum(agree) / len(agree) if sign and agree else 0.0)
    return torch.tensor(out, dtype=torch.float64).view_as(dense[0])


def ref_svd(M):
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    n = int((S > 1e-10 * S[0]).sum())
    return U[:, :n], S[:n], Vh[:n]


def polar(M):
    P, _, Qh = torch.linalg.svd(M, full_matrices=False)
    return P @ Qh


def ref_tsv(deltas, lam):
    dense = [d.dense(torch.float64) for d in deltas]
    k = max(1, min(dense[0].shape) // len(dense))
    parts = [ref_svd(x) for x in dense]
    U = torch.cat([p[0][:, :k] for p in parts], 1)
    S = torch.cat([p[1][:k] for p in parts])
    Vh = torch.cat([p[2][:k] for p in parts], 0)
    return lam * polar(U) @ torch.diag(S) @ polar(Vh)


def ref_knots_ties(deltas, lam, pct):
    dense = [d.dense(torch.float64) for d in deltas]
    U, S, Vh = ref_svd(torch.cat(dense, dim=1))
    blocks = torch.split(Vh, dense[0].shape[1], dim=1)
    return lam * U @ torch.diag(S) @ ref_ties(list(blocks), pct)


def ref_iso_c(deltas, lam):
    U, S, Vh = ref_svd(sum(d.dense(torch.float64) for d in deltas))
    return lam * S.mean() * U @ Vh


# ----------------------------------------------------------------------------- every method

@pytest.mark.parametrize("method,inner", ALL_VARIANTS)
@pytest.mark.parametrize("shape,ranks", CONFIGS)
def test_every_method_merges_mixed_ranks_deterministically(method, inner, shape, ranks):
    deltas = make_deltas(shape, ranks)
    out = merge(method, deltas, params(inner=inner), shape)
    assert out.dtype == torch.float32 and out.shape == shape
    assert torch.isfinite(out).all() and out.abs().max() > 0
    assert torch.equal(out, merge(method, deltas, params(inner=inner), shape))


@pytest.mark.parametrize("method", ["ta", "ties", "dare", "dare_ties", "tsv", "iso_c", "knots", "core_space"])
def test_empty_kept_set_is_exact_zeros(method):
    out = merge(method, [], params(iso=True), (7, 5))
    assert out.dtype == torch.float32 and torch.equal(out, torch.zeros(7, 5))


@pytest.mark.parametrize("method,inner", ALL_VARIANTS)
def test_all_zero_updates_merge_to_exact_zeros(method, inner):
    """Untrained LoRAs (B = 0) have an empty spectrum: SVD methods must not invent directions."""
    zero = [TaskDelta(B=torch.zeros(6, r), A=torch.ones(r, 5), scale=1.0, seed_key=f"z{r}") for r in (2, 3)]
    assert torch.equal(merge(method, zero, params(inner=inner, iso=True), (6, 5)), torch.zeros(6, 5))


@pytest.mark.parametrize("method,inner", ALL_VARIANTS)
def test_absent_task_equals_merging_without_it(method, inner):
    """Prune-then-align: a dropped task leaves no trace (no state carried over from earlier merges)."""
    shape, ranks = LOW_RANK
    d1, d2, d3 = make_deltas(shape, ranks)
    merge(method, [d1, d2, d3], params(inner=inner), shape)
    fresh = [TaskDelta(B=d.B.clone(), A=d.A.clone(), scale=d.scale, seed_key=d.seed_key) for d in (d1, d3)]
    assert torch.equal(merge(method, [d1, d3], params(inner=inner), shape),
                       merge(method, fresh, params(inner=inner), shape))


@pytest.mark.parametrize("method,inner", ALL_VARIANTS)
def test_iso_post_step_flattens_any_result(method, inner):
    shape, ranks = LOW_RANK
    out = merge(method, make_deltas(shape, ranks), params(inner=inner, iso=True), shape)
    S = nonzero_spectrum(out)
    assert S.numel() > 0 and float(S.max() - S.min()) <= 1e-4 * float(S.max())


# ----------------------------------------------------------------------------- required identities

@pytest.mark.parametrize("method", ["knots", "core_space"])
@pytest.mark.parametrize("shape,ranks", CONFIGS)
def test_aligned_methods_with_ta_inner_equal_ta(method, shape, ranks):
    deltas = make_deltas(shape, ranks)
    assert_close(merge(method, deltas, params(inner="ta"), shape), merge("ta", deltas, params(), shape))


def test_ta_is_lambda_times_sum():
    shape, ranks = SATURATED
    deltas = make_deltas(shape, ranks)
    assert_close(merge("ta", deltas, params(), shape), 0.7 * sum(d.dense(torch.float64) for d in deltas))


@pytest.mark.parametrize("shape,ranks", CONFIGS)
def test_tsv_single_task_is_lambda_delta(shape, ranks):
    delta = make_deltas(shape, ranks[-1:])
    assert_close(merge("tsv", delta, params(), shape), 0.7 * delta[0].dense(torch.float64))


@pytest.mark.parametrize("shape,ranks", CONFIGS)
def test_iso_c_spectrum_is_flat_with_the_sum_rank(shape, ranks):
    out = merge("iso_c", make_deltas(shape, ranks), params(), shape)
    S = nonzero_spectrum(out)
    assert S.numel() == min(*shape, sum(ranks))
    assert float(S.max() - S.min()) <= 1e-5 * float(S.max())


def test_core_space_with_iso_c_inner_is_isotropic():
    shape, ranks = LOW_RANK
    S = nonzero_spectrum(merge("core_space", make_deltas(shape, ranks), params(inner="iso_c"), shape))
    assert S.numel() == sum(ranks) and float(S.max() - S.min()) <= 1e-5 * float(S.max())


def test_ties_full_keep_same_signs_is_the_mean():
    shape, ranks = LOW_RANK
    deltas = make_deltas(shape, ranks, positive=True)
    mean = sum(d.dense(torch.float64) for d in deltas) / len(deltas)
    assert_close(merge("ties", deltas, params(lam=1.0, top_k=100), shape), mean)
    assert_close(merge("dare_ties", deltas, params(lam=1.0, top_k=100, drop_rate=0.0), shape), mean)


# ----------------------------------------------------------------------------- dense references

@pytest.mark.parametrize("subset", [(0, 1, 2), (0, 2)])
@pytest.mark.parametrize("shape,ranks", CONFIGS)
def test_methods_match_dense_references(shape, ranks, subset):
    all_deltas = make_deltas(shape, ranks, seed=3)
    deltas = [all_deltas[i] for i in subset]
    p = params(top_k=70)
    assert_close(merge("ties", deltas, p, shape), 0.7 * ref_ties([d.dense() for d in deltas], 70))
    assert_close(merge("tsv", deltas, p, shape), ref_tsv(deltas, 0.7))
    assert_close(merge("knots", deltas, p.replace(inner="ties"), shape), ref_knots_ties(deltas, 0.7, 70))
    assert_close(merge("iso_c", deltas, p, shape), ref_iso_c(deltas, 0.7))


def test_lowrank_svd_and_procrustes():
    g = torch.Generator().manual_seed(1)
    B, A = torch.randn(9, 4, generator=g), torch.randn(4, 7, generator=g)
    B[:, 3] = B[:, 0] + B[:, 1]  # rank 3: the dependent direction must be dropped
    U, S, Vh = lowrank_svd(B, A)
    assert S.numel() == 3
    assert torch.allclose((U * S) @ Vh, (B @ A).double(), atol=1e-10)
    Q = nearest_orthogonal(torch.randn(8, 3, generator=g))
    assert torch.allclose(Q.T @ Q, torch.eye(3, dtype=torch.float64), atol=1e-12)


def test_flatten_spectrum_keeps_zero_and_rank():
    assert torch.equal(flatten_spectrum(torch.zeros(4, 3)), torch.zeros(4, 3))
    M = make_deltas((10, 8), (2,))[0].dense()
    S = nonzero_spectrum(flatten_spectrum(M))
    assert S.numel() == 2 and torch.allclose(S, torch.linalg.svdvals(M.double())[:2].mean().expand(2))


# ----------------------------------------------------------------------------- TIES pieces

def test_trim_keeps_the_requested_fraction_of_largest_entries():
    x = torch.randn(10, 10, generator=torch.Generator().manual_seed(2))
    for pct, expected in [(37, 37), (80, 80), (0.4, 1), (100, 100)]:
        kept = trim_top_k(x, pct)
        assert int((kept != 0).sum()) == expected
        if expected < 100:
            assert float(kept[kept != 0].abs().min()) >= float(x[kept == 0].abs().max())


def test_trim_breaks_ties_by_position():
    x = torch.tensor([[3.0, -3.0], [1.0, 3.0]])
    assert torch.equal(trim_top_k(x, 50), torch.tensor([[3.0, -3.0], [0.0, 0.0]]))
    assert torch.equal(trim_top_k(x, 50), ref_trim(x, 50))


def test_disjoint_mean_hand_example():
    stack = torch.tensor([[[1.0, -2.0], [3.0, 0.0]],
                          [[3.0, 1.0], [-1.0, 0.0]],
                          [[-1.0, -4.0], [-5.0, 2.0]]])
    sign = elect_sign(stack)
    assert torch.equal(sign, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    # zeros do not count: entry (1, 1) averages only the single 2.0
    assert torch.equal(disjoint_mean(stack, sign), torch.tensor([[2.0, -3.0], [-3.0, 2.0]]))
    tie = torch.tensor([[[1.0]], [[-1.0]]])
    assert torch.equal(disjoint_mean(tie, elect_sign(tie)), torch.zeros(1, 1))


# ----------------------------------------------------------------------------- DARE

def test_dare_drop_is_seeded_and_rescaled():
    x = torch.ones(100, 100)
    a, b = dare_drop(x, 0.3, 7, "task0/q"), dare_drop(x, 0.3, 7, "task0/q")
    assert torch.equal(a, b)
    assert not torch.equal(a, dare_drop(x, 0.3, 8, "task0/q"))
    assert not torch.equal(a, dare_drop(x, 0.3, 7, "task1/q"))
    assert abs(float((a == 0).float().mean()) - 0.3) < 0.03
    assert torch.allclose(a[a != 0], torch.full_like(a[a != 0], 1 / 0.7))
    assert dare_drop(x, 0.0, 7, "task0/q") is x


def test_dare_mask_does_not_depend_on_other_kept_tasks():
    shape, ranks = LOW_RANK
    d1, d2, d3 = make_deltas(shape, ranks)
    p = params(lam=1.0, drop_rate=0.4)
    alone = merge("dare", [d1], p, shape)
    assert_close(merge("dare", [d1, d2], p, shape) - merge("dare", [d2], p, shape), alone.double())
    assert_close(merge("dare", [d1, d3], p, shape) - merge("dare", [d3], p, shape), alone.double())
    reseeded = merge("dare", [d1, d2], p.replace(seed=6), shape)
    assert not torch.equal(merge("dare", [d1, d2], p, shape), reseeded)


def test_dare_without_drop_equals_ta_and_ties():
    shape, ranks = SATURATED
    deltas = make_deltas(shape, ranks)
    p = params(drop_rate=0.0)
    assert_close(merge("dare", deltas, p, shape), merge("ta", deltas, p, shape).double())
    assert torch.equal(merge("dare_ties", deltas, p, shape), merge("ties", deltas, p, shape))


# ----------------------------------------------------------------------------- validation and errors

@pytest.mark.parametrize("method,bad,message", [
    ("ta", dict(lam=float("nan")), "--lam / merge.lam: lam must be a finite number, got nan"),
    ("ta", dict(lam=float("inf")), "lam must be a finite number, got inf"),
    ("ties", dict(top_k=0.0), "--top-k / merge.top_k: top_k must be a number in (0, 100], got 0.0"),
    ("ties", dict(top_k=100.5), "top_k must be a number in (0, 100], got 100.5"),
    ("ties", dict(top_k=-5.0), "top_k must be a number in (0, 100], got -5.0"),
    ("dare", dict(drop_rate=1.0), "drop_rate must be a number in [0, 1), got 1.0"),
    ("dare", dict(drop_rate=-0.1), "drop_rate must be a number in [0, 1), got -0.1"),
    ("dare", dict(seed=-1), "seed must be an integer ≥ 0, got -1"),
    ("knots", dict(inner="tsv"), "inner must be one of ties, ta, got 'tsv'"),
    ("core_space", dict(inner="bogus"), "inner must be one of tsv, ta, ties, iso_c, got 'bogus'"),
    ("ta", dict(inner="ties"), "merge method 'ta' takes no inner — use inner only with knots or core_space"),
    ("ties", dict(order="align_then_prune"), "merge method 'ties' takes no order — use order only with knots or "
                                             "core_space"),
    ("knots", dict(order="align"), "order must be one of prune_then_align, align_then_prune, got 'align'"),
    ("ta", dict(lamda=1.0), "merge.lamda: unknown merge parameter 'lamda' — ta accepts: lam, iso"),
])
def test_method_params_rejects_bad_values_in_one_line(method, bad, message):
    with pytest.raises(EnmpError, match=re.escape(message)) as err:
        method_params(method, **bad)
    assert "\n" not in err.value.line()


def test_method_params_accepts_documented_choices():
    """Every documented inner choice validates, and resolving names the inner method that will run: the
    chosen one, else the method's default (None for methods without one)."""
    checked = 0
    for method in available_methods():
        info = get_method(method)
        for inner in (None, *info.inner_choices):
            p = MergeParams(lam=1.2, top_k=80, drop_rate=0.1, inner=inner)
            full = resolved(method, p)  # a record may carry other methods' values: each reads its own
            assert getattr(full, "inner", None) == (inner or info.default_inner)
            assert full == method_params(method, **{k: v for k, v in p.to_dict().items()
                                                              if k in info.options})
            assert full.lam == 1.2 and set(full.to_dict()) == {*info.uses, "iso"}
            checked += 1
    assert checked > len(available_methods())  # knots and core_space offer inner choices


def test_resolved_records_are_canonical_and_hashable():
    """Equal merges give equal records and cache keys, whatever was given and in which order."""
    a = resolved("ties", MergeParams(top_k=80.0, lam=1.0, drop_rate=0.3))
    b = resolved("ties", MergeParams(lam=1, iso=False))
    assert a == b and a.cache_key() == b.cache_key() and hash(a) == hash(b)
    assert a.replace(lam=0.5) != a and a.replace(lam=0.5).lam == 0.5 and a.lam == 1.0
    with pytest.raises(AttributeError, match="not set"):
        MergeParams(lam=1.0).top_k
    with pytest.raises(EnmpError, match="unknown merge parameter 'topk'"):
        resolved("ties", MergeParams(topk=80.0))


def test_unknown_method_raises():
    deltas = make_deltas((4, 3), (1,))
    for call in (lambda: merge("nope", deltas, MergeParams(), (4, 3)), lambda: get_method("nope"),
                 lambda: method_params("nope")):
        with pytest.raises(EnmpError, match="unknown merge method"):
            call()


@pytest.mark.parametrize("method,inner", [("knots", "tsv"), ("core_space", "knots")])
def test_merge_rejects_unsupported_inner_even_without_validation(method, inner):
    deltas = make_deltas((6, 5), (2, 3))
    with pytest.raises(EnmpError, match="inner"):
        merge(method, deltas, MergeParams(inner=inner), (6, 5))


@pytest.mark.parametrize("method", ["ta", "tsv", "knots", "iso_c"])
def test_non_finite_factors_raise_numerical_error(method):
    delta = make_deltas((6, 5), (2,))[0]
    delta.B[0, 0] = float("nan")
    with pytest.raises(NumericalError):
        merge(method, [delta], MergeParams(), (6, 5))
