"""The dry run itself: print what the config means for the real run, then run it on the tiny stand-in.

The real Workspace and Evaluator score each expert, the full merge and the first search candidate exactly
as a run would, so a config error or a bug on the run's path shows up in seconds instead of after the
downloads.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from rich.console import Console

from ...architectures import Architecture, architecture_of
from ...config import RunConfig
from ...errors import EnmpError, first_line
from ...evaluation import get_kind
from ...masking import prune_budget
from .heads import check_real_head, class_count
from .stand_in import build_stand_in


def _describe(cfg: RunConfig, base_id: str, arch: Architecture, ok: Callable[[str], None],
              note: Callable[[str], None]) -> dict[str, int]:
    """Print the real run's shape, tasks and what is not checked offline; returns {task: classes}."""
    L = arch.real.get("num_hidden_layers")
    ok(f"base {base_id}: {arch.model_type}, {L} layers; adapters on {', '.join(arch.targets)}")
    T = len(cfg.tasks)
    if L and cfg.search.grouping == "layer":
        k = prune_budget(cfg.search.rho, T * L)  # the search's own budget, float rounding included
        ok(f"real search space: mask {T}×{L} = {T * L} modules, prune at most {k} (rho {cfg.search.rho}); "
           f"{cfg.search.generations} generations × population {cfg.search.popsize}")
    counts = {}
    for tc in cfg.tasks:
        n, source = class_count(tc)
        counts[tc.name] = n
        ok(f"task {tc.name}: {tc.kind}, {n} classes ({source}); head: "
           f"{check_real_head(tc, n, arch.feature_dim)}; adapter {tc.adapter}")
        d = tc.data
        src = f"hub {d.hub}" + (f" ({d.subset})" if d.subset else "") if d.hub else "local files"
        cols = ", ".join(f"{r}={getattr(d, r)}" for r in ("text", "text_pair", "image", "label")
                         if getattr(d, r) and not (r == "text" and d.image))
        note(f"  data: {src}, splits {d.splits if d.hub else sorted(d.files or {})}, columns {cols} "
             "(not checked offline)")
    if cfg.parallel.workers > 1 or cfg.parallel.ray_address:
        where = cfg.parallel.ray_address or "a local Ray cluster"
        note(f"parallel: {cfg.parallel.workers} Ray workers on {where}, device {cfg.eval.device} "
             "(not started in a dry run)")
    return counts


def _first_candidate(cfg: RunConfig, shape: tuple[int, int]) -> tuple[np.ndarray, str]:
    """The search's own first population's most pruned mask. CMA-ES starts at the full merge, so when no
    candidate prunes anything yet, prune the budget's worth of random modules: that path must run too."""
    from ..run.search_run import make_strategy

    mask = max((c.mask for c in make_strategy(cfg, shape).ask()), key=lambda m: int((~m).sum()))
    if not mask.all():
        return mask, f"first {cfg.search.strategy} population"
    k = max(1, prune_budget(cfg.search.rho, mask.size))
    flat = np.ones(mask.size, dtype=bool)
    flat[np.random.default_rng(0).choice(mask.size, size=k, replace=False)] = False
    return flat.reshape(mask.shape), "random"


def dry_run(cfg: RunConfig, console: Optional[Console] = None, *, workdir: Optional[str | Path] = None,
            n_examples: int = 4) -> dict:
    """Validate `cfg` offline on a tiny random model of the same architecture; returns a summary dict."""
    from ..scoring.local import LocalEvaluator
    from ..loading.model import quiet_transformers
    from ..loading.workspace import build_workspace

    quiet_transformers()
    cfg = cfg.model_copy(update={"search": cfg.search.resolved()})  # the strategy's own sizes, written out
    own = [tc for tc in cfg.tasks if get_kind(tc.kind).brings_data]
    if own:
        raise EnmpError(f"task '{own[0].name}' (kind {own[0].kind}) reads its examples from its own source, which "
                        "the dry run cannot stand in for offline", where="--dry-run",
                        fix="run the search for real with a small limit (e.g. limit: 8 on the task) to check it")
    console = console or Console()
    ok = lambda msg: console.print(f"[green]✓[/] {msg}", highlight=False)  # noqa: E731
    note = lambda msg: console.print(f"[yellow]·[/] {msg}", highlight=False)  # noqa: E731
    started = time.perf_counter()

    params = cfg.merge.params()
    ok(f"config: {len(cfg.tasks)} tasks ({', '.join(t.name for t in cfg.tasks)}), merge {cfg.merge.method} "
       f"({', '.join(f'{k}={v}' for k, v in params.to_dict().items() if v is not None)})")
    base_id, arch = architecture_of(cfg.base)
    counts = _describe(cfg, base_id, arch, ok, note)

    tmp_ctx = tempfile.TemporaryDirectory(prefix="enmp-dry-run-") if workdir is None else None
    root = Path(workdir) if workdir is not None else Path(tmp_ctx.name)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            tiny, info = build_stand_in(cfg, arch, counts, root, n_examples)
            ok(f"built a tiny {arch.model_type} base ({info['layers']} layers, random weights), {len(cfg.tasks)} "
               f"PEFT adapters with the published module names, heads and {n_examples} fake examples per split")
            step = "loading the tiny run (base, adapters, heads, data)"
            try:
                ws = build_workspace(tiny)
                ev = LocalEvaluator(ws, cfg.merge.method, params)
                ok(f"workspace: {len(ws.adapters.targets)} adapted matrices in {len(ws.groups)} layers, mask "
                   f"shape {ev.shape}; eval dtype {cfg.eval.dtype}")
                step = "scoring the experts"
                expert = ev.compute_expert("val")
                ok("experts scored alone: " + ", ".join(f"{t} {v:.0f}" for t, v in expert.items()))
                step = "evaluating a merge"
                full = ev.evaluate(np.ones(ev.shape, dtype=bool), "val")
                mask, origin = _first_candidate(cfg, ev.shape)
                res = ev.evaluate(mask, "val")
            except EnmpError as e:
                raise EnmpError(f"failed while {step} (on a tiny stand-in for {base_id}): {e.line()}",
                                where="--dry-run") from None
            except Exception as e:  # a bug the real run would hit too: one line, not a traceback
                raise EnmpError(f"failed while {step}: {first_line(e, 300, with_type=True)}",
                                where="--dry-run") from None
            if res.error:
                raise EnmpError(f"the candidate failed: {res.error}", where="--dry-run")
            ok(f"merged and evaluated: full merge fitness {full.fitness:.1f}; a {origin} candidate pruning "
               f"{int((~mask).sum())} of {mask.size} modules: fitness {res.fitness:.1f} (random weights: the numbers "
               "mean nothing)")
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
    seconds = time.perf_counter() - started
    console.print(f"[bold green]dry run passed[/] in {seconds:.1f} s — not checked offline: hub ids and access, "
                  "real dataset columns and splits, real weights", highlight=False)
    return {"base": base_id, "tasks": [t.name for t in cfg.tasks], "classes": counts, "shape": ev.shape,
            "fitness": res.fitness, "full_fitness": full.fitness, "n_pruned": int((~mask).sum()),
            "seconds": seconds}
