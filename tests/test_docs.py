"""Cheap checks of the README and the documentation site, without building it (`make docs` builds it strictly).

No enmp import (the API's public names are read from src/enmp/api.py's source): these run in milliseconds.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
#: pages written at build time by the mkdocs-gen-files scripts in docs/_gen/ (page → script)
GENERATED = {"reference/strategies.md": "catalog.py", "reference/methods.md": "catalog.py"}
LINK = re.compile(r"\]\(([^)\s]+)\)")


def nav_pages() -> list[str]:
    out = []

    def walk(node):
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, list):
            for x in node:
                walk(x)
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)

    walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    return out


def written_pages() -> set[str]:
    return {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}


def test_every_nav_page_exists_or_is_generated():
    pages = nav_pages()
    assert len(pages) == len(set(pages)), "a page is twice in the nav"
    missing = [p for p in pages if p not in written_pages() and p not in GENERATED]
    assert not missing, f"in mkdocs.yml's nav but not under docs/: {missing}"
    for page, script in GENERATED.items():
        assert page in pages, f"generated page {page} is not in the nav"
        assert f'"{page}"' in (DOCS / "_gen" / script).read_text(), f"docs/_gen/{script} no longer writes {page}"


def test_every_written_page_is_in_the_nav():
    assert not written_pages() - set(nav_pages()), "pages under docs/ missing from mkdocs.yml's nav"


def _relative_links(path: Path) -> list[tuple[str, Path]]:
    out = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # external, or an anchor on the same page (the strict build checks anchors)
        out.append((target, (path.parent / target.split("#")[0]).resolve()))
    return out


def test_relative_links_between_pages_resolve():
    generated = {(DOCS / p).resolve() for p in GENERATED}
    bad = [f"{page.relative_to(ROOT)}: {target}" for page in [README, *DOCS.rglob("*.md")]
           for target, dest in _relative_links(page) if not dest.exists() and dest not in generated]
    assert not bad, bad


def test_readme_is_short_and_keeps_the_setup_lines():
    text = README.read_text()
    assert len(text.splitlines()) <= 160
    lines = text.splitlines()
    assert any(line.startswith("make demo   # ") for line in lines)
    assert any(line.startswith("make test   # ") for line in lines)
    assert lines.index(next(l for l in lines if l.startswith("make demo"))) < 10, "the set-up commands come first"


def test_readme_layout_paragraph_follows_the_checked_layer_order():
    spec = importlib.util.spec_from_file_location("layers_test", ROOT / "tests" / "test_layers.py")
    layers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(layers)
    para = next(p for p in README.read_text().split("\n\n") if p.startswith("**Layout.**"))
    units = [sorted(layer)[0] for layer in layers.LAYERS[1:]]  # one name per layer above the foundations
    at = [para.index(f"`{u}`") for u in units]
    assert at == sorted(at), f"the Layout paragraph lists the layers out of order: {units}"
    rooms = [para.index(f"`{r}`") for r in layers.ROOMS]
    assert rooms == sorted(rooms), "the Layout paragraph lists the engine's rooms out of order"
    for name in layers.LAYERS[0]:
        assert f"`{name}`" in para, f"foundation module {name} missing from the Layout paragraph"


def test_api_page_documents_exactly_the_public_api():
    tree = ast.parse((ROOT / "src" / "enmp" / "api.py").read_text())
    public = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                  and any(getattr(t, "id", None) == "__all__" for t in n.targets))
    documented = re.findall(r"^::: enmp\.api\.(\w+)\s*$", (DOCS / "reference" / "api.md").read_text(), re.M)
    assert sorted(documented) == sorted(public)


def test_benchmarks_page_markers_are_known_to_its_generator():
    script = (DOCS / "_gen" / "benchmarks.py").read_text()
    builders = re.search(r"BUILDERS = \{(.*?)\}", script, re.S).group(1)
    known = set(re.findall(r'"([\w-]+)":', builders))
    markers = re.findall(r"^<!-- results: ([\w-]+) -->$", (DOCS / "benchmarks.md").read_text(), re.M)
    assert markers and set(markers) <= known, set(markers) - known
    assert "replicates" in markers


def test_make_docs_builds_strictly_after_the_tests_in_ci():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^docs:.*\n\t.*mkdocs build --strict", make, re.M)
    ci = [l.strip() for l in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert ci.index("make test") < ci.index("make docs")
    assert "site/" in (ROOT / ".gitignore").read_text().split()


def test_every_run_config_in_the_guide_is_a_valid_config(tmp_path):
    """The YAML examples readers copy (run configs: a `base` and `tasks`) pass the config's own checks."""
    from enmp.config import parse_config

    blocks = [b for page in sorted((ROOT / "docs" / "guide").glob("*.md"))
              for b in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)]
    configs = [yaml.safe_load(b) for b in blocks]
    configs = [c for c in configs if isinstance(c, dict) and "base" in c and "tasks" in c]
    assert any(t.get("kind") == "lm_eval" for c in configs for t in c["tasks"])  # the lm-eval recipe is among them
    for c in configs:
        parse_config(c, where="docs", root=tmp_path)
