"""`enmp push`: upload a merged model (or merged adapter) with its model card to the Hugging Face Hub.

The token comes from huggingface_hub's usual sources (HF_TOKEN, then the `hf auth login` cache); enmp never
writes it anywhere and never prints it, not even inside a Hub error message. Everything that can be checked
locally (folder, repo id, offline mode, token, card metadata) is checked before anything is uploaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..adapters.hub import hub_offline, looks_like_hub_id
from ..errors import EnmpError, first_line

_LOGIN = "set HF_TOKEN or run `hf auth login`"


def push_folder(run_dir: Path, adapter: bool) -> Path:
    """RUN_DIR/model or RUN_DIR/adapter of a search run; an `enmp merge --out` dir is itself the model."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EnmpError(f"{run_dir} is not a directory", where="RUN_DIR",
                        fix="pass a directory written by `enmp search` or `enmp merge --out`")
    kind = "adapter" if adapter else "model"
    folder = run_dir / kind
    if not adapter and not folder.is_dir() and (run_dir / "config.json").is_file():
        folder = run_dir
    if not (folder / ("adapter_config.json" if adapter else "config.json")).is_file():
        fix = ("write it with output.save_adapter: true / `enmp merge --save-adapter`" if adapter else
               "write it with output.save_model: true (the default)")
        raise EnmpError(f"no merged {kind} in {run_dir} (expected {folder})", where="RUN_DIR", fix=fix)
    return folder


def _check_card(folder: Path) -> None:
    """The Hub refuses a card whose base_model is not a Hub id (a local path): say so before uploading."""
    card = folder / "README.md"
    if not card.is_file():
        return
    from huggingface_hub import ModelCard

    base = ModelCard.load(card).data.to_dict().get("base_model")
    if isinstance(base, str) and not looks_like_hub_id(base):
        raise EnmpError(f"README.md names base_model '{base}', a local path that the Hub refuses",
                        where=str(card), fix="edit base_model to the base's Hub id (org/name) or delete that "
                                             "line, then push again")


def _token() -> str:
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception as exc:  # OIDC exchange or refresh failures: name them without the token
        raise EnmpError(f"cannot read the Hugging Face token ({type(exc).__name__})", where="enmp push",
                        fix=_LOGIN) from None
    if not token:
        raise EnmpError("no Hugging Face token found", where="enmp push", fix=_LOGIN)
    return token


def push(run_dir: str | Path, repo_id: str, *, adapter: bool = False, private: bool = False,
         log=lambda _m: None) -> str:
    """Create `repo_id` (if needed) and upload the merged model or adapter folder; returns the repo URL."""
    folder = push_folder(Path(run_dir), adapter)
    if not looks_like_hub_id(repo_id):
        raise EnmpError(f"repo id '{repo_id}' is not of the form ORG/NAME", where="--repo-id",
                        fix="pass your user or organisation name and a repo name, e.g. me/merged-llm")
    if hub_offline():
        raise EnmpError("cannot upload: HF_HUB_OFFLINE is set", where="enmp push",
                        fix="unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE) to reach the Hub")
    _check_card(folder)
    token = _token()
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    kind = "adapter" if adapter else "model"
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        log(f"uploading {folder} to {repo_id}")
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                          commit_message=f"Upload merged {kind} (enmp)")
    except Exception as exc:  # auth, permissions, network, rejected metadata: one line, token scrubbed
        raise EnmpError(f"upload to {repo_id} failed ({_scrub(first_line(exc, 240, with_type=True), token)})",
                        where="enmp push", fix="check the token's write access and the repo id") from None
    return str(getattr(url, "url", None) or f"https://huggingface.co/{repo_id}")


def _scrub(text: str, token: Optional[str]) -> str:
    return text.replace(token, "***") if token else text
