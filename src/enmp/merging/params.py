"""Merge hyperparameters that several methods share, declared once; each method picks the ones it reads.

A method lists its parameters in its own module (`MergeMethod(..., params=Options(LAM, TOP_K.with_default(80.0)))`)
and re-defaults a shared one with `Option.with_default`. A parameter only one method reads is declared in that
method's module instead. Everything else — validation, the `merge:` config keys, the `enmp merge` flags and their
`--help`, the model card and its command line — is derived from these declarations, so a new parameter is one
`Option` in one file. Merge parameters are never nullable: under `merge:` a null means "the method's default"
(saved config.yaml files of earlier versions write null for the keys a method does not read).
"""

from __future__ import annotations

from ..options import Option, Options

LAM = Option("lam", float, 1.0, "Global scale λ")
TOP_K = Option("top_k", float, 100.0, "Percent of entries TIES trimming keeps", low=0, high=100, low_open=True)
DROP_RATE = Option("drop_rate", float, 0.0, "DARE drop rate p", low=0, high=1, high_open=True)
SEED = Option("seed", int, 0, "Seed for DARE's drop masks", low=0)

PRUNE_THEN_ALIGN, ALIGN_THEN_PRUNE = "prune_then_align", "align_then_prune"
#: the subspace methods' pruning order (paper §4.4): build the shared basis from the kept tasks only (the
#: paper's ENMP), or from every task and then drop the pruned tasks' aligned components
ORDER = Option("order", str, PRUNE_THEN_ALIGN, "Shared basis from the kept tasks only, or from every task with the "
               "pruned ones' components dropped after", choices=(PRUNE_THEN_ALIGN, ALIGN_THEN_PRUNE))

#: accepted by every method: the registry flattens the spectrum of any method's result (e.g. CoreSpace + Iso-C)
ISO = Option("iso", bool, False, "Flatten the spectrum of the result (Iso-C style)")
COMMON = Options(ISO)


def inner(choices: tuple[str, ...], default: str) -> Option:
    """The inner method a two-stage method (KnOTS, CoreSpace) runs on its aligned pieces."""
    return Option("inner", str, default, "Inner method", choices=choices)


def flag(name: str) -> str:
    """A parameter's `enmp merge` flag: `top_k` → `--top-k` (its run-config key is `merge.top_k`)."""
    return "--" + name.replace("_", "-")


def where(name: str) -> str:
    """Where a bad value came from, for error lines: a merge parameter is set by flag or by config key."""
    return f"{flag(name)} / merge.{name}"
