"""A merge method's hyperparameters are declared once, in its own module, and everything else is derived.

The acceptance test registers a throw-away method with a made-up parameter (what a new method module does) and
shows config parsing, validation, `method_params`, `merge`, the `enmp merge` flags and the model card with its
command line all handle it with no other change. The rest pins how records from earlier versions still load.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import torch
import typer
import yaml
from safetensors.torch import load_file

from enmp.cli import main as cli_main
from enmp.cli.merge_flags import flag_help, with_merge_flags
from enmp.config import MergeConfig, load_config, parse_config
from enmp.engine.outputs.model_card import merge_command, method_values
from enmp.engine.run.run_report import RunReport
from enmp.errors import EnmpError
from enmp.merging import METHODS, MergeMethod, MergeParams, declared_options, flag_params, merge, method_params
from enmp.merging.params import LAM
from enmp.merging.ta import stacked_factors
from enmp.options import Option, Options
from enmp.tiny import make_task_set
from test_merging import make_deltas
from tiny_runs import cli, make_run

# ------------------------------------------------------------------ the throw-away method (one "module")
GAIN = Option("gain", float, 2.0, "Extra factor on the summed updates", low=0, high=10, low_open=True)


def gained_sum(deltas, params):
    B, A = stacked_factors(deltas)
    return params.lam * params.gain * (B @ A)


GAINED = MergeMethod("gained", gained_sum, "TA times a made-up gain", params=Options(LAM.with_default(0.5), GAIN))


@pytest.fixture()
def gained(monkeypatch):
    monkeypatch.setitem(METHODS, "gained", GAINED)  # what the one line in registry.METHODS does


def _app() -> typer.Typer:
    """`enmp merge` built from the declarations as they are now (the real CLI builds it at import, after every
    method module has registered, so a new method's flags exist there the same way)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.callback()(lambda: None)  # keep `merge` a subcommand
    app.command("merge")(with_merge_flags(after="method")(cli_main.merge.__wrapped__))
    return app


def test_a_new_parameter_is_checked_parsed_and_resolved_from_its_declaration(gained, tmp_path):
    assert method_params("gained") == MergeParams(lam=0.5, gain=2.0, iso=False)
    assert method_params("gained", gain=3).gain == 3.0 and "gain" in declared_options()
    with pytest.raises(EnmpError, match=re.escape("--gain / merge.gain: gain must be a number in (0, 10], got 0")):
        method_params("gained", gain=0)
    with pytest.raises(EnmpError, match="merge method 'ta' takes no gain — use gain only with gained"):
        method_params("ta", gain=3.0)
    with pytest.raises(EnmpError, match="unknown merge parameter 'gian' — gained accepts: lam, gain, iso"):
        method_params("gained", gian=3.0)
    # the run config: a method-agnostic `merge:` section, checked by the declaration, written out in full
    data = {"base": "base", "tasks": [{"name": "a", "adapter": "a", "data": {"hub": "x"}}],
            "merge": {"method": "gained", "gain": 4}}
    cfg = parse_config(data, where="run.yaml", root=tmp_path)
    assert cfg.merge.params().gain == 4.0 and cfg.merge.gain == 4
    assert cfg.merge.resolved().model_dump() == {"method": "gained", "lam": 0.5, "gain": 4.0, "iso": False}
    data["merge"]["gain"] = 11
    with pytest.raises(EnmpError, match=re.escape("run.yaml: --gain / merge.gain: gain must be a number in (0, 10]")):
        parse_config(data, where="run.yaml", root=tmp_path)
    data["merge"] = {"method": "gained", "top_k": 80}
    with pytest.raises(EnmpError, match="takes no top_k .*gained accepts: lam, gain, iso"):
        parse_config(data, where="run.yaml", root=tmp_path)
    # the math reads it
    deltas = make_deltas((6, 5), (2, 3))
    assert torch.equal(merge("gained", deltas, MergeParams(gain=3.0), (6, 5)),
                       merge("ta", deltas, MergeParams(lam=1.5), (6, 5)))


def test_a_new_parameter_gets_a_flag_help_a_card_line_and_a_replaying_command(gained, tmp_path):
    assert flag_help(declared_options()["gain"]) == "Extra factor on the summed updates (default: gained 2.0)."
    params = method_params("gained", gain=3.0)
    assert method_values("gained", params) == {"lam": 0.5, "gain": 3.0}
    assert "--gain 3.0" in merge_command("b", {}, "gained", params, mask=False, out="o")

    base, adapters = make_task_set(tmp_path / "set", "bert", n_tasks=2)
    flags = [x for n, p in adapters.items() for x in ("--adapter", f"{n}={p}")]
    app = _app()
    app(["merge", "--base", str(base), *flags, "--method", "gained", "--gain", "3", "--out", str(tmp_path / "a")],
        standalone_mode=False)
    card = (tmp_path / "a" / "README.md").read_text()
    assert "- gain: `3.0`" in card
    command = shlex.split(card.split("```bash\n", 1)[1].split("\n```", 1)[0])
    assert command[command.index("--gain") + 1] == "3.0"
    local = {"BASE": str(base), **{f"{n}=ADAPTER_DIR/{Path(p).name}": f"{n}={p}" for n, p in adapters.items()}}
    app([local.get(w, w) for w in command[1:-1]] + [str(tmp_path / "b")], standalone_mode=False)
    first, again = load_file(str(tmp_path / "a/model.safetensors")), load_file(str(tmp_path / "b/model.safetensors"))
    assert all(torch.equal(first[k], again[k]) for k in first)
    ta = tmp_path / "ta"
    app(["merge", "--base", str(base), *flags, "--method", "ta", "--lam", "1.5", "--out", str(ta)],
        standalone_mode=False)
    assert all(torch.equal(first[k], load_file(str(ta / "model.safetensors"))[k]) for k in first)


# ------------------------------------------------------------------ the `enmp merge` flags: one set for all methods
def test_flags_are_shared_a_plain_setting_another_method_reads_is_ignored_a_variant_it_lacks_is_not():
    """Scripts pass e.g. `--seed` to every method (as before): it is checked, then ignored by methods that do not
    read it. A variant the method lacks (`--inner` on tsv, `--order` on ties) is one clear error line."""
    assert flag_params("ties", seed=5, drop_rate=0.2, lam=None) == method_params("ties")
    for method, given, message in [("ta", {"top_k": 0.0}, "top_k must be a number in (0, 100]"),
                                   ("tsv", {"inner": "ta"}, "'tsv' takes no inner — use inner only with knots or "
                                                            "core_space"),
                                   ("ties", {"order": "align_then_prune"}, "'ties' takes no order")]:
        with pytest.raises(EnmpError, match=re.escape(message)):
            flag_params(method, **given)


def test_search_method_flag_leaves_out_the_yaml_values_the_new_method_does_not_take(tmp_path):
    """`enmp search --config ties.yaml --method ta`: ta has no top_k, so the YAML's top_k is left out (it never
    changed a TA merge) instead of making every other method's config unusable with --method."""
    data = {"base": "base", "tasks": [{"name": "a", "adapter": "a", "data": {"hub": "x"}}],
            "merge": {"method": "ties", "lam": 1.2, "top_k": 80}}
    cfg = cli_main.apply_overrides(parse_config(data, where="run.yaml", root=tmp_path), {"merge.method": "ta"}, False)
    assert cfg.merge.model_dump() == {"method": "ta", "lam": 1.2}
    cfg = cli_main.apply_overrides(parse_config(data, where="run.yaml", root=tmp_path), {"merge.method": "knots"}, False)
    assert cfg.merge.params() == method_params("knots", lam=1.2, top_k=80)


def test_generated_help_lists_every_methods_default():
    code, out, err = cli("merge", "--help")
    assert code == 0, err
    text = " ".join(out.replace("│", " ").split())
    for flag in ("--lam", "--top-k", "--drop-rate", "--seed", "--inner", "--order", "--iso", "--base-model-id"):
        assert flag in text
    assert "core_space 100.0, dare_ties 80.0, knots 90.0, ties 80.0" in text
    assert "1.0 for every method" in text and "knots ties|ta" in text


# ------------------------------------------------------------------ records of earlier versions
OLD_SAVED = [  # `merge:` as config.yaml of earlier run directories wrote it (null: a key the method ignores)
    {"method": "ta", "lam": 0.5, "top_k": None, "drop_rate": None, "inner": None, "iso": False, "seed": None},
    {"method": "dare_ties", "lam": 1.0, "top_k": 80.0, "drop_rate": 0.1, "inner": None, "iso": False, "seed": 0},
    {"method": "knots", "lam": 1.1, "top_k": 90.0, "drop_rate": None, "inner": "ties", "iso": False, "seed": None},
]


@pytest.mark.parametrize("section", OLD_SAVED, ids=[s["method"] for s in OLD_SAVED])
def test_saved_sections_of_earlier_versions_load_and_mean_the_same_merge(section):
    cfg = MergeConfig(**section)
    expected = {k: v for k, v in section.items() if v is not None and k != "method"}
    assert cfg.params() == method_params(section["method"], **expected)
    assert MergeConfig(**cfg.resolved().model_dump()).params() == cfg.params()
    with pytest.raises(EnmpError, match="unknown merge parameter 'lamda'"):  # a null typo is still refused
        MergeConfig(method=section["method"], lamda=None)


def test_a_run_directory_with_an_old_merge_section_resumes(tmp_path):
    cfg_path = make_run(tmp_path, "bert", n_tasks=2, n_val=8, n_test=8, strategy="random", generations=2,
                        popsize=2, random_repeats=0)
    run = tmp_path / "run"
    code, _, err = cli("search", "--config", cfg_path, "--out", run)
    assert code == 0, err
    before = RunReport.load(run)
    saved = yaml.safe_load((run / "config.yaml").read_text())
    saved["merge"] = dict(OLD_SAVED[0])  # exactly what the earlier version wrote for this run's `ta, lam 0.5`
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    assert load_config(run / "config.yaml").merge.params() == method_params("ta", lam=0.5)
    (run / "report.json").unlink()  # an unfinished run, as far as --resume can tell
    code, _, err = cli("search", "--resume", run)
    assert code == 0, err
    after = RunReport.load(run)
    assert (after.pruned, after.enmp, after.params) == (before.pruned, before.enmp, before.params)
