"""Hugging Face model cards (README.md) for merged outputs: what was merged, how, and how to redo it.

A merged model or adapter that leaves the run directory (`enmp push`) should say which experts it holds,
which modules were pruned, what it scored, and the command that rebuilds it; the YAML front matter is what
the Hub reads (base model, library, tags). Cards are written inside the output's atomic temp dir, so a
model never appears without its card.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional, Sequence

from ..adapters import AdapterSet, BaseCheckpoint
from ..evaluation import summary
from ..merging import MergeParams, get_method
from ..merging.registry import FLAGS

TAGS = ["merge", "lora", "enmp"]
LIBRARY = {"model": "transformers", "adapter": "peft"}
_WHAT = {
    "model": "A Hugging Face `transformers` model: the base with the merged LoRA update added to its weights.",
    "adapter": "A PEFT LoRA adapter whose update reproduces the merge (exactly up to its rank; a "
               "`reconstruction_error.json` next to it lists any truncated matrices). Load it on the base model.",
}


def method_values(method: str, params: MergeParams) -> dict:
    """The hyperparameters `method` reads (plus iso when on), in flag order."""
    uses = get_method(method).uses
    values = params.to_dict()
    return {k: values[k] for k in FLAGS if k in uses or (k == "iso" and values["iso"])}


def merge_command(base: str | Path, adapters: dict, method: str, params: MergeParams, *, mask: bool,
                  out: str | Path, grouping: str = "layer", layer_regex: Optional[str] = None,
                  save_adapter: bool = False, adapter_rank: Optional[int] = None,
                  dtype: Optional[str] = None) -> str:
    """The `enmp merge` line that rebuilds an output into NEW_DIR (the saved mask.json replays any pruning)."""
    args = ["enmp", "merge", "--base", str(base)]
    for name, path in adapters.items():
        args += ["--adapter", f"{name}={path}"]
    args += ["--method", method]
    for key, value in method_values(method, params).items():
        if key == "iso":
            args.append("--iso")
        elif value is not None:
            args += [FLAGS[key], str(value)]
    if mask:
        args += ["--mask", str(Path(out) / "mask.json")]
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
    return shlex.join(args + ["--out", "NEW_DIR"])


def search_command(run_dir: str | Path) -> str:
    return shlex.join(["enmp", "search", "--config", str(Path(run_dir) / "config.yaml"), "--out", "NEW_DIR"])


def _front_matter(kind: str, base: BaseCheckpoint) -> str:
    from huggingface_hub import ModelCardData

    return ModelCardData(base_model=base.source, library_name=LIBRARY[kind], tags=list(TAGS)).to_yaml()


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


def card_text(kind: str, *, base: BaseCheckpoint, adapters: AdapterSet, method: str, params: MergeParams,
              grouping: str, pruned: Sequence[Sequence], command: str, scores: Optional[dict] = None) -> str:
    """README.md for the merged `kind` ("model" or "adapter"); `scores` only for search runs."""
    lines = ["---", _front_matter(kind, base), "---", "",
             f"# {' + '.join(adapters.tasks)} ({method}, merged with enmp)", "", _WHAT[kind], "",
             f"Base model: `{base.source}`."]
    if base.gguf is not None:
        lines += ["", f"The base is the GGUF file `{base.gguf.name}`: these are its **dequantised** weights, "
                      "stored as plain safetensors (float32 unless a dtype was chosen) under Hugging Face tensor "
                      "names — not the original unquantised checkpoint, and not re-quantised."]
    rows = [[r["task"], r["path"], _join(r["ranks"]), _join(r["scales"]), r["matrices"]]
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
        lines += _scores(scores)
    lines += ["## Reproduce", "", "```bash", command, "```", ""]
    return "\n".join(lines)


def write_card(out_dir: Path, kind: str, **info) -> None:
    """Write `out_dir`/README.md (call inside the output's atomic temp dir)."""
    (Path(out_dir) / "README.md").write_text(card_text(kind, **info), encoding="utf-8")
