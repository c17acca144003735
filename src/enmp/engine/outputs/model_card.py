"""Hugging Face model cards (README.md) for merged outputs: what was merged, how, and how to redo it.

A merged model or adapter that leaves the run directory (`enmp push`) should say which experts it holds,
which modules were pruned, what it scored, and the command that rebuilds it; the YAML front matter is what
the Hub reads (base model, library, tags). Cards are written inside the output's atomic temp dir, so a
model never appears without its card.

A card is published, so it never carries a machine's local paths: the base is named by its Hub id when one is
known (else not at all), an adapter by its Hub id or its directory's name, and the rebuild command uses
placeholders (BASE, ADAPTER_DIR, MERGED_DIR, RUN_DIR) for local paths.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Optional, Sequence

from ...adapters import AdapterSet, BaseCheckpoint, looks_like_hub_id
from ...evaluation import summary
from ...merging import MergeParams, get_method, resolved
from ...merging.command_line import command_words

TAGS = ["merge", "lora", "enmp"]
LIBRARY = {"model": "transformers", "adapter": "peft"}
_WHAT = {
    "model": "A Hugging Face `transformers` model: the base with the merged LoRA update added to its weights.",
    "adapter": "A PEFT LoRA adapter whose update reproduces the merge (exactly up to its rank; a "
               "`reconstruction_error.json` next to it lists any truncated matrices). Load it on the base model.",
}


#: what each placeholder of a rebuild command stands for (local paths are never written into a card)
PLACEHOLDERS = {"BASE": "the base model's local directory or file", "ADAPTER_DIR": "the folder holding the local "
                "adapters", "MERGED_DIR": "this merge's output folder (it holds mask.json)", "RUN_DIR": "the search's "
                "run directory (it holds config.yaml)", "NEW_DIR": "where the rebuild is written"}


def method_values(method: str, params: MergeParams) -> dict:
    """The hyperparameters `method` reads, in its declaration order, plus a common one (iso) when it is on."""
    info, values = get_method(method), resolved(method, params).to_dict()
    return {k: v for k, v in values.items() if k in info.params or v != info.options[k].default}


def from_hub(source: str) -> bool:
    """Whether `source` (a --base / --adapter value) was a Hub id rather than a local path (local wins)."""
    return looks_like_hub_id(source) and not Path(source).expanduser().exists()


def base_hub_id(base: BaseCheckpoint, given: Optional[str] = None) -> Optional[str]:
    """The base's Hub id, or None when none is known: the id the user gave (--base-model-id,
    output.base_model_id), else the base itself when it came from the Hub, else its config's `_name_or_path`
    when that looks like a Hub id (transformers records what the model was loaded from there)."""
    if given:
        return given
    if from_hub(base.source):
        return base.source
    recorded = base.config.get("_name_or_path") if isinstance(base.config, dict) else None
    return recorded if isinstance(recorded, str) and looks_like_hub_id(recorded) else None


def public_source(source: str) -> str:
    """An adapter as a card may name it: its Hub id, or only its directory's name."""
    return source if from_hub(source) else Path(source).name


def merge_command(base: str | Path, adapters: dict, method: str, params: MergeParams, *, mask: bool,
                  out: str | Path, grouping: str = "layer", layer_regex: Optional[str] = None,
                  save_adapter: bool = False, adapter_rank: Optional[int] = None,
                  dtype: Optional[str] = None, base_model_id: Optional[str] = None) -> str:
    """The `enmp merge` line that rebuilds an output into NEW_DIR (the saved mask.json replays any pruning).

    Local paths become placeholders (see PLACEHOLDERS); `out` only says the mask lives in the output folder.
    """
    args = ["enmp", "merge", "--base", str(base) if from_hub(str(base)) else "BASE"]
    for name, path in adapters.items():
        args += ["--adapter", f"{name}={path if from_hub(str(path)) else 'ADAPTER_DIR/' + Path(path).name}"]
    args += ["--method", method]
    for key, value in method_values(method, params).items():
        args += command_words(key, value)
    if mask:
        args += ["--mask", "MERGED_DIR/mask.json"]
    if grouping != "layer":
        args += ["--grouping", grouping]
    if layer_regex:
        args += ["--layer-regex", layer_regex]
    if save_adapter:
        args.append("--save-adapter")
    if adapter_rank:
        args += ["--adapter-rank", str(adapter_rank)]
    if dtype:
        args += ["--dtype", dtype]
    if base_model_id:
        args += ["--base-model-id", base_model_id]
    return shlex.join(args + ["--out", "NEW_DIR"])


def search_command(run_dir: str | Path) -> str:
    """The `enmp search` line that replays a run; its directory is named RUN_DIR (never its local path)."""
    return shlex.join(["enmp", "search", "--config", "RUN_DIR/config.yaml", "--out", "NEW_DIR"])


def _front_matter(kind: str, hub_id: Optional[str]) -> str:
    """No base_model line without a Hub id: the Hub refuses local paths there."""
    from huggingface_hub import ModelCardData

    return ModelCardData(base_model=hub_id, library_name=LIBRARY[kind], tags=list(TAGS)).to_yaml()


def _base_line(base: BaseCheckpoint, hub_id: Optional[str]) -> str:
    if hub_id is None:
        return ("Base model: a local model with no known Hub id (a card never names local paths; name it with "
                "`enmp merge --base-model-id ORG/NAME` or `output.base_model_id` in a run config).")
    return f"Base model: `{hub_id}`" + ("." if from_hub(base.source) else " (merged from a local copy).")


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header),
            *["| " + " | ".join(map(cell, r)) + " |" for r in rows]]


def _join(values) -> str:
    return ", ".join(str(v) for v in values)


def _scores(scores: dict) -> list[str]:
    """split → {"expert", "base", "enmp": task → accuracy (%)} as one table per split."""
    lines = ["## Scores", "", "Accuracy (%) per task from the search run: each expert alone, the merge of all "
             "modules (no pruning), and this ENMP merge; *normalized* is the merge's accuracy relative to the "
             "expert's, averaged over tasks.", ""]
    for split, s in scores.items():
        rows = [[task, f"{s['expert'][task]:.2f}", f"{s['base'][task]:.2f}", f"{s['enmp'][task]:.2f}"]
                for task in s["enmp"]]
        base_n, enmp_n = summary(s["base"], s["expert"]), summary(s["enmp"], s["expert"])
        rows.append(["**mean normalized**", "100.00", f"{base_n['mean_normalized']:.2f}",
                     f"{enmp_n['mean_normalized']:.2f}"])
        lines += [f"**{split}**", "", *_table(["task", "expert", "merge, no pruning", "ENMP"], rows), ""]
    return lines


def expected_gain_lines(expected: Optional[dict], decision: Optional[str]) -> list[str]:
    """What a user may expect on new data: the strategy's estimate from examples its decision did not fit, or
    a warning that the validation gain was measured where the mask was chosen."""
    lines = ["## Expected gain on new data", ""]
    if expected is None:
        lines.append("The search reports no estimate from held-out data: the validation scores above were measured "
                     "on the examples the mask was chosen on, so they overstate the gain to expect.")
    else:
        lines.append(f"{expected['value']:+.2f} mean normalized accuracy points over the merge of all modules "
                     f"({expected['level']:.0%} interval {expected['low']:+.2f} to {expected['high']:+.2f}); "
                     f"{expected['basis']}.")
    if decision:
        lines += ["", f"How the search decided: {decision}."]
    return lines + [""]


def card_text(kind: str, *, base: BaseCheckpoint, adapters: AdapterSet, method: str, params: MergeParams,
              grouping: str, pruned: Sequence[Sequence], command: str, scores: Optional[dict] = None,
              base_model_id: Optional[str] = None, expected_gain: Optional[dict] = None,
              decision: Optional[str] = None) -> str:
    """README.md for the merged `kind` ("model" or "adapter"); `scores` only for search runs; `base_model_id`
    names the base when it was loaded from a local path (see `base_hub_id()`)."""
    hub_id = base_hub_id(base, base_model_id)
    lines = ["---", _front_matter(kind, hub_id), "---", "",
             f"# {' + '.join(adapters.tasks)} ({method}, merged with enmp)", "", _WHAT[kind], "",
             _base_line(base, hub_id)]
    if base.gguf is not None:
        lines += ["", f"The base is the GGUF file `{base.gguf.name}`: these are its **dequantised** weights, "
                      "stored as plain safetensors (float32 unless a dtype was chosen) under Hugging Face tensor "
                      "names — not the original unquantised checkpoint, and not re-quantised."]
    rows = [[r["task"], public_source(r["path"]), _join(r["ranks"]), _join(r["scales"]), r["matrices"]]
            for r in adapters.describe()]
    lines += ["", "## Experts", "", *_table(["name", "source", "ranks", "scales", "matrices"], rows), "",
              "## Method", "", f"- merge method: `{method}`",
              *[f"- {k}: `{v}`" for k, v in method_values(method, params).items()],
              f"- mask grouping: `{grouping}` ({len(adapters.tasks)} experts on {len(adapters.layers)} layers, "
              f"projections {_join(adapters.projections)})",
              "", "## Pruned modules", ""]
    lines += [f"- `{task}` in {grouping} `{group}`" for task, group in pruned] or ["None: every expert's "
                                                                                     "update is kept everywhere."]
    lines.append("")
    if scores:
        lines += _scores(scores) + expected_gain_lines(expected_gain, decision)
    used = [f"`{p}` is {what}" for p, what in PLACEHOLDERS.items() if re.search(rf"\b{p}\b", command)]
    lines += ["## Reproduce", "", "```bash", command, "```", "", f"Placeholders: {'; '.join(used)}.", ""]
    return "\n".join(lines)


def write_card(out_dir: Path, kind: str, **info) -> None:
    """Write `out_dir`/README.md (call inside the output's atomic temp dir)."""
    (Path(out_dir) / "README.md").write_text(card_text(kind, **info), encoding="utf-8")
