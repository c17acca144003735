"""Adapter loading and validation: scales agree with PEFT's own merge; every bad input is one EnmpError."""

from __future__ import annotations

import json
import math
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from enmp import tiny
from enmp.adapters import BaseCheckpoint, load_adapter, load_adapter_set, parse_module, pattern_value, resolve_dir
from enmp.cli.adapter_args import parse_adapter_args
from enmp.errors import EnmpError, NumericalError

PATTERNS = {  # rank_pattern / alpha_pattern per family, in PEFT's syntax (suffix regex on the module path)
    "bert": ({"layer.1.attention.self.query": 2, "value": 3}, {"key": 5, "layer.0.attention.output.dense": 7}),
    "llama": ({"layers.0.self_attn.k_proj": 2, "o_proj": 5}, {"v_proj": 3}),
    "clip": ({"out_proj": 2}, {"layers.1.self_attn.q_proj": 20}),
}


def _set(base: Path, adapters: dict) -> dict[str, str]:
    return {k: str(v) for k, v in adapters.items()}


@pytest.fixture(scope="module", params=tiny.FAMILIES)
def family_set(request, tmp_path_factory):
    """Per family: base + 3 adapters (ranks 4/2/6, one rsLoRA) + 2 with rank/alpha patterns (one rsLoRA)."""
    fam = request.param
    root = tmp_path_factory.mktemp(fam)
    base, ads = tiny.make_task_set(root, fam)
    rp, ap = PATTERNS[fam]
    for i, rs in enumerate((False, True)):
        ads[f"pat{i}"] = tiny.make_lora_adapter(base, root / f"pat{i}", family=fam, r=4, alpha=8, rslora=rs,
                                                rank_pattern=rp, alpha_pattern=ap, seed=200 + i)
    return fam, base, ads


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert_err")
    base, ads = tiny.make_task_set(root, "bert", n_tasks=2)
    return root, base, ads


def _copy(src: Path, dst: Path, tensors=None, config=None) -> Path:
    """Copy an adapter dir, optionally mutating its tensors dict / config dict in place."""
    shutil.copytree(src, dst)
    if tensors is not None:
        sd = load_file(dst / "adapter_model.safetensors")
        tensors(sd)
        save_file(sd, dst / "adapter_model.safetensors")
    if config is not None:
        cfg = json.loads((dst / "adapter_config.json").read_text())
        config(cfg)
        (dst / "adapter_config.json").write_text(json.dumps(cfg))
    return dst


# --------------------------------------------------------------------------------------- scales vs PEFT
def test_dense_delta_matches_peft_merge(family_set):
    fam, base_dir, ads = family_set
    base = BaseCheckpoint(base_dir)
    aset = load_adapter_set(base, _set(base_dir, ads))
    assert aset.layers == [0, 1] and len(aset.targets) == 8
    for i, (name, adir) in enumerate(ads.items()):
        merged = tiny.peft_merged_state(base_dir, adir, fam)
        for t in aset.targets:
            ours = base.read(t.weight).float() + aset.deltas(t, [i])[0].dense()
            torch.testing.assert_close(ours, merged[t.weight].float(), rtol=1e-5, atol=1e-5,
                                       msg=f"{fam}/{name}/{t.module}")


EXPECTED_PATTERN = {  # family: {module as loaded: (r, alpha)} for the PATTERNS above
    "bert": {
        "encoder.layer.1.attention.self.query": (2, 8), "encoder.layer.0.attention.self.query": (4, 8),
        "encoder.layer.0.attention.self.value": (3, 8), "encoder.layer.0.attention.self.key": (4, 5),
        "encoder.layer.0.attention.output.dense": (4, 7), "encoder.layer.1.attention.output.dense": (4, 8)},
    "llama": {"model.layers.0.self_attn.k_proj": (2, 8), "model.layers.1.self_attn.k_proj": (4, 8),
              "model.layers.0.self_attn.o_proj": (5, 8), "model.layers.1.self_attn.v_proj": (4, 3),
              "model.layers.1.self_attn.q_proj": (4, 8)},
    "clip": {"vision_model.encoder.layers.0.self_attn.out_proj": (2, 8),
             "vision_model.encoder.layers.1.self_attn.q_proj": (4, 20),
             "vision_model.encoder.layers.0.self_attn.q_proj": (4, 8)},
}


def test_pattern_scales_explicit(family_set):
    fam, _, ads = family_set
    plain, rs = load_adapter("p", str(ads["pat0"])), load_adapter("r", str(ads["pat1"]))
    for module, (r, alpha) in EXPECTED_PATTERN[fam].items():
        assert plain.factors[module].rank == r, module
        assert plain.factors[module].scale == pytest.approx(alpha / r), module
        assert rs.factors[module].scale == pytest.approx(alpha / math.sqrt(r)), module


def test_pattern_value_mirrors_peft():
    from peft.utils.other import get_pattern_key

    patterns = {"query": 1, r"layer\.1\..*value": 2, "attention.output.dense": 3, "1.attention.self.key": 4}
    for module in ["bert.encoder.layer.0.attention.self.query", "encoder.layer.1.attention.self.value",
                   "encoder.layer.0.attention.self.value", "encoder.layer.1.attention.output.dense",
                   "encoder.layer.11.attention.self.key", "encoder.layer.1.attention.self.key", "xquery"]:
        assert pattern_value(patterns, module, 0) == patterns.get(get_pattern_key(patterns.keys(), module), 0)


def test_mixed_ranks_and_describe(family_set):
    fam, base_dir, ads = family_set
    aset = load_adapter_set(BaseCheckpoint(base_dir), _set(base_dir, ads))
    rows = {r["task"]: r for r in aset.describe()}
    assert aset.tasks == list(ads)
    assert [rows[f"task{i}"]["ranks"] for i in range(3)] == [[4], [2], [6]]
    assert rows["task0"]["scales"] == [2.0] and rows["task1"]["scales"] == [2.0]
    assert rows["task2"]["rslora"] and rows["task2"]["scales"] == [pytest.approx(12 / math.sqrt(6), abs=1e-6)]
    assert len(rows["pat0"]["ranks"]) > 1
    assert rows["task0"]["path"] == str(ads["task0"]) and rows["task0"]["matrices"] == 8


def test_seq_cls_head_prefix_extra_and_mixed_heads(tmp_path):
    base_dir = tiny.make_tiny_bert(tmp_path / "base")
    cls = tiny.make_lora_adapter(base_dir, tmp_path / "cls", family="bert", head="seq_cls",
                                 modules_to_save=["classifier"], seed=3)
    plain = tiny.make_lora_adapter(base_dir, tmp_path / "plain", family="bert", seed=4)
    raw = load_adapter("cls", str(cls))
    assert all(m.startswith("bert.encoder.") for m in raw.factors)
    assert set(raw.extra) == {"classifier.weight", "classifier.bias"}
    base = BaseCheckpoint(base_dir)
    aset = load_adapter_set(base, {"cls": str(cls), "plain": str(plain)})  # different heads line up
    assert all(t.module.startswith("encoder.") and t.weight == t.module + ".weight" for t in aset.targets)
    merged = tiny.peft_merged_state(base_dir, cls, "bert", head="seq_cls")
    for t in aset.targets:
        ours = base.read(t.weight) + aset.deltas(t, [0])[0].dense()
        torch.testing.assert_close(ours, merged["bert." + t.weight], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(aset.adapters[0].extra["classifier.weight"], merged["classifier.weight"])


def test_default_adapter_suffix_and_modules_to_save_wrapper(bert, tmp_path):
    _, _, ads = bert

    def rename(sd):
        for k in list(sd):
            sd[k.replace(".weight", ".default.weight") if ".lora_" in k else k] = sd.pop(k)
        sd["base_model.model.classifier.modules_to_save.default.weight"] = torch.ones(2, 32)

    ad = load_adapter("x", str(_copy(ads["task0"], tmp_path / "x", tensors=rename)))
    ref = load_adapter("y", str(ads["task0"]))
    assert set(ad.factors) == set(ref.factors) and list(ad.extra) == ["classifier.weight"]


# ------------------------------------------------------------------------------------------ naming
@pytest.mark.parametrize("module, expected", [
    ("encoder.layer.0.attention.self.query", (0, "query")),
    ("bert.encoder.layer.11.attention.self.key", (11, "key")),
    ("roberta.encoder.layer.3.attention.self.value", (3, "value")),
    ("encoder.layer.2.attention.output.dense", (2, "attention.output.dense")),
    ("encoder.layer.2.intermediate.dense", (2, "intermediate.dense")),
    ("encoder.layer.2.output.dense", (2, "output.dense")),
    ("vit.encoder.layer.5.attention.attention.query", (5, "query")),
    ("model.layers.0.self_attn.q_proj", (0, "q_proj")),
    ("model.layers.31.self_attn.o_proj", (31, "o_proj")),
    ("model.layers.7.mlp.gate_proj", (7, "gate_proj")),
    ("model.layers.7.mlp.down_proj", (7, "down_proj")),
    ("vision_model.encoder.layers.1.self_attn.out_proj", (1, "out_proj")),
    ("text_model.encoder.layers.4.mlp.fc1", (4, "fc1")),
    ("gpt_neox.layers.2.attention.query_key_value", (2, "query_key_value")),
    ("distilbert.transformer.layer.5.attention.q_lin", (5, "attention.q_lin")),
])
def test_parse_module_builtin(module, expected):
    assert parse_module(module) == expected


def test_parse_module_user_regex():
    assert parse_module("net.blk3.wq", r"blk(?P<layer>\d+)\.(?P<proj>\w+)$") == (3, "wq")
    assert parse_module("net.blk3.attn.wq", r"blk(?P<layer>\d+)") == (3, "attn.wq")
    # the user regex overrides the built-ins
    assert parse_module("encoder.layer.0.attention.self.query", r"layer\.(?P<layer>\d+)\.(?P<proj>\w+)") == \
        (0, "attention")
    with pytest.raises(EnmpError, match="does not match module 'net.x'"):
        parse_module("net.x", r"blk(?P<layer>\d+)")
    with pytest.raises(EnmpError, match="no named group 'layer'"):
        parse_module("net.blk3.wq", r"blk(\d+)")
    with pytest.raises(EnmpError, match="invalid layer regex"):
        parse_module("net.blk3.wq", r"blk(?P<layer>\d+")


@pytest.mark.parametrize("module", ["classifier", "lm_head", "pooler.dense", "net.blk3.wq"])
def test_parse_module_unknown(module):
    with pytest.raises(EnmpError, match=rf"'{module}'.*--layer-regex"):
        parse_module(module)


def test_layer_regex_in_adapter_set(bert):
    _, base_dir, ads = bert
    aset = load_adapter_set(BaseCheckpoint(base_dir), _set(base_dir, ads),
                            layer_regex=r"layer\.(?P<layer>\d+)\.attention\.(?P<proj>.+)$")
    assert aset.projections == ["output.dense", "self.key", "self.query", "self.value"]


# ------------------------------------------------------------------------------------- base checkpoint
def test_base_checkpoint_and_find_weight(bert, tmp_path):
    _, base_dir, _ = bert
    base = BaseCheckpoint(base_dir)
    assert base.architecture == "BertModel" and base.weight_files == [base_dir / "model.safetensors"]
    w = "encoder.layer.0.attention.self.query.weight"
    assert base.shapes[w] == (32, 32) and base.dtypes[w] == "F32"
    assert {p.name for p in base.tokenizer_files} >= {"vocab.txt", "tokenizer_config.json"}
    assert base.find_weight("encoder.layer.0.attention.self.query") == w
    assert base.find_weight("bert.encoder.layer.0.attention.self.query") == w
    assert base.find_weight("encoder.layer.9.attention.self.query") is None
    assert dict(base.iter_tensors()).keys() == base.shapes.keys()
    # a checkpoint saved from a head model has the prefix; a BertModel-style adapter path still matches
    head_dir = tmp_path / "headbase"
    tiny.load_tiny_model(base_dir, "bert", head="seq_cls").save_pretrained(head_dir)
    assert BaseCheckpoint(head_dir).find_weight("encoder.layer.0.attention.self.query") == "bert." + w
    # sharded checkpoints read the same tensors
    sharded = BaseCheckpoint(tiny.make_tiny_bert(tmp_path / "sharded", max_shard_size="20KB"))
    assert len(sharded.weight_files) > 1 and sharded.shapes == base.shapes
    torch.testing.assert_close(sharded.read(w), base.read(w))


def test_find_weight_no_cross_tower_and_ambiguous(tmp_path):
    clip = BaseCheckpoint(tiny.make_tiny_clip(tmp_path / "clip"))
    assert clip.find_weight("text_model.encoder.layers.0.self_attn.q_proj") is None
    d = tmp_path / "amb"
    d.mkdir()
    (d / "config.json").write_text("{}")
    save_file({"a.x.q.weight": torch.zeros(2, 2), "b.x.q.weight": torch.zeros(2, 2)}, d / "model.safetensors")
    base = BaseCheckpoint(d)
    assert base.architecture is None and base.find_weight("a.x.q") == "a.x.q.weight"
    with pytest.raises(EnmpError, match="matches several base weights"):
        base.find_weight("x.q")


# ------------------------------------------------------------------------------------------ bad input
def test_missing_paths_and_offline_hub(tmp_path, monkeypatch):
    missing = tmp_path / "does-not-exist"
    with pytest.raises(EnmpError, match=f"cannot find base model '{missing}'"):
        BaseCheckpoint(missing)
    with pytest.raises(EnmpError, match="cannot find a adapter './nowhere/at/all': no such directory"):
        load_adapter("a", "./nowhere/at/all")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EnmpError, match="not a local directory and the hub download failed.*HF_HUB_OFFLINE=0"):
        resolve_dir("enmp-test-org/no-such-model", what="base model")
    with pytest.raises(EnmpError, match="cannot find x adapter 'enmp-test-org/no-such-lora': not a local"):
        load_adapter("x", "enmp-test-org/no-such-lora")


def test_bad_base_dirs(bert, tmp_path):
    _, base_dir, ads = bert
    no_cfg = tmp_path / "nocfg"
    shutil.copytree(base_dir, no_cfg)
    (no_cfg / "config.json").unlink()
    with pytest.raises(EnmpError, match="no config.json"):
        BaseCheckpoint(no_cfg)
    no_w = tmp_path / "now"
    no_w.mkdir()
    shutil.copy(base_dir / "config.json", no_w)
    with pytest.raises(EnmpError, match="no safetensors weights"):
        BaseCheckpoint(no_w)
    pickled = tmp_path / "pickled"
    shutil.copytree(no_w, pickled)
    torch.save({"x": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(EnmpError, match="only pickled weights; enmp loads safetensors only.*safe_serialization"):
        BaseCheckpoint(pickled)
    with pytest.raises(EnmpError, match="LoRA adapter, not a base model"):
        BaseCheckpoint(ads["task0"])


_V_B = "base_model.model.encoder.layer.1.attention.self.value.lora_B.weight"


def _pickled(d: Path) -> None:
    (d / "adapter_model.safetensors").unlink()
    torch.save({}, d / "adapter_model.bin")


def _set_key(key, value):
    return lambda sd: sd.__setitem__(key, value)


def _set_field(field, value):
    return lambda cfg: cfg.__setitem__(field, value)


# id: (mutate tensors, mutate config, mutate files, error, match; "{dir}" stands for the adapter directory)
BAD_FILES = {
    "no_safetensors": (None, None, lambda d: (d / "adapter_model.safetensors").unlink(), EnmpError,
                       "no adapter_model.safetensors"),
    "pickled": (None, None, _pickled, EnmpError, "pickled adapter.*convert to safetensors"),
    "no_config": (None, None, lambda d: (d / "adapter_config.json").unlink(), EnmpError, "no adapter_config.json"),
    "nan": (lambda sd: sd[_V_B].__setitem__((0, 0), float("nan")), None, None, NumericalError,
            "{dir}.*'" + re.escape(_V_B) + "' contains NaN"),
    "no_lora_B": (lambda sd: sd.pop(_V_B), None, None, EnmpError, r"self\.value' has lora_A but no lora_B"),
    "bad_B": (_set_key(_V_B, torch.ones(32, 3)), None, None, EnmpError, "inner ranks differ"),
    "bad_r": (None, _set_field("r", 8), None, EnmpError, "says r=8 but lora_A has rank 4"),
    "dora": (None, _set_field("use_dora", True), None, EnmpError, r"uses DoRA \(use_dora\)"),
    "ia3": (None, _set_field("peft_type", "IA3"), None, EnmpError, "peft_type 'IA3'"),
    "magnitude": (_set_key("base_model.model.x.lora_magnitude_vector", torch.ones(3)), None, None, EnmpError,
                  r"contains DoRA \(lora_magnitude_vector\)"),
    "embedding": (_set_key("base_model.model.embeddings.word_embeddings.lora_embedding_A", torch.ones(4, 3)),
                  None, None, EnmpError, "contains embedding LoRA"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_adapter_files(bert, tmp_path, case):
    tensors, config, files, error, match = BAD_FILES[case]
    d = _copy(bert[2]["task0"], tmp_path / case, tensors=tensors, config=config)
    if files is not None:
        files(d)
    with pytest.raises(error, match=match.replace("{dir}", re.escape(str(d)))):
        load_adapter("a", str(d))


def test_set_validation(bert, tmp_path):
    root, base_dir, ads = bert
    base = BaseCheckpoint(base_dir)
    with pytest.raises(EnmpError, match="no adapters given"):
        load_adapter_set(base, {})
    # adapter trained on a BERT with hidden size 48
    wide = tiny.make_tiny_bert(tmp_path / "wide", hidden_size=48)
    wide_ad = tiny.make_lora_adapter(wide, tmp_path / "wide_ad", family="bert")
    with pytest.raises(EnmpError, match=r"adapter 'wide' module 'encoder.layer.0.attention.output.dense' does not "
                                        r"fit .* expected B 32×r and A r×32, found B 48×4 and A 4×48"):
        load_adapter_set(base, {**_set(base_dir, ads), "wide": str(wide_ad)})
    # adapter for another architecture
    llama = tiny.make_tiny_llama(tmp_path / "llama")
    with pytest.raises(EnmpError, match="adapter 'll' adapts module 'model.layers.0.self_attn.k_proj'.*does not have"):
        load_adapter_set(base, {"ll": str(tiny.make_lora_adapter(llama, tmp_path / "ll", family="llama"))})
    # different target sets
    qv = tiny.make_lora_adapter(base_dir, tmp_path / "qv", family="bert", target_modules=["query", "value"])
    with pytest.raises(EnmpError, match=r"different matrices: 'qv' lacks 4 \(e.g. encoder.layer.0.attention.output"
                                        r".dense\); complete: 'task0', 'task1'"):
        load_adapter_set(base, {**_set(base_dir, ads), "qv": str(qv)})
    # a different declared base is only a warning
    renamed = _copy(ads["task0"], tmp_path / "renamed",
                    config=lambda c: c.__setitem__("base_model_name_or_path", "someone/other-model"))
    with pytest.warns(UserWarning, match="trained on 'someone/other-model'"):
        load_adapter_set(base, {"r": str(renamed)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        load_adapter_set(base, _set(base_dir, ads))


def test_parse_adapter_args():
    assert parse_adapter_args(["a=./x", " b = org/y "]) == {"a": "./x", "b": "org/y"}
    assert parse_adapter_args(["a=x=y"]) == {"a": "x=y"}
    for bad, msg in [(["ax"], "no '='"), (["=x"], "empty name"), (["a=x", "a=y"], "given twice"),
                     (["a="], "empty path"), (["a b=x"], "may only use")]:
        with pytest.raises(EnmpError, match=msg):
            parse_adapter_args(bad)
