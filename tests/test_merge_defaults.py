"""One source of truth for merge defaults: `enmp merge` and `enmp search` are the same merge.

A user who re-applies a run's mask with the flags they wrote in the YAML (`enmp merge --method ties --lam 1.0
--mask run/mask.json`) must get the run's `model/` bit for bit; so must the resolved `config.yaml`.
"""

from __future__ import annotations

import pytest
import yaml
from safetensors.torch import load_file

from enmp.config import MergeConfig
from enmp.merging import METHODS, get_method, method_params
from tiny_runs import cli, make_run

# what a user writes under `merge:` (everything else left to the method's defaults)
USER_MERGE = {"ta": {"lam": 0.5}, "ties": {"lam": 1.0}, "dare": {"lam": 0.9}, "dare_ties": {"lam": 1.0},
              "tsv": {"lam": 0.6}, "knots": {"lam": 1.1}, "core_space": {"lam": 0.5}, "iso_c": {"lam": 0.4}}


def _flags(section: dict) -> list[str]:
    out = []
    for key, value in section.items():
        if key == "method":
            out += ["--method", value]
        elif key == "iso":
            out += ["--iso"] if value else []
        elif value is not None:
            out += ["--" + key.replace("_", "-"), str(value)]
    return out


def _same_weights(a, b) -> None:
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert ta.keys() == tb.keys()
    for name in ta:
        assert ta[name].dtype == tb[name].dtype and ta[name].equal(tb[name]), name


def test_every_method_declares_its_defaults_once():
    assert set(USER_MERGE) == set(METHODS)
    for name, method in METHODS.items():
        assert "lam" in method.defaults
        assert method.default_inner in (None, *method.inner_choices)
        assert method_params(name) == method_params(name, **{k: None for k in ("lam", "top_k", "drop_rate")})
    assert method_params("ties").top_k == method_params("dare_ties").top_k == 80.0  # the paper's Table 6
    assert method_params("knots").top_k == 90.0 and method_params("dare").drop_rate == 0.1
    assert "top_k" not in method_params("ta").to_dict()  # a record holds only what its method reads


def test_run_config_takes_the_same_defaults_as_the_cli():
    for name in METHODS:
        assert MergeConfig(method=name).params() == method_params(name)
        resolved = MergeConfig(method=name).resolved()
        assert set(resolved.model_dump(exclude_none=True)) == {"method", "iso", *get_method(name).uses}
        assert MergeConfig(**resolved.model_dump()).params() == method_params(name)  # the saved section replays


@pytest.mark.parametrize("method", sorted(METHODS))
def test_enmp_merge_with_a_runs_mask_reproduces_its_model(tmp_path, method):
    cfg_path = make_run(tmp_path, "bert", n_tasks=3, n_val=8, n_test=8, strategy="random", generations=1,
                        popsize=3, random_repeats=0)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["merge"] = {"method": method, **USER_MERGE[method]}
    cfg["output"] = {"save_adapter": False}
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run = tmp_path / "run"
    code, _, err = cli("search", "--config", cfg_path, "--out", run)
    assert code == 0, err
    saved = yaml.safe_load((run / "config.yaml").read_text())["merge"]
    assert saved["method"] == method and all(saved[k] is not None for k in get_method(method).uses)  # written out
    saved = {k: v for k, v in saved.items() if v is not None}
    assert saved == MergeConfig(**cfg["merge"]).resolved().model_dump(exclude_none=True)
    mask = yaml.safe_load((run / "mask.json").read_text())
    assert any(0 in row for row in mask["keep"])  # the mask prunes something, so it is really applied
    adapters = [f"{t['name']}={tmp_path / t['adapter']}" for t in cfg["tasks"]]
    common = ["merge", "--base", tmp_path / "base", *[x for a in adapters for x in ("--adapter", a)],
              "--mask", run / "mask.json"]
    for label, section in (("user", cfg["merge"]), ("saved", saved)):
        code, _, err = cli(*common, *_flags(section), "--out", tmp_path / label)
        assert code == 0, err
        _same_weights(run / "model", tmp_path / label)
