"""The layer order the README states is true of the imports: no module imports a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "enmp"

# lowest first; a module may import its own layer and any below it (the README's "Layout" paragraph)
LAYERS = [
    # shared foundations; `tiny` (tiny models for the dry run, tests and benchmarks) imports no other enmp unit
    {"errors", "atomic_files", "dtypes", "architectures", "masking", "options", "metrics", "data_config", "tiny"},
    {"adapters"},
    {"merging"},
    {"search"},
    {"evaluation"},
    {"config"},
    {"engine"},
    {"report"},
    {"api", "recipes"},
    {"demo"},
    {"cli"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}



def _unit(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imported_units(path: Path) -> set[str]:
    """Top-level enmp units a module imports (relative or absolute, at module level or inside functions)."""
    here = path.relative_to(SRC).parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                parts = [*base, *(node.module.split(".") if node.module else [])]
                names = [parts[0]] if parts else [a.name for a in node.names]
            elif node.module and node.module.split(".")[0] == "enmp":
                names = [node.module.split(".")[1]] if "." in node.module else [a.name for a in node.names]
            else:
                continue
            out.update(names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("enmp."))
    return out


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in SRC.rglob("*.py") if p.name != "__init__.py" or p.parent != SRC}
    assert units <= set(RANK), sorted(units - set(RANK))


def test_no_module_imports_a_higher_layer():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent == SRC and path.name == "__init__.py":
            continue
        unit = _unit(path)
        for other in _imported_units(path):
            if other in RANK and RANK[other] > RANK[unit]:
                bad.append(f"{path.relative_to(SRC)} imports {other}")
    assert not bad, bad


#: the engine's rooms, in data-path order: a room imports only rooms before it (and lower layers)
ROOMS = ["loading", "scoring", "outputs", "run", "dry_run"]


def test_engine_rooms_import_only_earlier_rooms():
    engine = SRC / "engine"
    room_of = {name: i for i, name in enumerate(ROOMS)}
    assert {p.name for p in engine.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(ROOMS)
    bad = []
    for path in sorted(engine.rglob("*.py")):
        rel = path.relative_to(engine).parts
        if len(rel) == 1:
            continue  # engine/__init__.py
        mine = room_of[rel[0]]
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level:
                here = path.relative_to(SRC).parts[:-1]
                base = here[: len(here) - (node.level - 1)]
                parts = [*base, *(node.module.split(".") if node.module else [])]
                if len(parts) >= 2 and parts[0] == "engine" and parts[1] in room_of and room_of[parts[1]] > mine:
                    bad.append(f"{path.relative_to(SRC)} imports engine.{parts[1]}")
    assert not bad, bad
