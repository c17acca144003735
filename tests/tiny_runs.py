"""Run-level fixtures: tiny base + adapters + heads + labelled data + a run YAML, for each family.

Labels are random, so accuracies mean nothing; these fixtures exercise the plumbing (files, shapes,
patching, outputs) exactly as a real run would, in seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from enmp.engine.dry_run import write_csv
from tiny import WORDS, make_task_set

HIDDEN = 32


def _sentences(rng: random.Random, n: int) -> list[str]:
    vocab = [w for w in WORDS if w.isalpha() and len(w) > 1]
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(3, 9))) for _ in range(n)]


def _write_images(root: Path, rng: random.Random, n: int) -> list[str]:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        px = bytes(rng.randrange(256) for _ in range(32 * 32 * 3))
        p = root / f"img{i}.png"
        Image.frombytes("RGB", (32, 32), px).save(p)
        paths.append(str(p))
    return paths


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
                images = _write_images(tmp_path / "images" / name / split, rng, n)
                rows = [{"image": p, "label": rng.choice(labels)} for p in images]
            else:
                rows = [{"text": s, "label": rng.choice(labels)} for s in _sentences(rng, n)]
            write_csv(tmp_path / "data" / name / f"{split}.csv", rows)
            files[split] = f"data/{name}/{split}.csv"
        entry["data"] = {"files": files, "text": None if family == "clip" else "text",
                         "image": "image" if family == "clip" else None}
        if family == "llama":
            entry.update(kind="causal_lm", prompt="{text} ?", label_words=["yes", "no", "fine"][:n_classes],
                         labels=labels)
        else:
            dim = 16 if family == "clip" else HIDDEN  # CLIP projection dim of the tiny model
            head = {"weight": torch.randn(n_classes, dim, generator=gen), "bias": torch.randn(n_classes, generator=gen)}
            if family == "clip":
                head = {"weight": torch.nn.functional.normalize(head["weight"], dim=-1)}
            save_file(head, str(adir / "head.safetensors"))
            (adir / "head.json").write_text(json.dumps({"labels": labels, "pooling": "mean"}))
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
