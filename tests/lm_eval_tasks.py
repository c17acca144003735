"""Offline lm-eval tasks for the `lm_eval` kind's tests: small multiple-choice tasks over local JSONL files
(a task YAML with `dataset_path: json`, as a user would write one), and a run config on a tiny random Llama.

Questions and choices use the tiny tokenizer's vocabulary, so every token is a real one; answers are random,
so accuracies mean nothing — the tests compare enmp's numbers with lm-eval's own, not with a truth.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Optional

import yaml

from enmp.tiny import WORDS, make_task_set

PROMPTS = {"pick": "{{question}} ?", "odd": "question {{question}} . answer"}
SPLITS = ("validation", "test")


def write_mc_task(root: Path, name: str, sizes: dict[str, int], *, seed: int = 0, prompt: Optional[str] = None,
                  words: Optional[list[str]] = None) -> Path:
    """JSONL files (one per split, `sizes` documents each, 2–4 choices) and the task YAML over them; returns
    the YAML's path. `words` default to the tiny vocabulary's alphabetic words."""
    rng = random.Random(seed)
    words = words or [w for w in WORDS if w.isalpha() and len(w) > 1]
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in sizes.items():
        path = root / f"{name}-{split}.jsonl"
        with path.open("w") as fh:
            for _ in range(n):
                choices = rng.sample(words, rng.randint(2, 4))
                question = " ".join(rng.choice(words) for _ in range(rng.randint(3, 7)))
                fh.write(json.dumps({"question": question, "choices": choices,
                                     "answer": rng.randrange(len(choices))}) + "\n")
        files[split] = str(path)
    task = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": files},
            "output_type": "multiple_choice", "validation_split": "validation", "test_split": "test",
            "doc_to_text": prompt or PROMPTS.get(name, "{{question}} ?"), "doc_to_choice": "{{choices}}",
            "doc_to_target": "answer",
            "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True}
                            for m in ("acc", "acc_norm")]}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(task, sort_keys=False))
    return path


def make_lm_eval_run(tmp: Path, n_val: int = 24, n_test: int = 16, **search) -> Path:
    """A tiny Llama, two LoRA experts and two lm_eval tasks ("pick", "odd") over local JSONL; returns the run
    YAML's path (task YAML paths in it are relative, as a user's would be)."""
    tmp = Path(tmp)
    _, adapters = make_task_set(tmp, "llama", n_tasks=2)
    tasks = []
    for (adapter, path), name in zip(adapters.items(), PROMPTS):
        yaml_path = write_mc_task(tmp / "lm_eval", name, {"validation": n_val, "test": n_test}, seed=len(tasks))
        tasks.append({"name": name, "adapter": str(path.relative_to(tmp)), "kind": "lm_eval",
                      "task": str(yaml_path.relative_to(tmp))})
    cfg = {"base": "base", "tasks": tasks, "merge": {"method": "ta", "lam": 0.5},
           "search": {"strategy": "cma", "generations": 2, "popsize": 4, "rho": 0.34, "seed": 1, "random_repeats": 1,
                      **search},
           "eval": {"batch_size": 8, "device": "cpu"}, "output": {"save_model": True}}
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ------------------------------------------------------------------ the reference: lm-eval on a model directory
def lm_eval_accuracies(model_dir: Path, task_yamls: dict[str, Path], split: str, *, batch_size: int,
                       metric: str = "acc") -> dict[str, float]:
    """`metric` (%) that `lm_eval.simple_evaluate` reports for the model saved in `model_dir` on one split of each
    task (its test_split set to `split`: lm-eval scores a task's test split), one task per call as enmp runs
    them; keyed by the names of `task_yamls`."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=str(model_dir), device="cpu", batch_size=batch_size, dtype="float32")
    out = {}
    for name, path in task_yamls.items():
        config = yaml.safe_load(Path(path).read_text())
        config["test_split"] = split
        result = simple_evaluate(lm, tasks=[config], num_fewshot=0, bootstrap_iters=0, log_samples=False,
                                 task_manager=TaskManager(include_defaults=False))
        out[name] = 100.0 * result["results"][config["task"]][f"{metric},none"]
    return out
