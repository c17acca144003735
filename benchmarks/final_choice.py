"""Final-choice benchmark: how would `fast` have ended under other `final` options, on the same searches?

`fast`'s racing never looks at its final-choice options, so a finished run's journal holds everything
such a variant needs up to its last round. Per run directory and variant: copy the run, cut off the
held-out round, set the variant's options and `--resume` it (the real code path, `SearchRun`), which scores
the variant's own contenders on the held-out folds and its chosen mask on val and test. Prints per variant
the test Δ over the full merge per run, their mean and how many were negative; writes JSON.

Choose variants on runs of `benchmarks/quality.py --dev` (its "test" is a third of validation); report
them on the real protocol's runs. The variants must not change racing options (the journal would not
replay): only `final`, `contenders`, `voters` and `confirm_z`.

Usage: python benchmarks/final_choice.py RUN_DIR... [--variants JSON] --out results.json
  (RUN_DIR: a finished `fast` run, e.g. runs/quality/ta/fast-1; a folder of such runs is searched)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from enmp import RunReport, SearchRun, build_workspace, load_config
from enmp.atomic_files import atomic_write_json
from enmp.engine.run.journal import Journal  # internal on purpose: a replay cuts a run's journal
from environment import machine  # benchmarks/environment.py

FINAL_OPTIONS = {"final", "contenders", "voters", "confirm_z"}
DEFAULT_VARIANTS = {"best": {"final": "best"}, "consensus3": {"final": "consensus", "voters": 3},
                    "consensus8": {"final": "consensus", "voters": 8}, "surrogate": {"final": "surrogate"},
                    "union": {"final": "union"}, "best_z1": {"final": "best", "confirm_z": 1.0}}


def cut_final_round(run_dir: Path) -> bool:
    """Drop the journal's last round if it is the held-out one (every row a contender put to the check)."""
    j = Journal.load(run_dir)
    last = [e for e in j.evaluations if e["generation"] == j.generation]
    if not last or any(e.get("tag") != "final" for e in last):
        return False  # ended without a held-out round (no mask beat the full merge on the search folds)
    j.rewind(j.generation - 1)
    return True


def replay(run_dir: Path, options: dict, ws_cache: dict, console: Console) -> dict:
    cfg = load_config(run_dir / "config.yaml")
    if cfg.search.strategy != "fast":
        raise SystemExit(f"{run_dir}: a {cfg.search.strategy} run; only fast runs have a final choice to vary")
    if set(options) - FINAL_OPTIONS:
        raise SystemExit(f"variant options {sorted(set(options) - FINAL_OPTIONS)} change racing; only "
                         f"{sorted(FINAL_OPTIONS)} may vary")
    cfg = cfg.model_copy(update={"search": cfg.search.model_copy(
        update={"options": {**cfg.search.options, **options}, "random_repeats": 0, "greedy_baseline": False})})
    key = cfg.model_dump_json(include={"base", "tasks", "data", "eval"})
    if key not in ws_cache:
        ws_cache[key] = build_workspace(cfg)
    ws = ws_cache[key]
    with tempfile.TemporaryDirectory(prefix="enmp-final-") as tmp:
        copy = Path(tmp) / "run"
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("model", "adapter", "*.png"))
        cut_final_round(copy)
        report = SearchRun(cfg, copy, resume=True, console=console, workspace=ws, show_progress=False).run()
    return {"test_delta": report.gain("test"), "val_delta": report.gain("val"), "pruned": len(report.pruned),
            "decision": report.decision}


def run_dirs(paths: list[str]) -> list[Path]:
    """The runs named, and the finished `fast` runs under each folder named (other strategies skipped)."""
    out = []
    for p in map(Path, paths):
        if (p / "config.yaml").is_file():
            out.append(p)
            continue
        found = sorted(j.parent.parent for j in p.rglob("state/journal.json"))
        out += [d for d in found if (d / "report.json").is_file()
                and load_config(d / "config.yaml").search.strategy == "fast"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--variants", default=json.dumps(DEFAULT_VARIANTS), help="JSON: name → final options")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    console, variants, ws_cache = Console(width=160), json.loads(args.variants), {}
    results: dict = {}
    for d in run_dirs(args.runs):
        results[str(d)] = {name: replay(d, opts, ws_cache, console) for name, opts in variants.items()}
        if (d / "report.json").is_file():  # what the run itself ended with: a check on the replays
            report = RunReport.load(d)
            results[str(d)]["as_run"] = {"test_delta": report.gain("test"), "pruned": len(report.pruned)}
        console.log(f"{d}: " + ", ".join(f"{n} {r['test_delta']:+.2f}" for n, r in results[str(d)].items()))
    summary = {}
    for name in variants:  # (as_run is a check, not a variant: it is left out of the summary)
        deltas = np.array([results[d][name]["test_delta"] for d in results])
        summary[name] = {"mean_test_delta": float(deltas.mean()), "negative": int((deltas < -1e-9).sum()),
                         "kept_full": sum(results[d][name]["pruned"] == 0 for d in results)}
    table = Table(title="test Δ over the full merge per run, by final-choice variant")
    table.add_column("run")
    for name in variants:
        table.add_column(name, justify="right")
    for d, row in results.items():
        table.add_row("/".join(Path(d).parts[-2:]), *(f"{row[n]['test_delta']:+.2f} ({row[n]['pruned']})" for n in variants))
    table.add_row("mean (negative, full kept)", *(f"{s['mean_test_delta']:+.2f} ({s['negative']}, {s['kept_full']})"
                                                 for s in summary.values()))
    console.print(table)
    atomic_write_json(Path(args.out), {"variants": variants, "summary": summary, "runs": results,
                                       "command": " ".join(["python", "benchmarks/final_choice.py", *sys.argv[1:]]),
                                       "machine": machine()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
