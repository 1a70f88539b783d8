"""The book and a notebook as readers see them, in a real browser: Debian's Chromium driven by Playwright
(the system browser; Playwright downloads nothing).

* Every page of the smoke-scale build loads without console errors, shows no raw ``{glue`` role, every
  image has loaded, every internal link resolves, the search page finds a word of the intro, and hidden
  code expands on click. Requests to other hosts (this machine is offline; MathJax's CDN, for example)
  are answered empty and listed, so a page must not depend on them to render.
* JupyterLab, started headless on a free port, opens the dictionary notebook at smoke scale, runs all
  cells, and shows a figure and the explorer widget.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from patchnb.build import build_book, toc_notebooks

from ..conftest import ROOT, TEST_BUILD

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]
# Errors of the book's third-party theme code, not of this book's pages, allowed by name with the reason:
# sphinx-thebe (installed by jupyter-book 1.x) emits its config <script> twice, so the second `const THEBE_JS_URL`
# throws; it only matters for the live-code (thebe) button, which this book does not enable.
KNOWN_THEME_ERRORS = ("Identifier 'THEBE_JS_URL' has already been declared",)
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
SITE = TEST_BUILD / "site"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def html():
    """The smoke book (current from test_book_build, else built now), or the built HTML folder named by
    ``PATCHNB_BROWSE_HTML`` (e.g. the cpu book of ``make book``: ``PATCHNB_BROWSE_HTML=_build/html pytest
    tests/notebooks/test_browser.py``)."""
    given = os.environ.get("PATCHNB_BROWSE_HTML")
    if given:
        path = Path(given).resolve()
        if not (path / "book" / "intro.html").is_file():
            pytest.fail(f"PATCHNB_BROWSE_HTML={given}: no built book there (book/intro.html is missing)")
        return path
    build_book("smoke", root=ROOT, site=SITE, output=SITE)
    return SITE / "_build" / "html"


@pytest.fixture(scope="module")
def server(html):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(html))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def open_page(browser, url: str, external: list):
    """A page with console errors and failed local requests recorded; other hosts answered empty."""
    page = browser.new_page()
    page.errors = []
    local = urllib.parse.urlsplit(url).netloc

    def route(r):
        if urllib.parse.urlsplit(r.request.url).netloc in (local, ""):
            r.continue_()
        else:
            external.append(r.request.url)
            r.fulfill(status=200, body="")

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and page.errors.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: page.errors.append(f"request failed: {r.url}"))
    page.goto(url, wait_until="networkidle")
    # a resource of another host cannot load on this offline machine: not the page's error (it was listed)
    hosts = {urllib.parse.urlsplit(u).netloc for u in external}
    page.errors = [e for e in page.errors if not any(h and h in e for h in hosts)
                   and not any(k in e for k in KNOWN_THEME_ERRORS)]
    return page


def pages(html: Path) -> list[str]:
    return ["book/intro.html"] + [f"notebooks/{n}.html" for n in toc_notebooks(ROOT)]


def test_every_page_reads_cleanly(html, server, browser):
    external: list[str] = []
    problems = []
    for rel in pages(html):
        page = open_page(browser, f"{server}/{rel}", external)
        problems += [f"{rel}: {e}" for e in page.errors]
        text = page.inner_text("main") if page.query_selector("main") else page.inner_text("body")
        if "{glue" in text:
            problems.append(f"{rel}: raw glue role visible: ...{text[text.index('{glue'):][:60]}...")
        broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
                               ".map(i => i.src)")
        problems += [f"{rel}: image not loaded: {src}" for src in broken]
        links = page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)")
        for link in set(links):
            parts = urllib.parse.urlsplit(link)
            if parts.netloc != urllib.parse.urlsplit(server).netloc or parts.scheme not in ("http", "https"):
                continue
            target = html / urllib.parse.unquote(parts.path.lstrip("/"))
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{rel}: broken internal link {link}")
        page.close()
    assert not problems, "\n".join(problems)


def test_search_finds_a_word_of_the_intro(html, server, browser):
    page = open_page(browser, f"{server}/search.html?q=reproduces", [])
    page.wait_for_selector("#search-results ul.search li", timeout=20_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a", "els => els.map(e => e.href)")
    assert any("intro.html" in h for h in hits), hits


def test_hidden_code_expands_on_click(html, server, browser):
    page = open_page(browser, f"{server}/notebooks/dictionary.html", [])
    hidden = page.locator("details.hide.above-input")
    assert hidden.count() > 0, "no collapsed code cell (hide-input) on the page"
    code = hidden.first.locator(".cell_input")
    assert not code.is_visible()
    hidden.first.locator("summary").click()
    code.wait_for(state="visible", timeout=5_000)
    assert "patchnb" in code.inner_text()


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on a copy of notebooks/dictionary.ipynb set to scale=smoke, on a free port."""
    nb = json.loads((ROOT / "notebooks" / "dictionary.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    params["source"] = ["scale = \"smoke\"\n"] + [line for line in "".join(params["source"]).splitlines(True)
                                                 if not line.startswith("scale =")]
    (tmp_path / "dictionary.ipynb").write_text(json.dumps(nb))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PATCHNB_BATCH"}  # interactive: widgets live
    jupyter = Path(sys.executable).with_name("jupyter")
    proc = subprocess.Popen([str(jupyter), "lab", "--no-browser", "--allow-root", f"--port={port}",
                             "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
                             f"--notebook-dir={tmp_path}", "--ServerApp.ip=127.0.0.1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_jupyterlab_runs_the_dictionary_notebook(lab, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab}/lab/tree/dictionary.ipynb", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    # JupyterLab may ask which kernel to start (it does when the kernelspec's name has several matches):
    # take the one it preselects, the venv's "Python 3 (patchnb)"
    try:
        page.wait_for_selector(".jp-Dialog >> text=Select Kernel", timeout=15_000)
        page.click(".jp-Dialog .jp-mod-accept")
    except playwright.TimeoutError:
        pass
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
    # the menu bar's Run menu, then its item (exact labels: a loose "text=Run" can match notebook text)
    page.click(".lm-MenuBar-itemLabel:text-is('Run')", timeout=30_000)
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')", timeout=30_000)
    page.wait_for_selector(".jp-OutputArea-output img", timeout=300_000)  # a figure
    page.wait_for_selector(".jp-OutputArea-output .widget-slider, .jp-OutputArea-output .jupyter-widgets",
                           timeout=300_000)  # the explorer widget
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] >> text=Error")
    assert errors.count() == 0
