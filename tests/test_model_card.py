"""Model cards in every output (`enmp merge`, `enmp search`) and `enmp push` (with a fake Hub client)."""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from enmp.config import load_config
from enmp.api import run_search
from enmp.masking import Mask
from enmp.tiny import make_task_set
from tiny_runs import cli, make_run


def front_matter(card: Path) -> tuple[dict, str]:
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def _check(card: Path, library: str, base: str | None, *local: Path) -> str:
    """Front matter as the Hub reads it (base_model only when a Hub id is known), and none of the `local`
    paths anywhere in the card: cards are published."""
    meta, body = front_matter(card)
    assert meta.get("base_model") == base and meta["library_name"] == library
    assert meta["tags"] == ["merge", "lora", "enmp"]
    text = card.read_text(encoding="utf-8")
    for path in local:
        assert str(path) not in text, f"{card} names the local path {path}"
    return body


def _substitute(command: str, base: Path, adapters: dict, out: Path) -> list[str]:
    """The card's rebuild command with its placeholders filled in with this machine's paths."""
    local = {"BASE": str(base), **{f"{n}=ADAPTER_DIR/{Path(p).name}": f"{n}={p}" for n, p in adapters.items()},
             "MERGED_DIR/mask.json": str(out / "mask.json")}
    return [local.get(word, word) for word in shlex.split(command)]


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """`enmp merge` of two tiny Llama experts with one (task, layer) module pruned, with --save-adapter."""
    root = tmp_path_factory.mktemp("card")
    base, adapters = make_task_set(root, "llama", n_tasks=2)
    mask = root / "mask.json"
    Mask(list(adapters), [0, 1], np.array([[True, False], [True, True]])).save(mask)
    out = root / "merged"
    flags = [x for n, p in adapters.items() for x in ("--adapter", f"{n}={p}")]
    code, _out, err = cli("merge", "--base", base, *flags, "--method", "ties", "--lam", "0.8", "--mask", mask,
                          "--save-adapter", "--out", out)
    assert code == 0, err
    return {"root": root, "base": base, "adapters": adapters, "out": out}


def test_merge_cards_front_matter_experts_method_pruned_and_command(merged):
    out, base, adapters = merged["out"], merged["base"], merged["adapters"]
    body = _check(out / "README.md", "transformers", None, merged["root"])  # a local base: no Hub id known
    adapter_body = _check(out / "adapter" / "README.md", "peft", None, merged["root"])
    for text in (body, adapter_body):
        assert "Base model: a local model" in text and "--base-model-id" in text
        for name, path in adapters.items():
            assert f"| {name} | {Path(path).name} |" in text  # name, its directory's name, then ranks and scales
        assert "merge method: `ties`" in text and "lam: `0.8`" in text and "top_k: `" in text
        assert "`task0` in layer `1`" in text and "## Scores" not in text
    assert "transformers" in body and "PEFT LoRA adapter" in adapter_body


def test_merge_card_command_reproduces_the_merge(merged, tmp_path):
    body = front_matter(merged["out"] / "README.md")[1]
    command = body.split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert "--base BASE" in command and "MERGED_DIR/mask.json" in command and "`BASE` is" in body
    args = _substitute(command, merged["base"], merged["adapters"], merged["out"])
    assert args[:2] == ["enmp", "merge"] and args[-2:] == ["--out", "NEW_DIR"]
    again = tmp_path / "again"
    code, _out, err = cli(*args[1:-1], again)
    assert code == 0, err
    first, second = load_file(str(merged["out"] / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)


def test_cards_name_the_base_by_a_known_hub_id_and_never_by_its_local_path(merged, tmp_path):
    import json
    import shutil

    base, adapters = merged["base"], merged["adapters"]
    flags = [x for n, p in adapters.items() for x in ("--adapter", f"{n}={p}")]
    code, _out, err = cli("merge", "--base", base, *flags, "--base-model-id", "org/tiny-llama", "--out", tmp_path / "a")
    assert code == 0, err
    body = _check(tmp_path / "a" / "README.md", "transformers", "org/tiny-llama", base, merged["root"], tmp_path)
    assert "Base model: `org/tiny-llama` (merged from a local copy)." in body
    assert "--base BASE" in body and "--base-model-id org/tiny-llama" in body

    # no id given: the base config's `_name_or_path` when it looks like a Hub id (what transformers recorded)
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "_name_or_path": "org/from-config"}))
    code, _out, err = cli("merge", "--base", copy, *flags, "--out", tmp_path / "b")
    assert code == 0, err
    _check(tmp_path / "b" / "README.md", "transformers", "org/from-config", copy, merged["root"], tmp_path)
    (copy / "config.json").write_text(json.dumps({**config, "_name_or_path": str(copy)}))  # a local path: not an id
    code, _out, err = cli("merge", "--base", copy, *flags, "--out", tmp_path / "c")
    assert code == 0, err
    _check(tmp_path / "c" / "README.md", "transformers", None, copy, merged["root"], tmp_path)

    code, _out, err = cli("merge", "--base", base, *flags, "--base-model-id", str(base), "--out", tmp_path / "d")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--base-model-id" in err and "ORG/NAME" in err
    assert not (tmp_path / "d").exists()


def test_run_configs_take_the_base_model_id_for_their_cards(tmp_path):
    from enmp.config import parse_config
    from enmp.errors import EnmpError

    data = {"base": "base", "tasks": [{"name": "a", "adapter": "a", "data": {"hub": "x"}}],
            "output": {"base_model_id": "org/base"}}
    assert parse_config(data, where="run.yaml", root=tmp_path).output.base_model_id == "org/base"
    data["output"]["base_model_id"] = "/abs/path/base"
    with pytest.raises(EnmpError, match="run.yaml: output.base_model_id: '/abs/path/base' is not a Hub id"):
        parse_config(data, where="run.yaml", root=tmp_path)


def test_search_cards_have_scores_and_replay_command(tmp_path):
    run = tmp_path / "run"
    cfg = load_config(make_run(tmp_path, "bert", n_tasks=2, n_val=8, n_test=8))
    report = run_search(cfg, run, show_progress=False, print_table=False)
    for kind, library in (("model", "transformers"), ("adapter", "peft")):
        body = _check(run / kind / "README.md", library, None, tmp_path)
        assert "## Scores" in body and "**val**" in body and "**test**" in body
        for task in ("task0", "task1"):
            assert f"| {task} | {report.expert['test'][task]:.2f} |" in body
        assert f"{report.enmp.test.mean_normalized:.2f}" in body
        assert shlex.join(["enmp", "search", "--config", "RUN_DIR/config.yaml", "--out", "NEW_DIR"]) in body
        for task, layer in report.pruned:
            assert f"`{task}` in layer `{layer}`" in body
        if not report.pruned:
            assert "None: every expert" in body


# ----------------------------------------------------------------------------------------------- push


class FakeApi:
    calls: list = []

    def __init__(self, token=None):
        FakeApi.calls.append(("init", token))

    def create_repo(self, repo_id, **kw):
        FakeApi.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kw):
        FakeApi.calls.append(("upload_folder", kw))


SECRET = "hf_enmpTestSecretToken0123456789"


@pytest.fixture()
def online(monkeypatch, tmp_path):
    """Online, with a token in HF_TOKEN only (no login cache), and a fake HfApi."""
    import huggingface_hub
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-login-cache" / "token"))
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    FakeApi.calls = []
    return FakeApi


def _hub_card(folder: Path) -> None:
    """What the user does when the card names a local base: put the base's Hub id in."""
    card = folder / "README.md"
    meta, body = front_matter(card)
    meta["base_model"] = "org/base"
    card.write_text("---\n" + yaml.safe_dump(meta) + "---\n" + body)


@pytest.mark.parametrize("adapter", [False, True])
def test_push_uploads_the_right_folder_without_showing_the_token(merged, online, tmp_path, adapter):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(merged["out"], run)
    folder = run / "adapter" if adapter else run  # an `enmp merge --out` dir is itself the model
    _hub_card(folder)
    code, out, err = cli("push", run, "--repo-id", "me/merged", *(["--adapter"] if adapter else []), "--private")
    assert code == 0, err
    assert online.calls[0] == ("init", SECRET)
    assert online.calls[1] == ("create_repo", "me/merged", {"private": True, "exist_ok": True, "repo_type": "model"})
    upload = online.calls[2][1]
    assert upload["repo_id"] == "me/merged" and Path(upload["folder_path"]) == folder
    assert "https://huggingface.co/me/merged" in out
    assert SECRET not in out + err


def test_push_of_a_search_run_uploads_run_model(online, tmp_path):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    assert cli("push", run, "--repo-id", "me/m")[0] == 0
    assert Path(online.calls[2][1]["folder_path"]) == run / "model"


def _one_line_error(code, out, err, *needles):
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for n in needles:
        assert n in err
    assert SECRET not in out + err


def test_push_refuses_offline_missing_dirs_tokens_and_local_base_cards(merged, online, tmp_path, monkeypatch):
    import shutil

    edited = tmp_path / "edited"  # enmp never writes a local base_model, but a card edited by hand may have one
    shutil.copytree(merged["out"], edited)
    meta, body = front_matter(edited / "README.md")
    (edited / "README.md").write_text("---\n" + yaml.safe_dump({**meta, "base_model": str(merged["base"])}) +
                                      "---\n" + body)
    _one_line_error(*cli("push", edited, "--repo-id", "me/m"), "base_model", "Hub id")
    _one_line_error(*cli("push", tmp_path / "nope", "--repo-id", "me/m"), "not a directory")
    _one_line_error(*cli("push", merged["root"], "--repo-id", "me/m"), "no merged model")
    _one_line_error(*cli("push", merged["root"], "--adapter", "--repo-id", "me/m"), "no merged adapter")
    _one_line_error(*cli("push", merged["out"], "--repo-id", "not a repo"), "ORG/NAME")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _one_line_error(*cli("push", merged["out"], "--repo-id", "me/m"), "HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_TOKEN")
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    _one_line_error(*cli("push", run, "--repo-id", "me/m"), "no Hugging Face token", "hf auth login")
    assert [c[0] for c in online.calls] == []  # nothing reached the Hub client
