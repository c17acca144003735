"""Run-level fixtures: tiny base + adapters + heads + labelled data + a run YAML, for each family.

Labels are random, so accuracies mean nothing; these fixtures exercise the plumbing (files, shapes,
patching, outputs) exactly as a real run would, in seconds.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
from pathlib import Path

import torch
import yaml

from enmp.tiny import feature_dim, make_task_set, sentence, write_csv, write_head, write_images


def make_run(tmp_path: Path, family: str = "bert", n_tasks: int = 3, n_val: int = 24, n_test: int = 24,
             n_classes: int = 3, seed: int = 0, **search) -> Path:
    """Write base, adapters, heads, data and run.yaml under tmp_path; returns the YAML path."""
    tmp_path = Path(tmp_path)
    base, adapters = make_task_set(tmp_path, family, n_tasks=n_tasks)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    labels = [f"c{i}" for i in range(n_classes)]
    tasks = []
    for name, adir in adapters.items():
        entry = {"name": name, "adapter": str(adir.relative_to(tmp_path)), "kind": "classification"}
        files = {}
        for split, n in (("val", n_val), ("test", n_test)):
            if family == "clip":
                images = write_images(tmp_path / "images" / name / split, rng, n)
                rows = [{"image": p, "label": rng.choice(labels)} for p in images]
            else:
                rows = [{"text": sentence(rng), "label": rng.choice(labels)} for _ in range(n)]
            write_csv(tmp_path / "data" / name / f"{split}.csv", rows)
            files[split] = f"data/{name}/{split}.csv"
        entry["data"] = {"files": files, "text": None if family == "clip" else "text",
                         "image": "image" if family == "clip" else None}
        if family == "llama":
            entry.update(kind="causal_lm", prompt="{text} ?", label_words=["yes", "no", "fine"][:n_classes],
                         labels=labels)
        else:
            write_head(adir, labels, feature_dim(base), generator=gen, bias=family != "clip",
                       unit_rows=family == "clip", pooling="mean")
            if family == "clip":
                entry["kind"] = "clip_zero_shot"
        tasks.append(entry)
    cfg = {"base": "base", "tasks": tasks, "merge": {"method": "ta", "lam": 0.5},
           "search": {"strategy": "cma", "generations": 2, "popsize": 4, "rho": 0.34, "seed": 1,
                      "random_repeats": 2, **search},
           "eval": {"batch_size": 8, "max_length": 16}, "output": {"save_adapter": True}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def cli(*args) -> tuple[int, str, str]:
    """Run `enmp ARGS` in-process; returns (exit code, stdout, stderr) with colour codes stripped."""
    from enmp.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, ANSI.sub("", out.getvalue()), ANSI.sub("", err.getvalue())
