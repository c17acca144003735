"""enmp — merge LoRA experts with Evolutionary Negative Module Pruning (arXiv 2604.17753).

The public API is `enmp.api` (documented in the docs' API reference), also importable from here:
``from enmp import run_search, load_config``. Names are imported on first use, so ``import enmp`` (and the
CLI's start) stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = ("Candidate", "Decision", "Estimate", "Evaluator", "LocalEvaluator", "Mask", "MergeParams", "Outcome",
        "RunConfig", "RunInputs", "RunReport", "SearchRun", "Strategy", "Subset", "ValidationData", "Workspace",
        "available_methods", "available_strategies", "build_workspace", "dry_run", "fitness", "get_method", "get_strategy",
        "load_config", "load_inputs", "make_strategy", "merge", "merge_kept", "merge_to_dir", "method_params",
        "parse_config", "print_report", "probe_cost", "run_probe", "run_search", "summary", "tune_lambda", "write_run_plots")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'enmp' has no attribute {name!r}")
