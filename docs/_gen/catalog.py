"""mkdocs-gen-files script: the strategy-options and merge-method-parameters reference pages, generated from the
declarations themselves (`enmp.cli.catalog.catalog_rows`, the rows `enmp strategies` / `enmp methods` print),
so the pages can never disagree with the code."""

import mkdocs_gen_files

from enmp.cli.catalog import catalog_rows


def cell(text) -> str:
    return str(text).replace("|", "&#x7C;").replace("\n", " ")


def sentence(text) -> str:
    text = cell(text)
    return text[:1].upper() + text[1:] + "."


def options_table(rows: list[dict]) -> list[str]:
    out = ["| option | default | accepts | what it does |", "|---|---|---|---|"]
    out += [f"| `{r['name']}` | `{cell(r['default'])}` | {cell(r['accepts'])} | {cell(r['help'])} |" for r in rows]
    return out + [""]


def page(kind: str, title: str, intro: list[str], body) -> str:
    """A catalog page: the intro, an index table, then one section per entry with `body(row)`'s lines."""
    rows = catalog_rows(kind)
    lines = [f"# {title}", "", *intro, "", f"| {kind[:-1] if kind == 'methods' else 'strategy'} | what it does |",
             "|---|---|"]
    lines += [f"| [`{r['name']}`](#{r['name']}) | {cell(r['summary'])} |" for r in rows]
    lines.append("")
    for r in rows:
        lines += [f"## `{r['name']}` {{#{r['name']}}}", "", sentence(r["summary"]), "", *body(r)]
    return "\n".join(lines)


def strategy_body(r: dict) -> list[str]:
    own = ["Options (`search.options.NAME`):", "", *options_table(r["options"])] if r["options"] else \
        ["No options of its own.", ""]
    return own + ["Settings every strategy takes (`search.NAME`), with this strategy's defaults:", "",
                  *options_table(r["common"])]


def strategies_page() -> str:
    return page("strategies", "Strategy options", [
        "Generated from each strategy's own declaration (the rows `enmp strategies NAME` prints). A strategy's",
        "options go under `search.options` in a [run config](../guide/config.md#search); the settings every",
        "strategy takes (`rho`, `seed`, `popsize`, `generations`) go directly under `search:` or on the command",
        "line, and when left unset take the defaults listed for that strategy. What each strategy does and when to",
        "use it: [Search strategies](../guide/strategies.md)."], strategy_body)


def methods_page() -> str:
    return page("methods", "Merge-method parameters", [
        "Generated from each method's own declaration (the rows `enmp methods NAME` prints). The parameters go",
        "under `merge:` in a [run config](../guide/config.md#merge) next to `method`, or on the command line as",
        "flags (`lam` → `--lam`, `top_k` → `--top-k`, …). How the methods differ:",
        "[Merge methods](../guide/methods.md)."],
        lambda r: options_table(r["options"]) if r["options"] else ["No parameters.", ""])


for path, text in (("reference/strategies.md", strategies_page()), ("reference/methods.md", methods_page())):
    with mkdocs_gen_files.open(path, "w") as f:
        f.write(text + "\n")
    mkdocs_gen_files.set_edit_path(path, "_gen/catalog.py")
