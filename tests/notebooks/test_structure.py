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
