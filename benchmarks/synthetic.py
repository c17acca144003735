"""A synthetic benchmark set-up (random BERT, random LoRA experts and labels) for machines without the demo
cache, and for tests that check every benchmark still runs. Accuracies mean nothing; timings and
engine-vs-reference agreement do."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from enmp import RunConfig, load_config
from enmp.tiny import make_lora_adapter, make_tiny_bert, sentence, write_csv, write_head

#: the default: large enough that a candidate costs a fraction of a second; QUICK: seconds for a whole run
FULL = {"hidden": 128, "layers": 4, "n_tasks": 4, "n_val": 192, "n_test": 64}
#: (3 tasks × 4 layers: ρ 0.2 still prunes 2 modules, enough distinct masks for the engine benchmark)
QUICK = {"hidden": 32, "layers": 4, "n_tasks": 3, "n_val": 16, "n_test": 8}


def synthetic_setup(root: Path, *, hidden: int = 128, layers: int = 4, n_tasks: int = 4, n_val: int = 192,
                    n_test: int = 64) -> tuple[RunConfig, str]:
    """Write base, adapters, heads, data and run.yaml under `root`; returns the config and a description."""
    import yaml

    base = make_tiny_bert(root / "base", hidden_size=hidden, num_layers=layers, num_heads=4,
                          intermediate_size=2 * hidden)
    rng = random.Random(0)
    gen = torch.Generator().manual_seed(0)
    labels = ["c0", "c1", "c2"]
    tasks = []
    for i in range(n_tasks):
        name = f"task{i}"
        adir = make_lora_adapter(base, root / name, family="bert", r=8, alpha=16, seed=100 + i)
        write_head(adir, labels, hidden, generator=gen, bias=True, pooling="mean")
        files = {}
        for split, n in (("val", n_val), ("test", n_test)):
            rows = [{"text": sentence(rng), "label": rng.choice(labels)} for _ in range(n)]
            write_csv(root / "data" / name / f"{split}.csv", rows)
            files[split] = str(root / "data" / name / f"{split}.csv")
        tasks.append({"name": name, "adapter": str(adir), "data": {"files": files, "text": "text", "label": "label"}})
    cfg = {"base": str(base), "tasks": tasks, "merge": {"method": "ta", "lam": 0.5},
           "search": {"strategy": "cma", "generations": 5, "popsize": 16, "rho": 0.25, "sigma0": 1.0, "seed": 1,
                      "random_repeats": 0, "track_test": False},
           "eval": {"batch_size": 64, "max_length": 32}, "output": {"save_model": False}}
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return load_config(path), (f"synthetic (random BERT hidden {hidden} × {layers} layers, {n_tasks} tasks × "
                               f"{n_val} val examples)")
