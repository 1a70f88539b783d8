"""A page that fails never loses the build: the other pages are executed and built, the failed page shows
its error and partial notebook, the values other pages take from it read "not computed", a summary names
it and the command exits non-zero; a re-run executes only the failed and changed pages. While a page
runs, a heartbeat and its printed lines reach the terminal, and each "executing" line estimates the time
left (from the last build, or on a cold build from the timings shipped with patchnb)."""
import json

import pytest

from patchnb import build, cli
from patchnb.build import BookError, build_book


def _notebook(*sources: str) -> str:
    cells = [{"cell_type": "markdown", "id": "t", "metadata": {}, "source": "# A page"}]
    cells += [{"cell_type": "code", "execution_count": None, "id": "p", "metadata": {"tags": ["parameters"]},
              "outputs": [], "source": 'scale = "cpu"  # smoke | cpu | paper\ndevice = "cpu"\n'}]
    cells += [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
               "source": s} for i, s in enumerate(sources)]
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                   "language": "python"},
                                                    "language_info": {"name": "python"}},
                       "nbformat": 4, "nbformat_minor": 5})


GOOD = _notebook('import time\nfrom myst_nb import glue\nprint("step 1 of 2", flush=True)\ntime.sleep(1.5)\n'
                 'glue("answer", "forty-two", display=False)\n')
BAD = _notebook('from myst_nb import glue\nglue("early", "computed before", display=False)\n',
                'raise ValueError("boom on purpose")\n', 'glue("late", "never", display=False)\n')
INTRO = ("# Tiny book\n\nGood: {glue:text}`../notebooks/good.ipynb::answer:s`.\n\n"
         "Early: {glue:text}`../notebooks/bad.ipynb::early:s`.\n\nLate: {glue:text}`../notebooks/bad.ipynb::late:s`.\n")
CONFIG = ('title: tiny\nonly_build_toc_files: true\nexecute:\n  execute_notebooks: "off"\n'
          'exclude_patterns: [".*", "executed/*", "**.failed.ipynb", "**.partial.ipynb"]\n')


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A two-page book (``good`` and ``bad``, which raises) in a temporary folder."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "notebooks" / "good.ipynb").write_text(GOOD)
    (tmp_path / "notebooks" / "bad.ipynb").write_text(BAD)
    (tmp_path / "book" / "intro.md").write_text(INTRO)
    (tmp_path / "_config.yml").write_text(CONFIG)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                       "  - file: notebooks/good\n  - file: notebooks/bad\n")
    monkeypatch.setenv("PATCHNB_EXECUTED", str(tmp_path / "executed"))
    monkeypatch.setattr(build, "HEARTBEAT_S", 0.4)
    return tmp_path


@pytest.mark.slow
def test_a_failing_page_is_shown_and_the_rest_is_built(tiny, capfd):
    with pytest.raises(BookError) as e:
        build_book("smoke", root=tiny, site=tiny / "site", output=tiny / "out")
    assert set(e.value.failed) == {"bad"} and "ValueError: boom on purpose" in e.value.failed["bad"]
    assert set(e.value.timings) == {"good"}
    out, err = capfd.readouterr()
    html = tiny / "out" / "_build" / "html"
    good, bad = (html / "notebooks" / f"{n}.html" for n in ("good", "bad"))
    assert "This page was executed with" in good.read_text()
    page = bad.read_text()
    partial = tiny / "executed" / "smoke" / "bad.failed.ipynb"
    assert partial.is_file() and "This page failed to execute" in page and "boom on purpose" in page
    assert str(partial) in page and "Parameters" not in page  # papermill's injected cell is hidden
    intro = (html / "book" / "intro.html").read_text()
    assert "forty-two" in intro and "computed before" in intro and "not computed" in intro and "never" not in intro
    assert "1 of 2 pages FAILED" in out and f"bad: ValueError: boom on purpose; partial notebook {partial}" in out
    # progress: a heartbeat, the page's printed lines, the time left; no warning from the kernel's transport
    assert "[book] good: running, " in out and "[book] good: step 1 of 2" in out
    assert "[book] good: executing at scale=smoke (1/2; no timings to estimate the time left)" in out
    assert "without encryption" not in out + err
    assert not (html / build.PAGES_RECORD).exists()  # the next build is full
    # a re-run executes the failed page only, with the last build's timings as the estimate
    with pytest.raises(BookError):
        build_book("smoke", root=tiny, site=tiny / "site", html=False)
    out = capfd.readouterr().out
    assert "[book] good: current, not re-executed" in out and "[book] bad: executing at scale=smoke" in out
    # fixed, the page is executed once more and the book is whole
    (tiny / "notebooks" / "bad.ipynb").write_text(BAD.replace('raise ValueError(\\"boom on purpose\\")', "pass"))
    assert set(build_book("smoke", root=tiny, site=tiny / "site", output=tiny / "out")) == {"good", "bad"}
    assert not partial.exists()
    assert "failed to execute" not in bad.read_text()
    assert "never" in (html / "book" / "intro.html").read_text()


def test_cli_book_exits_non_zero_and_names_the_failed_page(tiny, capsys, monkeypatch):
    monkeypatch.chdir(tiny)
    (tiny / "notebooks" / "good.ipynb").write_text(_notebook("x = 1\n"))
    assert cli.main(["book", "--scale", "smoke", "--no-html"]) == 1
    captured = capsys.readouterr()
    assert "patchnb book: error: 1 of 2 pages failed: bad" in captured.err
    assert "FAILED" in captured.out and (tiny / "executed" / "smoke" / "good.key").is_file()
    assert not (tiny / "executed" / "smoke" / "bad.key").exists()  # a failed page is never current


def test_cold_build_estimates_from_the_shipped_timings(monkeypatch):
    shipped = json.loads(build.SHIPPED_TIMINGS.read_text())
    monkeypatch.setattr(build, "host_gflops", lambda: shipped["benchmark"]["gflops"] / 2)  # half as fast
    cpu = shipped["scales"]["cpu"]["seconds"]
    names = list(cpu)
    expected, source = build.estimates(names, "cpu", {})
    assert expected == pytest.approx({n: 2 * s for n, s in cpu.items()}) and "x2.00" in source
    assert build.estimates(names, "cpu", {"dictionary": 10.0}) == ({"dictionary": 10.0}, "the last build's timings")
    eta = build._eta(names, names, set(names[:1]), expected, source, jobs=1)
    assert eta.startswith(f" (2/{len(names)}; about {sum(2 * cpu[n] for n in names[1:]) / 60:.0f} min left")


def test_the_shipped_timings_cover_the_book_and_the_benchmark_is_quick():
    from .conftest import ROOT

    shipped = json.loads(build.SHIPPED_TIMINGS.read_text())
    assert set(shipped["scales"]["cpu"]["seconds"]) == set(build.toc_notebooks(ROOT))
    assert shipped["benchmark"]["gflops"] > 0 and shipped["benchmark"]["host"]
    assert build.host_gflops(seconds=0.05) > 0
