"""`enmp` console script. Every EnmpError becomes one line on stderr and exit code 2 (no traceback)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import EnmpError
from ..merging import available_methods, flag_params
from ..search import available_strategies
from .merge_flags import with_merge_flags

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Merge LoRA experts with Evolutionary Negative Module Pruning (ENMP).")
err_console = Console(stderr=True)


def _error_line(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def _fail(message: str, code: int = 2) -> None:
    _error_line(message)
    raise typer.Exit(code)


@app.command()
@with_merge_flags(after="method")
def merge(
    base: str = typer.Option(..., "--base", help="Base model: local HF model dir or hub id."),
    adapter: List[str] = typer.Option(..., "--adapter", help="NAME=PATH of a PEFT LoRA adapter (repeat)."),
    method: str = typer.Option("ta", "--method", help=", ".join(available_methods()) + "."),
    merge_params: dict = None,  # one flag per declared merge parameter (--lam, --top-k, …): see merge_flags.py
    mask: Optional[Path] = typer.Option(None, "--mask", help="Keep-mask JSON (tasks, layers, keep)."),
    out: Path = typer.Option(..., "--out", help="Output model directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    save_adapter: bool = typer.Option(False, "--save-adapter", help="Also write OUT/adapter, a merged LoRA."),
    adapter_rank: Optional[int] = typer.Option(None, "--adapter-rank", min=1, help="Rank of the merged adapter."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="float32, float16 or bfloat16 (default: base's)."),
    grouping: str = typer.Option("layer", "--grouping", help="Mask modules: layer or projection."),
    layer_regex: Optional[str] = typer.Option(None, "--layer-regex", help="Regex with (?P<layer>\\d+) for "
                                                                         "unknown module names."),
    base_model_id: Optional[str] = typer.Option(None, "--base-model-id", help="The base's Hub id (ORG/NAME) for "
                                                "the model card when --base is a local path."),
):
    """Merge LoRA experts into the base model and write a Hugging Face model directory."""
    from .adapter_args import parse_adapter_args
    from ..api import merge_to_dir

    if dtype not in (None, "float32", "float16", "bfloat16"):
        _fail(f"--dtype: unknown dtype '{dtype}' — use float32, float16 or bfloat16")
    params = flag_params(method, **merge_params)  # flags are shared: a --seed that ties ignores is fine
    console = Console(stderr=True)
    # On a terminal: timestamped log lines; piped or captured: one plain line per message (no wrapping).
    log = console.log if console.is_terminal else (
        lambda m: console.print(m, soft_wrap=True, highlight=False, markup=False))
    summary = merge_to_dir(base, parse_adapter_args(adapter), out, method=method, params=params, mask=mask,
                           grouping=grouping, layer_regex=layer_regex, overwrite=overwrite,
                           save_adapter=save_adapter, adapter_rank=adapter_rank, dtype=dtype,
                           base_model_id=base_model_id, log=log)
    n = len(summary["pruned"])
    console.print(f"wrote {out} ({method}, {len(summary['tasks'])} tasks, {n} module(s) pruned"
                  + (", with adapter/" if save_adapter else "") + ")", highlight=False, soft_wrap=True, markup=False)


@app.command()
def inspect(
    base: str = typer.Option(..., "--base", help="Base model: local dir or hub id."),
    adapter: List[str] = typer.Option(..., "--adapter", help="NAME=PATH (repeat)."),
    layer_regex: Optional[str] = typer.Option(None, "--layer-regex"),
):
    """Show tasks, layers, projections, ranks and scales of a set of adapters."""
    from rich.table import Table

    from ..adapters import BaseCheckpoint, load_adapter_set
    from .adapter_args import parse_adapter_args

    aset = load_adapter_set(BaseCheckpoint(base), parse_adapter_args(adapter), layer_regex=layer_regex)
    rows = aset.describe()
    table = Table(title=f"{len(aset.tasks)} adapters on {base} — {len(aset.layers)} layers, "
                        f"{len(aset.targets)} matrices")
    for col in rows[0]:
        table.add_column(str(col))
    for row in rows:
        table.add_row(*[escape(", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v))
                        for v in row.values()])
    console = Console()
    if not console.is_terminal:  # piped or captured: never truncate values (paths, scales) to 80 columns
        console = Console(width=max(console.width, Console(width=10_000).measure(table).maximum))
    console.print(table)


@app.command()
def search(
    config: Optional[Path] = typer.Option(None, "--config", help="Run YAML (see README)."),
    method: Optional[str] = typer.Option(None, "--method"),
    strategy: Optional[str] = typer.Option(None, "--strategy", help=(
        f"One of {', '.join(available_strategies())} (`enmp strategies` describes each and its options)")),
    generations: Optional[int] = typer.Option(None, "--generations"),
    popsize: Optional[int] = typer.Option(None, "--popsize"),
    rho: Optional[float] = typer.Option(None, "--rho"),
    seed: Optional[int] = typer.Option(None, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="Run directory (default runs/<config name>)."),
    overwrite: bool = typer.Option(False, "--overwrite"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run directory."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Parallel evaluators (Ray when > 1)."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Join an existing Ray cluster."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    eval_dtype: Optional[str] = typer.Option(None, "--eval-dtype", help="float32, float16 or bfloat16."),
    cache_mb: Optional[int] = typer.Option(None, "--cache-mb", help="Merge cache budget (MB)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate a config offline on a tiny random model."),
):
    """Search which modules to prune (ENMP) and write the run directory."""
    from ..config import load_config

    if resume is not None:
        if config is not None:
            _fail("--resume takes its config from the run directory — drop --config")
        cfg = load_config(resume / "config.yaml") if (resume / "config.yaml").is_file() else None
        if cfg is None:
            _fail(f"--resume: {resume} is not a run directory (no config.yaml) — pass the directory an earlier "
                  "`enmp search` wrote (its --out)")
        run_dir = resume
    elif config is None:
        _fail("--config is required (or --resume RUN_DIR)")
    else:
        cfg = load_config(config)
        run_dir = out or Path("runs") / config.stem
    overrides = {"merge.method": method, "search.strategy": strategy, "search.generations": generations,
                 "search.popsize": popsize, "search.rho": rho, "search.seed": seed, "parallel.workers": workers,
                 "parallel.ray_address": ray_address, "eval.device": device, "eval.dtype": eval_dtype,
                 "eval.cache_mb": cache_mb}
    cfg = apply_overrides(cfg, {k: v for k, v in overrides.items() if v is not None}, resume is not None)
    if dry_run:
        from ..api import dry_run as do_dry_run

        do_dry_run(cfg, console=Console())
        return
    from ..api import run_search

    try:
        run_search(cfg, run_dir, resume=resume is not None, overwrite=overwrite)
    except KeyboardInterrupt:
        _fail(f"interrupted — state saved after the last finished generation; continue with "
              f"`enmp search --resume {run_dir}`", code=130)


def apply_overrides(cfg, overrides: dict, resuming: bool):
    """Apply CLI flags on top of the YAML (validated like YAML values); a resumed run may not change them."""
    from pydantic import ValidationError

    from ..config import RunConfig, format_validation_error

    if not overrides:
        return cfg
    if resuming:
        _fail(f"--resume continues the saved run unchanged — drop {', '.join('--' + k.split('.')[1] for k in overrides)}")
    data = cfg.model_dump(mode="json")
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        data[section][key] = value
    if "merge.method" in overrides:  # trying a config with another method: the YAML's values for parameters
        # that method does not take would only be errors (they never changed its merge), so they are left out
        from ..merging import get_method

        accepted = get_method(overrides["merge.method"]).options
        data["merge"] = {k: v for k, v in data["merge"].items() if k == "method" or k in accepted}
    if "search.strategy" in overrides:  # likewise the YAML's options another strategy does not take
        from ..search import get_strategy

        accepted = get_strategy(overrides["search.strategy"]).OPTIONS
        data["search"]["options"] = {k: v for k, v in data["search"].get("options", {}).items() if k in accepted}
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        _fail(format_validation_error(e, "command line") + " — fix that flag's value (see `enmp search --help`)")
    except EnmpError as e:  # a value the merge method's or strategy's own declaration refuses
        _fail(f"command line: {e.line()}")


@app.command()
def probe(
    config: Path = typer.Option(..., "--config", help="Run YAML: base, experts, data and merge, as for search."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output dir (default runs/<config name>-probe)."),
    top: int = typer.Option(5, "--top", min=2, help="The interaction check prunes the 2 … TOP most helpful "
                                                    "single modules together."),
    run: Optional[Path] = typer.Option(None, "--run", help="A finished search's run dir: check its mask too."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Parallel evaluators (Ray when > 1)."),
    overwrite: bool = typer.Option(False, "--overwrite"),
):
    """The paper's pilot study on your merge: prune each task × layer module alone (T·G + 1 evaluations of the
    validation split, printed before starting), then the most helpful ones together. Writes probe.json and a
    heat map, probe.png."""
    from ..api import Mask, load_config, run_probe

    cfg = load_config(config)
    cfg = apply_overrides(cfg, {"parallel.workers": workers} if workers else {}, False)
    mask = None
    if run is not None:
        if not (run / "mask.json").is_file():
            _fail(f"--run: {run} has no mask.json — pass the directory of a finished `enmp search`")
        mask = Mask.load(run / "mask.json")
    run_probe(cfg, out or Path("runs") / f"{config.stem}-probe", top=top, mask=mask, overwrite=overwrite,
              console=Console(stderr=True))


@app.command()
def strategies(name: Optional[str] = typer.Argument(None, help="A strategy: show its options.")):
    """List the search strategies, or one strategy's options with their defaults."""
    from .catalog import show_catalog

    show_catalog("strategies", name, Console())


@app.command()
def methods(name: Optional[str] = typer.Argument(None, help="A merge method: show its parameters.")):
    """List the merge methods, or one method's parameters with their defaults."""
    from .catalog import show_catalog

    show_catalog("methods", name, Console())


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory written by `enmp search`.")):
    """Print a finished run's results table again."""
    from ..api import RunReport
    from ..report import print_report

    print_report(RunReport.load(run_dir), Console())


@app.command("convert-heads")
def convert_heads_cmd(
    pt: List[Path] = typer.Argument(..., help="KnOTS heads.pt file(s) (read with weights_only=True)."),
    out: Path = typer.Option(..., "--out", help="Directory for <task>/head.safetensors + head.json."),
    setting: Optional[str] = typer.Option(None, "--setting", help="nlp or vision (default: guessed)."),
):
    """Convert pickled KnOTS heads to safetensors heads that run configs can point at."""
    from ..recipes import convert_heads

    for p in pt:
        for task, d in convert_heads(p, out, setting=setting).items():
            Console().print(f"{task}: {d / 'head.safetensors'}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where runs go (one dir per method)."),
    cache: Path = typer.Option(Path(".cache/enmp-demo"), "--cache", help="Data and trained experts (reused)."),
    quick: bool = typer.Option(False, "--quick", help="A smaller search (for smoke tests)."),
):
    """Offline demo: build real-text tasks, train LoRA experts, merge, search, print the table."""
    from ..demo.run import run_demo

    run_demo(out, cache, quick=quick)


@app.command()
def push(
    run_dir: Path = typer.Argument(..., help="A run directory (`enmp search`) or an `enmp merge --out` dir."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub model repo to create or update: ORG/NAME."),
    adapter: bool = typer.Option(False, "--adapter", help="Upload the merged LoRA adapter, not the model."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private."),
):
    """Upload the merged model (or --adapter) and its model card to the Hugging Face Hub."""
    from .push import push as push_to_hub

    log = lambda m: err_console.print(m, soft_wrap=True, highlight=False, markup=False)  # noqa: E731
    url = push_to_hub(run_dir, repo_id, adapter=adapter, private=private, log=log)
    Console().print(f"uploaded to {url}", soft_wrap=True, highlight=False, markup=False)


def main(argv: Optional[list[str]] = None) -> None:
    """Run the CLI. Every user error (ours, click's usage errors, OS errors) is one line and exit code 2."""
    try:  # typer >= 0.2x vendors click; older releases use click itself
        from typer._click.exceptions import ClickException, UsageError
    except ImportError:  # pragma: no cover
        from click.exceptions import ClickException, UsageError

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = app(args=argv, prog_name="enmp", standalone_mode=False)
    except EnmpError as e:
        _error_line(e.line())
        sys.exit(2)
    except UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # the help text has already been printed
            sys.exit(2)
        ctx = e.ctx
        hint = f" — see `{ctx.command_path} {ctx.help_option_names[0]}`" if ctx is not None else ""
        _error_line(" ".join(e.format_message().split()).rstrip(".") + hint)
        sys.exit(2)
    except ClickException as e:
        _error_line(" ".join(e.format_message().split()))
        sys.exit(e.exit_code)
    except typer.Abort:
        _error_line("aborted")
        sys.exit(1)
    except OSError as e:  # a file we read or write: name it, no traceback
        where = f"{e.filename}: " if e.filename else ""
        _error_line(f"{where}{e.strerror or type(e).__name__} — check the path and its permissions")
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
