"""Executing notebooks and building the book: what ``patchnb run`` and ``patchnb book`` do.

* :func:`check_parameters` compares parameters with a notebook's ``parameters`` cell before anything
  runs: an unknown name (a typo such as ``n_centriods``) or a value of the wrong type is an error.
* :func:`execute` runs one notebook with papermill (``PATCHNB_BATCH=1``), keeping a failed run's partial
  output beside it, and appends a note saying with which parameters the page was executed.
* :func:`build_book` executes every notebook of ``_toc.yml`` that is not current (source, parameters and
  the patchnb code it imports unchanged), then builds the HTML with warnings as errors. The HTML always
  shows what was executed: a page whose executed notebook changed in content is rebuilt, and a build
  that would leave a page of another scale in the output rebuilds every page. The build records each
  page's scale, parameters and content hash in ``_build/html/patchnb-pages.json``.

Executed notebooks are kept under ``.patchnb/executed/<scale>/`` (``$PATCHNB_EXECUTED`` moves it). The
HTML is built from a separate tree, ``.patchnb/site/``: the book's sources (``_config.yml``, ``_toc.yml``,
``book/``) and the executed notebooks under ``notebooks/``, the same paths as the sources in the
repository (so a page's launch and source buttons open its source notebook); the HTML lands in
``_build/html``. The tests build into their own folder and never touch the user's build.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from .checks import check_choice
from .experiments.base import SCALES
from .track import code_version, notebook_modules

SOURCE_DIR = "notebooks"
STATE_DIR = Path(".patchnb") / "executed"
SITE_DIR = Path(".patchnb") / "site"  # the tree the HTML is built from
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")  # what a copy of the tree needs to build the HTML
PAGES_RECORD = "patchnb-pages.json"
GENERATED = "generated"  # book/generated/ of the build tree: the executed pages' downloads, per scale


class ParameterError(ValueError):
    """Parameters that a notebook does not have, or values of the wrong type."""


def repo_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").is_file() and (d / SOURCE_DIR).is_dir():
            return d
    raise SystemExit("patchnb: run this inside the patchnb repository (no _toc.yml with a notebooks/ folder "
                     f"found above {here})")


def state_dir(root: Path) -> Path:
    """Where executed notebooks are kept: ``$PATCHNB_EXECUTED`` or ``<root>/.patchnb/executed``."""
    return Path(os.environ["PATCHNB_EXECUTED"]) if os.environ.get("PATCHNB_EXECUTED") else root / STATE_DIR


def toc_notebooks(root: Path) -> list[str]:
    """Names of the notebooks the book's _toc.yml lists (entries ``notebooks/<name>``)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = []

    def walk(node):
        if isinstance(node, dict):
            f = node.get("file") or node.get("root")
            if isinstance(f, str) and f.startswith(SOURCE_DIR + "/"):
                names.append(f.split("/")[-1].removesuffix(".ipynb"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    for n in names:
        if not (root / SOURCE_DIR / f"{n}.ipynb").is_file():
            raise SystemExit(f"patchnb: _toc.yml lists {SOURCE_DIR}/{n} but {SOURCE_DIR}/{n}.ipynb does not exist")
    return names


def parse_value(text: str):
    """Parameter values are YAML: ``-p seeds '[0, 1]'``, ``-p lr 0.01``, ``-p scale cpu``."""
    return yaml.safe_load(text)


# ----------------------------------------------------------------------------- parameters


def notebook_parameters(source: Path) -> dict[str, dict]:
    """The ``parameters`` cell of a notebook: ``{name: {"default": value, "help": comment}}``."""
    import papermill as pm

    out = {}
    for name, p in pm.inspect_notebook(str(source)).items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            default = None  # an expression: any value is accepted
        out[name] = {"default": default, "help": p.get("help", "")}
    return out


def _choices(help_text: str) -> list[str] | None:
    """``"smoke | cpu | paper"`` (the whole comment) -> the allowed values."""
    words = [w.strip() for w in help_text.split("|")]
    return words if len(words) > 1 and all(w.isidentifier() for w in words) else None


def check_parameters(source: Path, parameters: dict, strict: bool = True) -> dict:
    """Check ``parameters`` against the notebook's ``parameters`` cell and return those it has.

    A name the notebook does not have is a :class:`ParameterError` (``strict``) or dropped (not strict:
    ``patchnb book`` passes book-wide parameters to the notebooks that have them). A value whose type
    differs from a non-``None`` default (an int is accepted for a float), or that is not one of the
    choices a comment lists (``scale = "cpu"  # smoke | cpu | paper``), is an error naming both."""
    declared = notebook_parameters(source)
    unknown = sorted(set(parameters) - set(declared))
    if unknown and strict:
        raise ParameterError(f"{source.name} has no parameter(s) {unknown}; its parameters are {sorted(declared)}")
    kept = {k: v for k, v in parameters.items() if k in declared}
    for name, value in kept.items():
        default = declared[name]["default"]
        if default is not None and value is not None:
            want = float if isinstance(default, float) else type(default)
            ok = isinstance(value, want) and not (isinstance(value, bool) and want is not bool)
            if want is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                raise ParameterError(f"{source.name}: parameter {name}={value!r} is a {type(value).__name__}, "
                                     f"but its default {default!r} is a {type(default).__name__}")
        choices = _choices(declared[name]["help"])
        if choices and isinstance(value, str) and value not in choices:
            raise ParameterError(f"{source.name}: parameter {name}={value!r} is not one of {choices}")
    return kept


# ----------------------------------------------------------------------------- execution


def execute(source: Path, output: Path, parameters: dict, cwd: Path, log_output: bool = False) -> float:
    """Run one notebook with papermill into ``output``; on failure the partial notebook is kept at
    ``output`` with suffix ``.failed.ipynb`` and the error names it. Files a page offers for download
    are written to ``<output folder>/generated/`` (``$PATCHNB_GENERATED``)."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial.ipynb")
    before = {k: os.environ.get(k) for k in ("PATCHNB_BATCH", "PATCHNB_NOTEBOOK", "TQDM_DISABLE",
                                             "PATCHNB_GENERATED")}
    os.environ["PATCHNB_GENERATED"] = str((output.parent / "generated").resolve())  # downloads of the page
    os.environ["PATCHNB_BATCH"] = "1"  # inherited by the kernel: widgets stay inert, glue only records
    os.environ["PATCHNB_NOTEBOOK"] = source.stem  # the wandb group of the notebook's runs
    os.environ["TQDM_DISABLE"] = "1"  # no progress-bar widgets in the page; `patchnb book` prints a line per page
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(source), str(partial), parameters=parameters, cwd=str(cwd), kernel_name="python3",
                            progress_bar=False, log_output=log_output)
    except Exception as e:
        failed = output.with_suffix(".failed.ipynb")
        if partial.exists():
            os.replace(partial, failed)
        raise RuntimeError(f"{source} failed ({type(e).__name__}); the partial output is {failed}:\n{e}") from e
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - t0
    _finish_executed(partial, parameters, seconds)
    os.replace(partial, output)
    return seconds


def _finish_executed(path: Path, parameters: dict, seconds: float) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` (the page states its data in prose) and
    append a note with the parameters the page was executed with."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["remove-cell"]
    shown = ", ".join(f"`{k}={v!r}`" if not isinstance(v, str) else f"`{k}={v}`" for k, v in parameters.items())
    note = (f"*This page was executed with {shown or 'its default parameters'} in {seconds:.0f} s "
            f"(patchnb {code_version().split('+')[0]}).*")
    nb["cells"].append({"cell_type": "markdown", "id": "patchnb-build-note",
                        "metadata": {"tags": ["patchnb-build-note"]}, "source": note})
    nb.setdefault("metadata", {})["patchnb"] = {"parameters": parameters, "seconds": seconds}
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def notebook_key(source: Path, parameters: dict) -> str:
    """Changes when the notebook, its parameters or the patchnb code it imports (transitively) change."""
    text = source.read_text()
    h = hashlib.sha1(text.encode())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    h.update(code_version(notebook_modules(text)).split("+")[0].encode())
    return h.hexdigest()[:16]


def execute_cached(name: str, scale: str, root: Path, force: bool = False, extra: dict | None = None,
                   eta: str = "") -> float:
    """Execute ``notebooks/<name>.ipynb`` at ``scale`` into ``<state>/<scale>/<name>.ipynb`` unless the
    copy there is current (same source, parameters and package code). ``extra`` parameters are passed
    where the notebook has them. Returns the seconds it took (0 when current)."""
    source = root / SOURCE_DIR / f"{name}.ipynb"
    parameters = check_parameters(source, {"scale": scale, **(extra or {})}, strict=False)
    state = state_dir(root) / scale
    state.mkdir(parents=True, exist_ok=True)
    out = state / f"{name}.ipynb"
    key = notebook_key(source, parameters)
    stamp = state / f"{name}.key"
    if not force and out.is_file() and stamp.is_file() and stamp.read_text() == key:
        print(f"[book] {name}: current, not re-executed", flush=True)
        return 0.0
    print(f"[book] {name}: executing at scale={scale}{eta}", flush=True)
    stamp.unlink(missing_ok=True)
    seconds = execute(source, out, parameters, root)
    stamp.write_text(key)
    print(f"[book] {name}: {seconds:.1f} s", flush=True)
    return seconds


# ----------------------------------------------------------------------------- the book


def _eta(names: list[str], done: set[str], last: dict[str, float]) -> str:
    left = [n for n in names if n not in done]
    known = [last[n] for n in left if last.get(n)]
    if not known:
        return ""
    return f" ({len(done) + 1}/{len(names)}; last build's timings: about {sum(known) / 60:.0f} min left)"


def build_book(scale: str, jobs: int = 1, root: Path | None = None, force: bool = False,
               extra: dict | None = None, html: bool = True, site: Path | None = None,
               output: Path | None = None) -> dict[str, float]:
    """Execute the book's notebooks at ``scale`` and build the HTML into ``<output>/_build/html``;
    returns seconds per notebook (0 for notebooks whose cached execution is current).

    ``extra``: parameters for every notebook that has them (a name no notebook has is an error).
    ``site``: the build tree (default ``<root>/.patchnb/site``); ``output``: default ``root``."""
    check_choice("scale", scale, SCALES)
    root = root or repo_root()
    names = toc_notebooks(root)
    extra = dict(extra or {})
    if extra:
        declared = set().union(*(notebook_parameters(root / SOURCE_DIR / f"{n}.ipynb") for n in names))
        unknown = sorted(set(extra) - declared)
        if unknown:
            raise ParameterError(f"no notebook of the book has parameter(s) {unknown}; the notebooks' parameters "
                                 f"are {sorted(declared)}")
    state = state_dir(root) / scale
    state.mkdir(parents=True, exist_ok=True)
    timings_path = state / "timings.json"
    last = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    done: set[str] = set()

    def one(name: str) -> tuple[str, float]:
        seconds = execute_cached(name, scale, root, force, extra, eta=_eta(names, done, last))
        done.add(name)
        return name, seconds

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        timings = dict(pool.map(one, names))
    timings_path.write_text(json.dumps({n: timings[n] or last.get(n, 0.0) for n in names}, indent=1))
    site = Path(site) if site else root / SITE_DIR
    _copy_sources(root, site)
    pages, changed = _place_pages(state, names, site / SOURCE_DIR)
    changed |= _place_generated(state / GENERATED, site / "book" / GENERATED)
    if html:
        _build_html(site, Path(output) if output else root, scale, pages, changed)
    return timings


def _copy_sources(root: Path, site: Path) -> None:
    """The book's own sources (config, toc, book/) copied into ``site``, each file only when its content
    changed (so Sphinx sees unchanged files as unchanged)."""
    for rel in BOOK_SOURCES:
        src = root / rel
        files = [p for p in src.rglob("*") if p.is_file() and GENERATED not in p.relative_to(root).parts[:2]] \
            if src.is_dir() else [src]
        for f in files:
            dst = site / f.relative_to(root)
            if not dst.is_file() or dst.read_bytes() != f.read_bytes():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dst)


def _place_generated(src: Path, dst: Path) -> bool:
    """Mirror the executed pages' downloads (``<state>/<scale>/generated``) into the build tree; returns
    whether anything changed. A scale's build never shows another scale's files."""
    want = {p.relative_to(src): p for p in src.rglob("*") if p.is_file()} if src.is_dir() else {}
    have = {p.relative_to(dst): p for p in dst.rglob("*") if p.is_file()} if dst.is_dir() else {}
    changed = False
    for rel in set(have) - set(want):
        have[rel].unlink()
        changed = True
    for rel, p in want.items():
        target = dst / rel
        if rel not in have or target.read_bytes() != p.read_bytes():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, target)
            changed = True
    return changed


def _sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def _place_pages(state: Path, names: list[str], target: Path) -> tuple[dict[str, dict], bool]:
    """Copy executed notebooks into the book tree; returns each page's record and whether any page
    changed. A page is rewritten only when its content changed, and then with a fresh modification time."""
    target.mkdir(parents=True, exist_ok=True)
    changed = False
    for stale in set(p.stem for p in target.glob("*.ipynb")) - set(names):
        (target / f"{stale}.ipynb").unlink()
        changed = True
    pages = {}
    for name in names:
        src, dst = state / f"{name}.ipynb", target / f"{name}.ipynb"
        if not dst.is_file() or _sha(dst) != _sha(src):
            shutil.copyfile(src, dst)  # new mtime on purpose
            changed = True
        meta = json.loads(src.read_text()).get("metadata", {}).get("patchnb", {})
        pages[name] = {"sha": _sha(dst), "parameters": meta.get("parameters", {})}
    return pages, changed


def _build_html(site: Path, output: Path, scale: str, pages: dict[str, dict], changed: bool) -> None:
    out = output / "_build" / "html"
    record_path = out / PAGES_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    # Rebuild every page when any executed page changed or the output is of an unknown build: Sphinx's
    # incremental build goes by modification times and would keep stale HTML, and the intro's cross-page
    # glue must follow the notebooks it cites.
    full = changed or record is None or record != pages
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "jupyter_book"]
    cmd += ["build", str(site), "--path-output", str(output), "-W", "-n", "--keep-going"] + (["--all"] if full else [])
    print("[book]", " ".join(cmd), flush=True)
    record_path.unlink(missing_ok=True)  # a failed build leaves no record: the next one is full
    subprocess.run(cmd, cwd=site, check=True)
    wrong = [n for n, p in pages.items() if p["parameters"].get("scale") != scale]
    if wrong:
        raise RuntimeError(f"pages {wrong} were executed at another scale than {scale!r}")
    record_path.write_text(json.dumps(pages, indent=1))
    print(f"[book] HTML: {out / 'index.html'}", flush=True)
