"""mkdocs-gen-files script: fills docs/benchmarks.md's tables from benchmarks/results/*.json.

docs/benchmarks.md holds the prose; each `<!-- results: NAME -->` line in it is replaced by the table(s) built
from that result file, with the command the file records. A missing file gives a "not run yet" note; a marker
this script does not know fails the build (so a typo cannot silently drop a table). No number on the page is
typed by hand.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(mkdocs_gen_files.config.config_file_path).resolve().parent
RESULTS = ROOT / "benchmarks" / "results"
PAGE = "benchmarks.md"
MARKER = re.compile(r"^<!-- results: ([\w-]+) -->$", re.M)


# ---------------------------------------------------------------- formatting
def num(x, digits: int = 2, sign: bool = False) -> str:
    if x is None:
        return "—"
    s = f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"
    return s.replace("-", "−")


def sci(x) -> str:
    return "—" if x is None else f"{x:.2g}" if x < 1000 else f"{x:.2e}".replace("e+0", "e").replace("e+", "e")


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def table(header: list[str], rows: list[list]) -> str:
    cells = lambda r: "| " + " | ".join(str(c).replace("|", "&#x7C;") for c in r) + " |"  # noqa: E731
    return "\n".join([cells(header), "|" + "---|" * len(header), *(cells(r) for r in rows)])


def commands(cmd) -> str:
    """A file's recorded command(s), nested lists flattened, as one code block."""
    flat: list[str] = []

    def walk(c):
        if isinstance(c, str):
            flat.append(c)
        else:
            for x in c:
                walk(x)

    walk(cmd)
    return "Produced by:\n\n```bash\n" + "\n".join(flat) + "\n```"


def load(name: str):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def picture(name: str, alt: str) -> list[str]:
    """A results PNG copied into the site beside the page, as a Markdown image (nothing when not produced)."""
    path = RESULTS / name
    if not path.is_file():
        return []
    with mkdocs_gen_files.open(f"results/{name}", "wb") as f:
        f.write(path.read_bytes())
    return ["", f"![{alt}](results/{name})"]


def not_run(name: str, how: str) -> str:
    return (f'!!! note "Not run yet"\n    `benchmarks/results/{name}` is not in this checkout. Run `{how}` '
            "to produce it; this section is filled from it on the next build.")


def mean_sd(s: dict, digits: int = 2, sign: bool = True) -> str:
    return f"{num(s['mean'], digits, sign)} ± {num(s['std'], digits)}" if s.get("std") else num(s["mean"], digits, sign)


def interval(s: dict, sign: bool = True) -> str:
    if s.get("low") is None:  # a stratum with one run: no spread to resample
        return f"{num(s['mean'], 2, sign)} (too few runs for an interval)"
    return f"{num(s['mean'], 2, sign)} [{num(s['low'], 2, sign)}, {num(s['high'], 2, sign)}]"


# ---------------------------------------------------------------- one builder per result file
def replicates(file: str = "replicates.json") -> str:
    d = load(file)
    if d is None:
        return not_run(file, "python benchmarks/replicates.py --replicates 1-10 ... && "
                             f"python benchmarks/replicates.py --report --out benchmarks/results/{file}")
    s = d["summary"]
    rows = []
    for name, x in s["strategies"].items():
        cov = x.get("coverage")
        rows.append([f"`{name}`", x["runs"], interval(x["test_delta"]), pct(x["share_below"]["mean"]),
                     interval(x["reported_minus_test"]), "—" if cov is None else pct(cov["mean"]),
                     sci(x["layer_examples"]), num(x.get("cost_vs_reference")), num(x["pruned"], 1), x["kept_full"]])
    out = [f"Replicates {d.get('replicates', '?')}.", "",
           table(["strategy", "runs", "test Δ [95 %]", "test Δ < −0.5", "reported − test [95 %]",
                  "90 % interval covers", "cost (layer × examples)", "cost vs cma16x60", "pruned", "full merge kept"],
                 rows)]
    methods = sorted({m for x in s["strategies"].values() for m in x.get("per_method", {})})
    if methods:
        per = [[f"`{name}`"] + [f"{num(x['per_method'][m]['mean'], 2, True)} ({x['per_method'][m]['n']})"
                                if m in x.get("per_method", {}) else "—" for m in methods]
               for name, x in s["strategies"].items()]
        out += ["", "Mean test Δ per merge method (runs):", "", table(["strategy", *methods], per)]
    pairs = [[k, p["pairs"], interval(p), num(p.get("sd")), p["verdict"]]
             for k, p in s.get("paired", {}).items() if p.get("pairs")]
    if pairs:
        out += ["", "Paired differences of test Δ (same replicate and method):", "",
                table(["A − B", "pairs", "mean [95 %]", "SD", "verdict"], pairs)]
    m = d.get("machine") or {}
    if m:
        out += ["", f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, Python {m.get('python', '?')}, "
                    f"torch {m.get('torch', '?')}."]
    out += picture(file.replace(".json", ".png"), "Left: test Δ per strategy, mean and 95 % interval. Right: the "
                   "gain each run reported against its test Δ (the dashed line is an honest report)")
    out += picture(file.replace(".json", "-by-size.png"), "Test Δ against validation examples per task")
    if d.get("command"):
        out += ["", commands(d["command"])]
    return "\n".join(out)


def quality() -> str:
    d = load("quality.json")
    if d is None:
        return not_run("quality.json", "python benchmarks/quality.py")
    st = d["settings"]
    rows = []
    for method, m in d["methods"].items():
        first = True
        for strategy in st["strategies"]:
            if strategy not in m:
                continue
            r, s = m[strategy], m[strategy]["summary"]
            seeds = [run["seed"] for run in r["runs"]]
            per_seed = ", ".join(num(run["test_delta"], 2, True) for run in r["runs"])
            rows.append([f"`{method}`" if first else "", num(m["lam"], 1) if first else "",
                         f"{num(m['base']['test'])} ({num(m['base']['val'])})" if first else "",
                         f"`{strategy}`", "—" if strategy == "greedy" else r["size"].replace("x", " × "),
                         ", ".join(map(str, seeds)),
                         mean_sd(s["test_delta"]) + (f" ({per_seed})" if len(seeds) > 1 else ""),
                         mean_sd(s["val_delta"]), sci(s["layer_examples"]["mean"]), num(s["pruned"]["mean"], 1)])
            first = False
    means = [[f"`{k}`", num(v, 2, True), len(d["mean_over"][k]), ", ".join(d["mean_over"][k])]
             for k, v in d["mean_test_delta"].items()]
    return "\n".join([
        f"Tasks: {', '.join(st['tasks'])}; validation / test examples per task: "
        f"{st['val_samples'] or 'all'} / {st['test_samples'] or 'all'}"
        f"{'; development split (every third validation example stands in for test)' if st.get('dev') else ''}.",
        "",
        table(["method", "λ", "full merge test (val)", "strategy", "size", "seeds", "test Δ", "val Δ",
               "cost (layer × examples)", "pruned"], rows),
        "", "Mean test Δ per strategy over the methods it ran:", "",
        table(["strategy", "mean test Δ", "methods", "which"], means),
        "", commands(st["command"]) if st.get("command") else ""])


def engine() -> str:
    d = load("engine.json")
    if d is None:
        return not_run("engine.json", "python benchmarks/engine.py")
    rows = [[f"`{k}`", num(m["engine_over_forward"]), num(m.get("merge_patch_over_forward"), 3),
             num(m["naive_over_engine"]), num(m["rebuild_over_patch"], 1),
             "yes" if m["same_fitness"] else "**no**", f"{m['peak_rss_mb']:.0f}"] for k, m in d["methods"].items()]
    return "\n".join([f"{d['masks']} distinct masks per method.", "",
                      table(["method", "engine / forward", "merge + patch / forward", "naive / engine",
                             "rebuild / patch", "same fitness", "peak RSS MB"], rows),
                      *(["", commands(d["command"])] if d.get("command") else [])])


def parallel() -> str:
    d = load("parallel.json")
    if d is None:
        return not_run("parallel.json", "python benchmarks/parallel.py")
    return table(["workers", "speed-up of the search loop over 1 worker", "identical result"],
                 [[d["workers"], f"{d['speedup']:.2f}×", "yes" if d["identical"] else "**no**"]])


def scale() -> str:
    d = load("scale.json")
    if d is None:
        return not_run("scale.json", "python benchmarks/scale.py")
    rows = []
    remeasured = any(s.get("measured") for s in d["settings"])  # rows re-run after the rest (an older file)
    for s in d["settings"]:
        own = [f"h {s['hidden']}"] if s.get("hidden", d["hidden"]) != d["hidden"] else []
        own += [f"{s['val_samples']} ex."] if s.get("val_samples", d["val_samples"]) != d["val_samples"] else []
        L = f"{s['layers']} ({', '.join(own)})" if own else s["layers"]
        rows.append([s["tasks"], L, s["grouping"], f"{s['modules']:,}", num(s["forward_s"]),
                     num(s["overhead_over_forward"], 3), num(s["merge_patch_over_forward"], 3),
                     num(s["prefix_over_forward"], 3), num(s["journal_over_forward"], 3),
                     num(s["ask_tell_over_forward"] + s["decode_over_forward"], 3), pct(s["merge_cache_hit_rate"]),
                     num(s.get("adapters_load_s")), num(s["lora_factors_mb"], 1),
                     f"{s['merge_cache_mb'] + s['prefix_cache_mb']:.0f}", f"{s['peak_rss_mb']:,.0f}",
                     "diagonal" if s["es"].startswith("diagonal") else "full"]
                    + (["yes" if s.get("measured") else ""] if remeasured else []))
    out = [f"Tiny random Llama models (hidden {d['hidden']}, LoRA rank {d['rank']}, {d['val_samples']} validation "
           f"examples per task unless the row says otherwise), population {d['popsize']} × {d['generations']} "
           "generations.", "",
           table(["T", "L", "grouping", "modules", "forward s / gen", "overhead / fwd", "merge + patch", "prefix",
                  "journal", "ask/tell + decode", "merge-cache hits", "adapter load s", "LoRA MB", "caches MB",
                  "peak RSS MB", "CMA-ES"] + (["re-measured"] if remeasured else []), rows)]
    if d.get("note"):
        out += ["", f"Note recorded with the file: {d['note']}."]
    measured = sorted({s["measured"] for s in d["settings"] if s.get("measured")})
    out += [f"Re-measured rows: {m}." for m in measured]
    if d.get("command"):
        out += ["", commands(d["command"])]
    return "\n".join(out)


def llm() -> str:
    d = load("llm.json")
    if d is None:
        return not_run("llm.json", "python benchmarks/llm.py")
    st = d["settings"]
    rows, plain = [], []
    for kind, k in d["kinds"].items():
        for method, m in k["methods"].items():
            base = m["base"]
            full = f"{num(base['test']['mean_normalized'])} ({num(base['val']['mean_normalized'])})"
            if not m["enmp"]:
                plain.append([kind, f"`{method}` (λ {num(m['lam'], 1)})", full])
            for strategy, e in m["enmp"].items():
                rnd = e.get("random")
                rows.append([kind, f"`{method}` (λ {num(m['lam'], 1)})", full, f"`{strategy}`",
                             f"{num(e['test'])} ({num(e['val'])})", num(e["test_delta"], 2, True),
                             num(e["val_delta"], 2, True),
                             "—" if not rnd or not e["n_pruned"] else
                             f"{num(rnd['test']['mean_normalized'])} ± {num(rnd['test']['std'])}",
                             e["n_pruned"] if e["n_pruned"] else "0 (full merge kept)", sci(e["cost"]["layer_examples"]),
                             num(e["seconds_per_candidate"], 1)])
    machine = st.get("machine") or {}
    out = [f"Base: {st.get('base', '?')}. Tasks: {', '.join(st['tasks'])}; {st['val']} validation / {st['test']} "
           f"test examples per task; search {st['popsize']} × {st['generations']}, ρ {st['rho']}, seed {st['seed']}; "
           f"measured {st.get('date', '?')} on {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
           f"device {machine.get('device', '?')}.", "",
           table(["kind", "method", "full merge test (val)", "strategy", "+ ENMP test (val)", "test Δ", "val Δ",
                  "+ random (test)", "pruned", "cost (layer × examples)", "s / candidate"], rows)]
    if plain:
        out += ["", "Full merges without a search, test (val):", "",
                table(["kind", "method", "full merge test (val)"], plain)]
    if st.get("command"):
        out += ["", commands(st["command"])]
    return "\n".join(out)


def search_efficiency() -> str:
    d = load("search_efficiency.json")
    if d is None:
        return not_run("search_efficiency.json", "python benchmarks/search_efficiency.py")
    f = d["faithful"]
    row = lambda r, what: [what, f"`{r['strategy']}`", r["seed"], f"{r['popsize']} × {r['generations']}",  # noqa: E731
                           num(r["best_fitness"]), r["evaluations"], r["forward_evaluations"],
                           r["reached_final_at_forward_evaluations"], f"{r['seconds']:.0f}"]
    rows = [row(f, "faithful")] + [row(r, f"budget {d['budget_forward_evaluations']}") for r in d["efficient"]]
    return (f"TA λ {num(d['lam'], 1)}; full merge validation fitness {num(d['base_val_fitness'])}.\n\n"
            + table(["run", "strategy", "seed", "size", "best val fitness", "candidates", "forward evaluations",
                     "reached its final fitness at", "seconds"], rows)
            + f"\n\nRuns within the budget that reached the faithful run's final fitness: {d['successes']}.")


def files() -> str:
    names = sorted(p.name for p in RESULTS.glob("*.json")) if RESULTS.is_dir() else []
    return "\n".join(f"- `benchmarks/results/{n}`" for n in names) or "(none)"


BUILDERS = {"replicates": replicates, "replicates-val-size": lambda: replicates("replicates-val-size.json"),
            "replicates-order": lambda: replicates("replicates-order.json"),
            "quality": quality, "engine": engine, "parallel": parallel, "scale": scale,
            "llm": llm, "search-efficiency": search_efficiency, "files": files}


SOURCE_ONLY = re.compile(r"^<!-- source-only -->\n.*?^<!-- /source-only -->\n", re.M | re.S)


def fill(text: str) -> str:
    text = SOURCE_ONLY.sub("", text)  # a note for readers of the unrendered file
    unknown = sorted(set(MARKER.findall(text)) - set(BUILDERS))
    if unknown:
        raise SystemExit(f"docs/{PAGE}: unknown results marker(s) {unknown}; known: {sorted(BUILDERS)}")
    return MARKER.sub(lambda m: BUILDERS[m.group(1)](), text)


with mkdocs_gen_files.open(PAGE, "r") as f:
    template = f.read()
with mkdocs_gen_files.open(PAGE, "w") as f:
    f.write(fill(template))
