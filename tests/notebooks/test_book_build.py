"""The whole book at smoke scale, built by `patchnb book` with warnings as errors (runs last), into a copy
tree of their own: the tests never touch the user's _build/ or .patchnb/."""

import json
import shutil

import pytest

from patchnb import build
from patchnb.build import build_book, state_dir, toc_notebooks

from ..conftest import ROOT, TEST_BUILD

SITE = TEST_BUILD / "site"


def _pages(site):
    html = site / "_build" / "html"
    return {name: (html / "notebooks" / f"{name}.html").read_text() for name in toc_notebooks(ROOT)}


@pytest.mark.slow
def test_smoke_book_builds_with_warnings_as_errors():
    user = {p: p.stat().st_mtime_ns for d in ("_build", ".patchnb") for p in (ROOT / d).rglob("*")}
    build_book("smoke", jobs=1, root=ROOT, site=SITE, output=SITE)
    html = SITE / "_build" / "html"
    intro = (html / "book" / "intro.html").read_text()
    assert "scale=smoke" in intro  # cross-page glue resolved
    for name, text in _pages(SITE).items():
        assert "Traceback" not in text, name
        assert "This page was executed with" in text and "scale=smoke" in text, name
        assert "Parameters" not in text  # papermill's injected cell is hidden
    record = json.loads((html / build.PAGES_RECORD).read_text())
    assert {p["parameters"]["scale"] for p in record.values()} == {"smoke"}
    # the user's build was not touched
    assert user == {p: p.stat().st_mtime_ns for d in ("_build", ".patchnb") for p in (ROOT / d).rglob("*")}


@pytest.mark.slow
def test_a_build_of_another_scale_replaces_every_page(monkeypatch, tmp_path):
    """Build smoke, then "cpu" from a cache (the smoke notebooks relabelled, so this is quick): every page
    of the output must then say cpu, none smoke — Sphinx's incremental build must not keep old pages."""
    site = tmp_path / "site"
    smoke = state_dir(ROOT) / "smoke"
    build_book("smoke", root=ROOT, site=site, output=site)  # executed notebooks are current from the test above

    def fake_execute(name, scale, root, force=False, extra=None, **_):
        text = (smoke / f"{name}.ipynb").read_text().replace("scale=smoke", f"scale={scale}")
        text = text.replace('"scale": "smoke"', f'"scale": "{scale}"')
        out = state_dir(root) / scale
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.ipynb").write_text(text)
        if (smoke / "generated").is_dir():  # the pages' downloads go with them
            shutil.copytree(smoke / "generated", out / "generated", dirs_exist_ok=True)
        return 0.0

    monkeypatch.setattr(build, "execute_cached", fake_execute)
    monkeypatch.setenv("PATCHNB_EXECUTED", str(tmp_path / "executed"))
    build_book("cpu", root=ROOT, site=site, output=site)
    for name, text in _pages(site).items():
        assert "scale=cpu" in text and "scale=smoke" not in text, name
    intro = (site / "_build" / "html" / "book" / "intro.html").read_text()
    assert "scale=cpu" in intro and "scale=smoke" not in intro
    shutil.rmtree(site)


def test_book_parameters_are_checked_before_anything_runs():
    with pytest.raises(build.ParameterError, match=r"no notebook of the book has parameter\(s\) \['n_centriods'\]"):
        build_book("smoke", root=ROOT, site=TEST_BUILD / "never", output=TEST_BUILD / "never",
                   extra={"n_centriods": 8})
    assert not (TEST_BUILD / "never").exists()
