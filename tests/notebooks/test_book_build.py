"""The whole book at smoke scale, built by `patchnb book` with warnings as errors (runs last)."""

import pytest

from patchnb.cli import build_book

from ..conftest import ROOT


@pytest.mark.slow
def test_smoke_book_builds_with_warnings_as_errors():
    build_book("smoke", jobs=1, root=ROOT)
    html = ROOT / "_build" / "html"
    assert (html / "book" / "intro.html").is_file()
    intro = (html / "book" / "intro.html").read_text()
    assert "scale=smoke" in intro  # cross-page glue resolved
    for page in ("dictionary", "intrinsic_dimension"):
        text = (html / "book" / "nb" / f"{page}.html").read_text()
        assert "scale=smoke" in text and "Traceback" not in text
        assert "Parameters" not in text  # papermill's injected cell is hidden
