"""The committed notebooks are the source: no outputs, one literal `parameters` cell that matches the schema."""

from __future__ import annotations

import ast

import nbformat
import pytest

from helpers.params import schema as params
from helpers.utils import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS_DIR.glob("*.ipynb"))


def _parameters_cells(book) -> list:
    return [c for c in book.cells if "parameters" in c.get("metadata", {}).get("tags", [])]


def test_every_schema_notebook_exists():
    assert sorted(p.stem for p in NOTEBOOKS) == sorted(params.NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(book.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; nbstripout (installed by make) removes them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_literal_parameters_cell_matching_the_schema(path):
    book = nbformat.read(path, as_version=4)
    cells = _parameters_cells(book)
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    found = {}
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), \
            f"{path.name}: line {stmt.lineno} of the parameters cell is not NAME = literal"
        found[stmt.targets[0].id] = ast.literal_eval(stmt.value)  # raises on anything but a literal
    expected = params.defaults(path.stem)
    assert list(found) == list(expected), f"{path.name}: parameters differ from the schema"
    for name, value in found.items():
        assert value == expected[name] and type(value) is params.BY_NAME[name].type, \
            f"{path.name}: {name} = {value!r}, the schema says {expected[name]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_setup_call_reads_the_schema(path):
    book = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    assert f'session.start("{path.stem}", globals())' in code
    last = [c for c in book.cells if c.cell_type == "code"][-1]
    assert last.source.strip() == "session.finish(ctx)", f"{path.name}: the last cell lets the run go"
    for cell in book.cells:
        if cell.cell_type == "code":
            tree = ast.parse(cell.source)
            assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))], \
                f"{path.name}: logic belongs in helpers/"


def test_readme_parameter_table_is_the_schema():
    readme = (paths.PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    assert params.markdown_table() in readme, "README's table drifted: paste `python -m helpers.params` into it"
