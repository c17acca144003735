"""Paper recipes: files match the tables, Table 6 values, every recipe passes the offline dry run, and the
KnOTS head converter reads pickles with weights_only=True only."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from enmp.config import load_config
from enmp.engine.dry_run import dry_run
from enmp.errors import EnmpError
from enmp.masking import prune_budget
from enmp.recipes import METHODS, SETTINGS, convert_heads, read_heads, recipe_name, render_recipe

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
ALL = [recipe_name(s, m) for s in SETTINGS for m in METHODS]

TABLE6 = {  # (setting, method) → merge fields, from the paper's Table 6
    ("nlp", "ta"): {"lam": 0.3}, ("nlp", "ties"): {"lam": 1.2, "top_k": 80},
    ("nlp", "dare_ties"): {"lam": 1.1, "top_k": 80, "drop_rate": 0.1}, ("nlp", "tsv"): {"lam": 0.6},
    ("nlp", "knots"): {"lam": 1.1, "top_k": 90, "inner": "ties"}, ("nlp", "core_space"): {"lam": 0.5, "inner": "tsv"},
    ("vision", "ta"): {"lam": 0.1}, ("vision", "ties"): {"lam": 0.3, "top_k": 40},
    ("vision", "dare_ties"): {"lam": 0.3, "top_k": 20, "drop_rate": 0.1}, ("vision", "tsv"): {"lam": 0.3},
    ("vision", "knots"): {"lam": 0.6, "top_k": 90, "inner": "ties"},
    ("vision", "core_space"): {"lam": 0.9, "inner": "tsv", "iso": True},
}


def test_recipe_files_are_the_rendered_tables():
    assert sorted(p.name for p in RECIPES.glob("*.yaml")) == sorted(ALL)
    for s in SETTINGS:
        for m in METHODS:
            assert (RECIPES / recipe_name(s, m)).read_text() == render_recipe(s, m), \
                "recipes/ is stale: run python -c 'from enmp.recipes import write_recipes; write_recipes(\"recipes\")'"


@pytest.mark.parametrize("setting,method", list(TABLE6))
def test_recipes_use_the_paper_settings(setting, method):
    cfg = load_config(RECIPES / recipe_name(setting, method))
    assert cfg.merge.method == method
    for key, value in TABLE6[(setting, method)].items():
        assert getattr(cfg.merge, key) == value
    s = cfg.search
    assert (s.strategy, s.popsize, s.generations, s.rho, s.sigma0) == ("cma", 16, 60, 0.2, 0.5)
    if setting == "nlp":
        assert cfg.base == "meta-llama/Meta-Llama-3-8B"
        assert [t.name for t in cfg.tasks] == ["snli", "mnli", "sick", "qnli", "rte", "scitail"]
        assert all(t.adapter == f"hoffman-lab/KnOTS-Llama3_8B_lora_R16_{t.name}" for t in cfg.tasks)
        assert {t.kind for t in cfg.tasks} == {"classification"} and {t.pooling for t in cfg.tasks} == {"last"}
    else:
        assert cfg.base == "openai/clip-vit-base-patch32"
        assert [t.name for t in cfg.tasks] == ["cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn"]
        assert cfg.tasks[0].adapter == "hoffman-lab/KnOTS-ViT-B-32_lora_R16_stanford_cars"
        assert {t.kind for t in cfg.tasks} == {"clip_zero_shot"}
    assert all(t.head and t.head.startswith(str(RECIPES / "heads")) for t in cfg.tasks)


@pytest.mark.parametrize("name", ALL)
def test_every_recipe_passes_the_dry_run(name):
    cfg = load_config(RECIPES / name)
    out = io.StringIO()
    summary = dry_run(cfg, Console(file=out, width=200))
    text = out.getvalue()
    assert "dry run passed" in text
    assert summary["shape"] == (len(cfg.tasks), 2)  # tiny: 2 layers
    assert math.isfinite(summary["fitness"]) and summary["n_pruned"] >= 1
    real_layers = 32 if name.startswith("nlp") else 12
    assert f"mask {len(cfg.tasks)}×{real_layers}" in text


def test_dry_run_through_the_cli(tmp_path):
    from typer.testing import CliRunner

    from enmp.cli.main import app

    result = CliRunner().invoke(app, ["search", "--config", str(RECIPES / "nlp_ta.yaml"), "--dry-run",
                                      "--workers", "4"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "dry run passed" in text and "4 Ray workers" in text


def test_dry_run_rejects_unknown_bases_and_wrong_heads(tmp_path):
    text = render_recipe("nlp", "ta").replace("meta-llama/Meta-Llama-3-8B", "someone/unknown")
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(EnmpError, match="unknown architecture"):
        dry_run(load_config(tmp_path / "r.yaml"), Console(file=io.StringIO()))
    # A converted head whose width does not fit the base (Llama-3-8B: 4096 features) is caught offline.
    (tmp_path / "r.yaml").write_text(render_recipe("nlp", "ta"))
    torch.save({"snli": torch.randn(3, 512)}, tmp_path / "heads.pt")
    convert_heads(tmp_path / "heads.pt", tmp_path / "heads" / "llama3-8b", setting="nlp")
    with pytest.raises(EnmpError, match="4096 features"):
        dry_run(load_config(tmp_path / "r.yaml"), Console(file=io.StringIO()))


def test_dry_run_prints_the_search_budget(tmp_path):
    """ρ 0.35 of 6 tasks × 30 layers: 0.35 · 180 is 62.999… in floating point, and the search prunes up to 63
    (masking.prune_budget); the dry run must print the same budget, not ⌊62.999…⌋."""
    base = tmp_path / "llama30"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 30, "num_attention_heads": 32,
        "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256}))
    text = render_recipe("nlp", "ta").replace("meta-llama/Meta-Llama-3-8B", str(base))
    assert "  rho: 0.2\n" in text
    (tmp_path / "r.yaml").write_text(text.replace("  rho: 0.2\n", "  rho: 0.35\n"))
    out = io.StringIO()
    dry_run(load_config(tmp_path / "r.yaml"), Console(file=out, width=200))
    assert prune_budget(0.35, 180) == 63
    assert "mask 6×30 = 180 modules, prune at most 63 (rho 0.35)" in out.getvalue()


def test_convert_knots_nli_heads(tmp_path):
    heads = {t: torch.randn(3, 16) for t in ("snli", "mnli", "sick", "qnli", "rte", "scitail")}
    torch.save(heads, tmp_path / "heads.pt")
    written = convert_heads(tmp_path / "heads.pt", tmp_path / "out", setting="nlp")
    assert sorted(written) == sorted(heads)
    for task, rows, labels in (("snli", [0, 1, 2], ["entailment", "neutral", "contradiction"]),
                               ("qnli", [0, 2], ["entailment", "not_entailment"]),
                               ("rte", [0, 2], ["entailment", "not_entailment"]),
                               ("scitail", [0, 1], ["entails", "neutral"])):
        t = load_file(str(written[task] / "head.safetensors"))
        assert torch.equal(t["weight"], heads[task][rows]) and "bias" not in t
        meta = json.loads((written[task] / "head.json").read_text())
        assert meta["labels"] == labels and meta["rows"] == rows and meta["pooling"] == "last"


def test_convert_vision_heads_and_state_dicts(tmp_path):
    w = torch.randn(196, 8)
    torch.save(w, tmp_path / "stanford_cars_head.pt")
    written = convert_heads(tmp_path / "stanford_cars_head.pt", tmp_path / "out", setting="vision")
    assert list(written) == ["cars"]
    assert torch.equal(load_file(str(written["cars"] / "head.safetensors"))["weight"], w)
    assert json.loads((written["cars"] / "head.json").read_text())["labels"] == [str(i) for i in range(196)]
    sd = {"base_model.model.score.modules_to_save.default.weight": torch.randn(2, 8),
          "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight": torch.randn(4, 8)}
    torch.save(sd, tmp_path / "mytask.pt")
    (weight, bias), = read_heads(tmp_path / "mytask.pt").values()
    assert torch.equal(weight, sd["base_model.model.score.modules_to_save.default.weight"]) and bias is None
    written = convert_heads(tmp_path / "mytask.pt", tmp_path / "out", labels={"mytask": ["no", "yes"]})
    assert json.loads((written["mytask"] / "head.json").read_text())["labels"] == ["no", "yes"]


class _Payload:  # any non-tensor object: weights_only=True must refuse to unpickle it
    def __reduce__(self):
        return (print, ("this must never run",))


def test_convert_refuses_pickles_that_are_not_plain_tensors(tmp_path, capsys):
    torch.save({"snli": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(EnmpError, match="more than tensors"):
        convert_heads(tmp_path / "evil.pt", tmp_path / "out")
    assert "this must never run" not in capsys.readouterr().out
    assert not (tmp_path / "out").exists()
    with pytest.raises(EnmpError, match="not found"):
        convert_heads(tmp_path / "missing.pt", tmp_path / "out")
