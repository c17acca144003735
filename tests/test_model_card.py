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
from tiny import make_task_set
from tiny_runs import cli, make_run


def front_matter(card: Path) -> tuple[dict, str]:
    text = card.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def _check(card: Path, library: str, base: str) -> str:
    meta, body = front_matter(card)
    assert meta["base_model"] == base and meta["library_name"] == library
    assert meta["tags"] == ["merge", "lora", "enmp"]
    return body


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
    body = _check(out / "README.md", "transformers", str(base))
    adapter_body = _check(out / "adapter" / "README.md", "peft", str(base))
    for text in (body, adapter_body):
        for name, path in adapters.items():
            assert f"| {name} | {path} |" in text  # name, source, then ranks and scales
        assert "merge method: `ties`" in text and "lam: `0.8`" in text and "top_k: `" in text
        assert "`task0` in layer `1`" in text and "## Scores" not in text
    assert "transformers" in body and "PEFT LoRA adapter" in adapter_body


def test_merge_card_command_reproduces_the_merge(merged, tmp_path):
    body = front_matter(merged["out"] / "README.md")[1]
    command = body.split("```bash\n", 1)[1].split("\n```", 1)[0]
    args = shlex.split(command)
    assert args[:2] == ["enmp", "merge"] and args[-2:] == ["--out", "NEW_DIR"]
    again = tmp_path / "again"
    code, _out, err = cli(*args[1:-1], again)
    assert code == 0, err
    first, second = load_file(str(merged["out"] / "model.safetensors")), load_file(str(again / "model.safetensors"))
    assert first.keys() == second.keys() and all((first[k] == second[k]).all() for k in first)


def test_search_cards_have_scores_and_replay_command(tmp_path):
    run = tmp_path / "run"
    cfg = load_config(make_run(tmp_path, "bert", n_tasks=2, n_val=8, n_test=8))
    report = run_search(cfg, run, show_progress=False, print_table=False)
    for kind, library in (("model", "transformers"), ("adapter", "peft")):
        body = _check(run / kind / "README.md", library, cfg.base)
        assert "## Scores" in body and "**val**" in body and "**test**" in body
        for task in ("task0", "task1"):
            assert f"| {task} | {report.expert['test'][task]:.2f} |" in body
        assert f"{report.enmp.test.mean_normalized:.2f}" in body
        assert shlex.join(["enmp", "search", "--config", str(run / "config.yaml"), "--out", "NEW_DIR"]) in body
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
    _one_line_error(*cli("push", merged["out"], "--repo-id", "me/m"), "base_model", "Hub id")
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
