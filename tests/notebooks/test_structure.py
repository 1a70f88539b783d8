"""Every notebook: one `parameters` cell (the first code cell) defining `scale`, kernel metadata
for papermill, no committed outputs, and it is listed in _toc.yml."""

import json

import pytest

from patchnb.cli import toc_notebooks

from ..conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_structure(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["language_info"]["name"] == "python"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged `parameters`"
    assert code[0] is tagged[0], "the parameters cell must be the first code cell"
    assert "scale = " in "".join(tagged[0]["source"])
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, "notebooks are committed stripped"


def test_every_notebook_is_in_the_book():
    assert sorted(toc_notebooks(ROOT)) == sorted(p.stem for p in NOTEBOOKS)


MAX_CELL = 1500  # characters of a code cell besides the parameters cell


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_holds_no_recipe(path):
    """A notebook holds its parameters, one call into patchnb.experiments, display and page plots:
    no function or class definitions, no long code cells (recipes live in the package)."""
    import ast

    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for i, cell in enumerate(code):
        src = "".join(cell["source"])
        tree = ast.parse(src)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                                               ast.Lambda))]
        assert not defs, f"code cell {i} defines {[getattr(d, 'name', 'lambda') for d in defs]}: move it to patchnb"
        if i > 0:
            assert len(src) <= MAX_CELL, f"code cell {i} has {len(src)} characters (> {MAX_CELL}): move code to patchnb"
    assert any("patchnb.experiments" in "".join(c["source"]) for c in code), "no call into patchnb.experiments"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_is_one_click_away(path):
    """Only the parameters cell (plumbing: the page states its parameters) is removed from the page; every
    other code cell is shown collapsed (hide-input), so a reader can see how each number was made."""
    nb = json.loads(path.read_text())
    for i, cell in enumerate(c for c in nb["cells"] if c["cell_type"] == "code"):
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" not in tags:
            assert "remove-cell" not in tags and "remove-input" not in tags, f"code cell {i} is hidden from readers"
