"""The run cache's boundary (issue "Verdicts with a stated error rate", part 5): a cached run is keyed by the
import closure of the module that computes it (patchnb.cache.cached, patchnb.track.module_closure), so that
closure must hold no verdict, figure, page or glue code. Then re-deciding a claim, re-drawing a figure or
re-wording a sentence rebuilds the book without re-training. Static (reads the sources): exact on any host."""
import ast
from pathlib import Path

import pytest

from patchnb.track import module_closure

PKG = Path(__file__).resolve().parents[1] / "patchnb"
# page code: the claims rule and its figure, the pages' reports, figures and glue
PAGE = {"experiments/verdict.py", "experiments/result.py", "plots.py", "book.py", "experiments/patch/plots.py",
        "experiments/patch/budget.py"}


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _calls_cached(path: Path) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "cached"
               for n in ast.walk(tree))


def _imports_matplotlib(path: Path) -> bool:
    for n in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in n.names] if isinstance(n, ast.Import) else \
            [n.module or ""] if isinstance(n, ast.ImportFrom) else []
        if any(x.split(".")[0] == "matplotlib" for x in names):
            return True
    return False


CACHED = sorted(p for p in PKG.rglob("*.py") if p.name != "cache.py" and _calls_cached(p))
# chapters whose runs and page still share a module (issue 20 part 5, not done yet): strict, so a chapter that is
# split must leave this list
UNSPLIT = {"experiments/dictionary.py", "experiments/emp_ssl.py", "experiments/intrinsic_dimension.py",
           "experiments/patch/figures.py", "experiments/patch/network.py", "experiments/shape_bias.py",
           "experiments/ssl_zoo.py", "experiments/supcon_sweep.py"}
_NOT_YET = pytest.mark.xfail(strict=True, reason="runs and page code still share this module (issue 20 part 5)")


def _params(paths):
    return [pytest.param(p, id=p.relative_to(PKG).as_posix(),
                         marks=[_NOT_YET] if p.relative_to(PKG).as_posix() in UNSPLIT else []) for p in paths]


def test_the_cached_modules_are_found():
    assert len(CACHED) >= 6, CACHED  # every chapter computes through the cache


@pytest.mark.parametrize("path", _params(CACHED))
def test_a_cached_runs_import_closure_holds_no_page_code(path):
    closure = module_closure([_module(path)])
    rel = {p.relative_to(PKG).as_posix() for p in closure}
    page = sorted(r for r in rel if r in PAGE or r.endswith("_report.py"))
    drawing = sorted(p.relative_to(PKG).as_posix() for p in closure if _imports_matplotlib(p))
    assert not page and not drawing, (
        f"{path.relative_to(PKG)} computes cached runs, but its import closure (their cache key) holds page code "
        f"{page} and figure code {drawing}: an edit there would re-train its runs; move the page code to the page "
        f"module, which imports the runs, not the other way round")


@pytest.mark.xfail(strict=True, reason="the unsplit chapters' runs still import verdict.py (issue 20 part 5)")
def test_editing_page_code_keeps_the_run_keys(monkeypatch):
    """The key of a run computed in each cached module is unchanged by an edit to the claims rule."""
    from patchnb import track

    before = {p: track._code_version(frozenset([_module(p)])) for p in CACHED}
    verdict = PKG / "experiments" / "verdict.py"
    real = Path.read_bytes

    def edited(self):
        data = real(self)
        return data + b"\n# an edit\n" if self == verdict else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    track._code_version.cache_clear()
    try:
        after = {p: track._code_version(frozenset([_module(p)])) for p in CACHED}
        changed = track._code_version(frozenset(["patchnb.experiments.verdict"]))
    finally:
        track._code_version.cache_clear()
    track._code_version.cache_clear()
    assert changed != track._code_version(frozenset(["patchnb.experiments.verdict"]))  # the edit was seen
    assert after == before


@pytest.mark.slow
def test_rewording_a_page_retrains_nothing(tmp_path):
    """A page whose prose changed is executed again and reuses every cached run (the dictionary page at smoke
    scale: it computes through the cache)."""
    import json

    from patchnb.build import execute
    from patchnb.cache import runs_dir

    root = PKG.parent
    source = root / "notebooks" / "dictionary.ipynb"
    execute(source, tmp_path / "first.ipynb", {"scale": "smoke"}, root)

    def stored():
        return {p.parent.name: p.stat().st_mtime_ns for p in runs_dir().glob("*/cached.pt")}

    before = stored()
    nb = json.loads(source.read_text())
    prose = next(c for c in nb["cells"] if c["cell_type"] == "markdown")
    prose["source"] = ["# A reworded title\n", *prose["source"][1:]]
    edited = tmp_path / "dictionary.ipynb"
    edited.write_text(json.dumps(nb))
    execute(edited, tmp_path / "second.ipynb", {"scale": "smoke"}, root)
    assert "A reworded title" in (tmp_path / "second.ipynb").read_text()
    assert stored() == before  # no run computed again, none added
