"""Inputs for the bad-input matrix (tests/test_bad_inputs.py): a shared tiny run, and builders that each
break one thing in a copy of it (adapters, base, masks, outputs, run configs, report dirs)."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from enmp.tiny import make_lora_adapter, make_tiny_bert, make_tiny_llama
from tiny_runs import make_run

# --------------------------------------------------------------------------------------------- fixtures
class Env:
    """Shared, read-only inputs: a tiny BERT run (base, 2 adapters with heads, data, YAML) plus adapters
    that do not fit it. Cases copy what they break into their own tmp dir."""

    def __init__(self, root: Path):
        self.root = root
        cfg_path = make_run(root / "run", "bert", n_tasks=2, n_val=8, n_test=8, generations=1, popsize=2,
                            random_repeats=0)
        run = cfg_path.parent
        self.base = run / "base"
        self.a0, self.a1 = run / "task0", run / "task1"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["base"] = str(self.base)  # absolute paths, so mutated copies can live anywhere
        for t in cfg["tasks"]:
            t["adapter"] = str(run / t["adapter"])
            t["data"]["files"] = {k: str(run / v) for k, v in t["data"]["files"].items()}
        cfg["search"]["track_test"] = False
        self.cfg = cfg
        self.llama_adapter = make_lora_adapter(make_tiny_llama(root / "llama"), root / "llama_lora", family="llama")
        wide = make_tiny_bert(root / "bert48", hidden_size=48)
        self.wide_adapter = make_lora_adapter(wide, root / "bert48_lora", family="bert")
        self.qv_adapter = make_lora_adapter(self.base, root / "qv_lora", family="bert", seed=7,
                                            target_modules=["query", "value"])






def snapshot(*roots: Path) -> dict[str, tuple[str, int]]:
    """Every file under `roots`: content hash and mtime, to prove nothing pre-existing was touched."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


def leftovers(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ merge inputs
def merge_args(env: Env, tmp: Path, *extra, adapters=None) -> list:
    adapters = adapters if adapters is not None else {"task0": env.a0, "task1": env.a1}
    flags = [x for n, p in adapters.items() for x in ("--adapter", f"{n}={p}")]
    if "--out" not in extra:
        extra = (*extra, "--out", tmp / "out")
    return ["merge", "--base", env.base, *flags, *extra]


def broken_adapter(env: Env, tmp: Path, how: str) -> Path:
    """A copy of task1 with one defect."""
    d = tmp / f"adapter_{how}"
    shutil.copytree(env.a1, d)
    f = d / "adapter_model.safetensors"
    if how == "no_safetensors":
        f.unlink()
    elif how == "empty":
        f.write_bytes(b"")
    elif how == "truncated":
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    elif how == "pickled":
        torch.save(load_file(str(f)), d / "adapter_model.bin")
        f.unlink()
    elif how in ("nan", "inf"):
        tensors = load_file(str(f))
        key = sorted(k for k in tensors if ("lora_B" if how == "nan" else "lora_A") in k)[1]
        tensors[key][0, 1] = float(how)
        save_file(tensors, str(f))
    return d


def pickled_base(env: Env, tmp: Path) -> Path:
    d = tmp / "base_bin"
    shutil.copytree(env.base, d)
    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    return d


def mask_file(tmp: Path, data) -> Path:
    p = tmp / "mask.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def existing_out(tmp: Path) -> Path:
    out = tmp / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"previous merge")
    (out / "notes.txt").write_text("keep me")
    return out


def unwritable_out(tmp: Path) -> Path:
    """A directory we cannot create: chmod works for normal users; root (CI) ignores it, so use /proc."""
    if os.geteuid() != 0:
        locked = tmp / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "out"
    if not Path("/proc/self").exists():
        pytest.skip("running as root without /proc: no unwritable location to test with")
    return Path("/proc/enmp-test-out")


def out_under_file(tmp: Path) -> Path:
    (tmp / "plain.txt").write_text("a file")
    return tmp / "plain.txt" / "out"


# ----------------------------------------------------------------------------------------- search inputs
def search_args(env: Env, tmp: Path, mutate: Callable[[dict], None] | None = None, *extra) -> list:
    cfg = copy.deepcopy(env.cfg)
    if mutate:
        mutate(cfg)
    path = tmp / "run.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False))
    if "--out" not in extra:
        extra = (*extra, "--out", tmp / "run_out")
    return ["search", "--config", path, *extra]


def set_key(section: str | None, key: str, value) -> Callable[[dict], None]:
    def mutate(cfg: dict) -> None:
        (cfg.setdefault(section, {}) if section else cfg)[key] = value

    return mutate


def with_data(tmp: Path, text: str, task: int = 0) -> Callable[[dict], None]:
    """Point task `task`'s val split at a CSV with `text`."""
    path = tmp / f"val{task}.csv"
    path.write_text(text)

    def mutate(cfg: dict) -> None:
        cfg["tasks"][task]["data"]["files"]["val"] = str(path)

    return mutate


def dup_names(cfg: dict) -> None:
    cfg["tasks"][1]["name"] = cfg["tasks"][0]["name"]


def no_label_column(cfg: dict) -> None:
    cfg["tasks"][0]["data"]["label"] = "sentiment"


def missing_data_file(cfg: dict) -> None:
    cfg["tasks"][1]["data"]["files"]["test"] = "/nonexistent/enmp/test.csv"


def lm_eval_args(env: Env, tmp: Path, **task) -> list:
    """`enmp search` on one lm_eval task over the tiny Llama (a local multiple-choice task YAML, changed by
    `task`: the task config's keys, and `dataset_path` for the YAML's)."""
    from lm_eval_tasks import write_mc_task

    path = write_mc_task(tmp / "lm_eval", "pick", {"validation": 4, "test": 4})
    if "dataset_path" in task:
        data = yaml.safe_load(path.read_text())
        data.update(dataset_path=task.pop("dataset_path"), dataset_kwargs=None)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = {"base": str(env.root / "llama"), "tasks": [{"name": "pick", "adapter": str(env.llama_adapter),
                                                      "kind": "lm_eval", "task": str(path), **task}],
           "search": {"generations": 1, "popsize": 2, "rho": 0.5, "random_repeats": 0, "track_test": False}}
    (tmp / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return ["search", "--config", tmp / "run.yaml", "--out", tmp / "run_out"]


def report_dir(tmp: Path, content: str | None) -> Path:
    d = tmp / "run_dir"
    d.mkdir()
    (d / "config.yaml").write_text("base: x\n")
    if content is not None:
        (d / "report.json").write_text(content)
    return d
