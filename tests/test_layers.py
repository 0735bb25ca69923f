"""The house: every import inside helpers/ (function bodies included) points down the stated order of layers,
and no circle remains, so a change lands in one room without pulling the building along."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helpers.utils.paths import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "helpers"
# Bottom to top. A module may import from a lower layer, or from its own subpackage without a circle.
LAYERS = ["utils", "params", "data", "models", "training", "evaluation research", "reporting", "runner", "<top>"]
RANK = {pkg: i for i, names in enumerate(LAYERS) for pkg in names.split()}


def module_name(path: Path) -> str:
    """helpers/data/split.py → helpers.data.split; a package's __init__ is the package."""
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    """The subpackage a module lives in, or <top> for helpers/*.py."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and module in MODULES and MODULES[module].name == "__init__.py") else "<top>"


def imports_of(module: str) -> set[str]:
    """Every helpers module that `module` imports, anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != module and not t.startswith(module + "."))
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_subpackage_is_a_layer() -> None:
    rooms = {room(m) for m in MODULES} - {"<top>"}
    assert rooms <= set(RANK), f"subpackages without a layer: {sorted(rooms - set(RANK))}; add them to LAYERS"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    mine = room(module)
    up = [t for t in sorted(GRAPH[module]) if room(t) != mine and RANK[room(t)] >= RANK[mine]]
    assert not up, f"{module} (layer {mine}) imports {up}, which are not below it in {LAYERS}"


def test_no_circles() -> None:
    circles, state = [], {}

    def visit(m: str, trail: list[str]) -> None:
        state[m] = "open"
        for t in sorted(GRAPH[m]):
            if state.get(t) == "open":
                circles.append(" → ".join(trail[trail.index(t):] + [m, t]) if t in trail else f"{m} → {t}")
            elif t not in state:
                visit(t, trail + [m])
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [])
    assert not circles, "import circles: " + "; ".join(circles)


def test_the_top_holds_only_entry_points() -> None:
    top = sorted(m for m in MODULES if room(m) == "<top>" and m != "helpers")
    assert len(top) <= 6, f"{len(top)} modules directly under helpers/: {top}; move the logic into a subpackage"
