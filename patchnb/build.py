"""Executing notebooks and building the book: what ``patchnb run`` and ``patchnb book`` do.

* :func:`check_parameters` compares parameters with a notebook's ``parameters`` cell before anything
  runs: an unknown name (a typo such as ``n_centriods``) or a value of the wrong type is an error.
* :func:`execute` runs one notebook with papermill (``PATCHNB_BATCH=1``), keeping a failed run's partial
  output beside it, and appends a note saying with which parameters the page was executed.
* :func:`check_plain` refuses any parameter value papermill would not write as a plain literal (bytes,
  dates, sets, ``inf``): every path to papermill calls it, so no parameter value is ever run as code.
* :func:`build_book` executes every notebook of ``_toc.yml`` that is not current (source, parameters and
  the patchnb code it imports unchanged), then builds the HTML with warnings as errors. The HTML always
  shows what was executed: a page whose executed notebook changed in content is rebuilt, and a build
  that would leave a page of another scale in the output rebuilds every page. The build records each
  page's scale, parameters and content hash in ``_build/html/patchnb-pages.json``. A page that fails
  does not stop the others: it is shown as its partial notebook under an error box, the glue values
  other pages take from it read "not computed", the HTML is built without warnings as errors, and
  :class:`BookError` names the failed pages at the end. While a page runs, a line says how long it has
  run at least every :data:`HEARTBEAT_S` seconds; each "executing" line estimates the time left from
  the last build's timings or, on a cold build, from ``book_timings.json`` scaled by :func:`host_gflops`.

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
import math
import os
import re
import shutil
import subprocess
import sys
import threading
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
SHIPPED_TIMINGS = Path(__file__).with_name("book_timings.json")  # seconds per page, per scale, and their host
HEARTBEAT_S = 20.0  # a running page says so at least this often


class ParameterError(ValueError):
    """Parameters that a notebook does not have, or values of the wrong type."""


class BookError(RuntimeError):
    """Pages of the book that failed to execute (raised once the others are executed and the HTML is
    built): ``failed`` maps each page to its error, ``timings`` is what :func:`build_book` returns."""

    def __init__(self, message: str, failed: dict[str, str], timings: dict[str, float]):
        super().__init__(message)
        self.failed, self.timings = failed, timings


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


def parse_value(text: str, name: str = "value"):
    """Parameter values are YAML: ``-p seeds '[0, 1]'``, ``-p lr 0.01``, ``-p scale cpu``. A value that is
    not valid YAML or not plain (see :func:`check_plain`) is a :class:`ParameterError` naming ``name``."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        reason = " ".join(str(e).split())
        raise ParameterError(f"-p {name} {text!r} is not valid YAML ({reason}); quote a string, "
                             f"e.g. -p {name} '\"...\"'") from e
    return check_plain({name: value})[name]


PLAIN = "str, int, finite float, bool, null, or lists and str-keyed mappings of these"


def _not_plain(value, where: str) -> str | None:
    """What in ``value`` is not plain, and where it is (``seeds[1] = b'x' is a bytes``), or ``None``."""
    kind = type(value)
    if value is None or kind in (str, int, bool) or (kind is float and math.isfinite(value)):
        return None
    if kind is list:
        return next((bad for i, v in enumerate(value) if (bad := _not_plain(v, f"{where}[{i}]"))), None)
    if kind is dict:
        for k, v in value.items():
            if type(k) is not str:
                return f"{where} has the key {k!r}, a {type(k).__name__} (keys are str)"
            if bad := _not_plain(v, f"{where}[{k!r}]"):
                return bad
        return None
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return f"{where} = {shown} is a {kind.__name__}"


def check_plain(parameters: dict) -> dict:
    """Refuse, with a :class:`ParameterError` naming the parameter, any name that is not an identifier
    and any value that is not plain: str, int, finite float, bool, ``None``, and lists and str-keyed dicts
    of these (exact types). papermill writes such values as Python literals; anything else (YAML's
    ``!!binary`` bytes, dates, sets, ``.inf``) it would paste into the notebook's code as text."""
    if type(parameters) is not dict:
        raise ParameterError(f"parameters must be a mapping of names to values, got a {type(parameters).__name__}")
    for name, value in parameters.items():
        if type(name) is not str or not name.isidentifier():
            raise ParameterError(f"{name!r} is not a parameter name")
        if bad := _not_plain(value, name):
            raise ParameterError(f"parameter {name}: {bad}, not a plain value ({PLAIN}); YAML tags such as "
                                 f"!!binary, dates and .inf are refused")
    return parameters


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
    choices a comment lists (``scale = "cpu"  # smoke | cpu | paper``), is an error naming both, and so
    is a value that is not plain (:func:`check_plain`)."""
    check_plain(parameters)
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


def execute(source: Path, output: Path, parameters: dict, cwd: Path, log_output: bool = False,
            echo: str | None = None) -> float:
    """Run one notebook with papermill into ``output``; on failure the partial notebook is kept at
    ``output`` with suffix ``.failed.ipynb`` and the error names it. Files a page offers for download
    are written to ``<output folder>/generated/`` (``$PATCHNB_GENERATED``). ``log_output``: papermill
    logs the kernel's output; ``echo``: the kernel's stdout is printed here, each line after this prefix.
    Parameter values must be plain (:func:`check_plain`)."""
    import papermill as pm

    check_plain(parameters)
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
                            progress_bar=False, log_output=log_output, config=_kernel_config(),
                            stdout_file=_Prefixed(echo) if echo is not None else None)
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
    output.with_suffix(".failed.ipynb").unlink(missing_ok=True)  # an earlier failure's partial output
    return seconds


class _Prefixed:
    """A file papermill writes the kernel's stdout to: complete lines are printed after ``prefix``."""

    def __init__(self, prefix: str):
        self.prefix, self.rest = prefix, ""

    def write(self, text: str) -> None:
        *lines, self.rest = (self.rest + text).split("\n")
        for line in lines:
            print(f"{self.prefix}{line}", flush=True)

    def flush(self) -> None:
        pass


def _kernel_config():
    """The kernel's transport: CurveZMQ-encrypted TCP where pyzmq and the kernelspec support it, else IPC
    (POSIX): never plain TCP, of which the kernel warns on every start."""
    import zmq
    from jupyter_client.kernelspec import KernelSpecManager
    from traitlets.config import Config

    try:
        supported = KernelSpecManager().get_kernel_spec("python3").metadata.get("supported_encryption") or ()
    except Exception:  # no such kernelspec: papermill reports it
        supported = ()
    if zmq.has("curve") and "curve" in ([supported] if isinstance(supported, str) else supported):
        return Config({"KernelManager": {"transport_encryption": "required"}})
    return Config({"KernelManager": {"transport": "ipc"}}) if os.name == "posix" else Config()


def _finish_executed(path: Path, parameters: dict, seconds: float) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` (the page states its data in prose) and
    append a note with the parameters the page was executed with."""
    nb = _hide_injected(json.loads(path.read_text()))
    shown = ", ".join(f"`{k}={v!r}`" if not isinstance(v, str) else f"`{k}={v}`" for k, v in parameters.items())
    note = (f"*This page was executed with {shown or 'its default parameters'} in {seconds:.0f} s "
            f"(patchnb {code_version().split('+')[0]}).*")
    nb["cells"].append({"cell_type": "markdown", "id": "patchnb-build-note",
                        "metadata": {"tags": ["patchnb-build-note"]}, "source": note})
    nb.setdefault("metadata", {})["patchnb"] = {"parameters": parameters, "seconds": seconds}
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _hide_injected(nb: dict) -> dict:
    """Tag papermill's injected-parameters cell ``remove-cell``."""
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["remove-cell"]
    return nb


def notebook_key(source: Path, parameters: dict) -> str:
    """Changes when the notebook, its parameters or the patchnb code it imports (transitively) change."""
    text = source.read_text()
    h = hashlib.sha1(text.encode())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    h.update(code_version(notebook_modules(text)).split("+")[0].encode())
    return h.hexdigest()[:16]


def _page(name: str, scale: str, root: Path, extra: dict | None) -> tuple[Path, dict, Path, Path, str]:
    """One page of the book: its source, parameters, executed copy, stamp and current key."""
    extra = dict(extra or {})
    if extra.get("scale", scale) != scale:
        raise ParameterError(f"parameter scale={extra['scale']!r} contradicts the build's scale {scale!r} "
                             f"(--scale {scale}); set the scale once, with --scale")
    source = root / SOURCE_DIR / f"{name}.ipynb"
    parameters = check_parameters(source, {**extra, "scale": scale}, strict=False)
    state = state_dir(root) / scale
    return source, parameters, state / f"{name}.ipynb", state / f"{name}.key", notebook_key(source, parameters)


def is_current(name: str, scale: str, root: Path, extra: dict | None = None) -> bool:
    """Whether the executed copy of ``notebooks/<name>.ipynb`` at ``scale`` is current (a failed page never is)."""
    return _stamped(*_page(name, scale, root, extra)[2:])


def _stamped(out: Path, stamp: Path, key: str) -> bool:
    """An executed copy whose stamp holds the page's current key (a failed page has no stamp)."""
    return out.is_file() and stamp.is_file() and stamp.read_text() == key


def execute_cached(name: str, scale: str, root: Path, force: bool = False, extra: dict | None = None,
                   eta: str = "", expected: float | None = None) -> float:
    """Execute ``notebooks/<name>.ipynb`` at ``scale`` into ``<state>/<scale>/<name>.ipynb`` unless the
    copy there is current (same source, parameters and package code). ``extra`` parameters are passed
    where the notebook has them. While it runs, a line says so every :data:`HEARTBEAT_S` seconds (with
    ``expected``, the seconds it is expected to take) and the lines it prints are forwarded. Returns the
    seconds it took (0 when current)."""
    source, parameters, out, stamp, key = _page(name, scale, root, extra)
    if not force and _stamped(out, stamp, key):
        print(f"[book] {name}: current, not re-executed", flush=True)
        return 0.0
    print(f"[book] {name}: executing at scale={scale}{eta}", flush=True)
    stamp.unlink(missing_ok=True)
    of = f" of about {_duration(expected)}" if expected else ""
    with _Heartbeat(lambda s: print(f"[book] {name}: running, {s:.0f} s{of}", flush=True)):
        seconds = execute(source, out, parameters, root, echo=f"[book] {name}: ")
    stamp.write_text(key)
    print(f"[book] {name}: {seconds:.1f} s", flush=True)
    return seconds


class _Heartbeat:
    """Calls ``say(seconds so far)`` every :data:`HEARTBEAT_S` seconds while the ``with`` block runs."""

    def __init__(self, say):
        self.say, self.stop = say, threading.Event()

    def __enter__(self):
        t0 = time.perf_counter()

        def beat():
            while not self.stop.wait(HEARTBEAT_S):
                self.say(time.perf_counter() - t0)

        self.thread = threading.Thread(target=beat, daemon=True)
        self.thread.start()

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def error_line(e: BaseException) -> str:
    """One line: the notebook's exception (``ValueError: ...``) rather than papermill's whole report."""
    cause = e.__cause__ or e
    if hasattr(cause, "ename"):  # papermill.PapermillExecutionError
        return f"{cause.ename}: {str(cause.evalue).strip().splitlines()[0] if cause.evalue else ''}".strip()
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".strip()


# ----------------------------------------------------------------------------- time left


def host_gflops(seconds: float = 1.0, n: int = 512) -> float:
    """This host's speed: float32 ``n x n`` matrix products with torch on one thread (a second thread's
    timing depends on what else the machine runs), in GFLOP/s, the best of repeated timings over about
    ``seconds``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        best, end = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            for _ in range(8):
                a @ b
            best = max(best, 8 * 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    finally:
        torch.set_num_threads(threads)
    return best


def estimates(names: list[str], scale: str, last: dict[str, float]) -> tuple[dict[str, float], str]:
    """Expected seconds per page and where they come from: the last build's timings, else (a cold build)
    the timings shipped in :data:`SHIPPED_TIMINGS` for ``scale``, scaled by :func:`host_gflops` against
    the benchmark recorded with them; ``({}, "")`` when neither has any."""
    if any(last.get(n) for n in names):
        return {n: last[n] for n in names if last.get(n)}, "the last build's timings"
    shipped = json.loads(SHIPPED_TIMINGS.read_text()) if SHIPPED_TIMINGS.is_file() else {"scales": {}}
    measured = shipped["scales"].get(scale)
    if not measured or not set(names) & set(measured["seconds"]):
        return {}, ""
    factor = shipped["benchmark"]["gflops"] / host_gflops()
    return ({n: s * factor for n, s in measured["seconds"].items() if n in names},
            f"timings measured on {measured['host']}, x{factor:.2f} for this host's speed")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _eta(names: list[str], todo: list[str], done: set[str], expected: dict[str, float], source: str,
         jobs: int) -> str:
    where = f"{len(done) + 1}/{len(names)}"
    known = [expected[n] for n in todo if n not in done and n in expected]
    if not known:
        return f" ({where}; no timings to estimate the time left)"
    return f" ({where}; about {_duration(sum(known) / max(1, jobs))} left, from {source})"


# ----------------------------------------------------------------------------- the book


def build_book(scale: str, jobs: int = 1, root: Path | None = None, force: bool = False,
               extra: dict | None = None, html: bool = True, site: Path | None = None,
               output: Path | None = None) -> dict[str, float]:
    """Execute the book's notebooks at ``scale`` and build the HTML into ``<output>/_build/html``;
    returns seconds per notebook (0 for notebooks whose cached execution is current).

    ``extra``: parameters for every notebook that has them (a name no notebook has, a value of the wrong
    type for a notebook, a value that is not plain or a ``scale`` other than ``scale`` is an error before
    anything runs). ``site``: the build tree (default ``<root>/.patchnb/site``); ``output``: default
    ``root``. Pages that fail do not stop the others; the HTML shows them with their error, then
    :class:`BookError` names them (a re-run executes only the failed and changed pages)."""
    check_choice("scale", scale, SCALES)
    root = root or repo_root()
    names = toc_notebooks(root)
    extra = check_plain(dict(extra or {}))
    if extra:
        declared = set().union(*(notebook_parameters(root / SOURCE_DIR / f"{n}.ipynb") for n in names))
        unknown = sorted(set(extra) - declared)
        if unknown:
            raise ParameterError(f"no notebook of the book has parameter(s) {unknown}; the notebooks' parameters "
                                 f"are {sorted(declared)}")
    todo = [n for n in names if not is_current(n, scale, root, extra) or force]  # checks every page's parameters
    state = state_dir(root) / scale
    state.mkdir(parents=True, exist_ok=True)
    timings_path = state / "timings.json"
    last = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    expected, source = estimates(todo, scale, last) if todo else ({}, "")
    done: set[str] = set()
    failed: dict[str, str] = {}

    def one(name: str) -> tuple[str, float | None]:
        eta = _eta(names, todo, done, expected, source, jobs)
        try:
            seconds = execute_cached(name, scale, root, force, extra, eta=eta, expected=expected.get(name))
        except Exception as e:  # the other pages go on; this page shows the error
            failed[name] = error_line(e)
            print(f"[book] {name}: FAILED: {failed[name]}", flush=True)
            seconds = None
        done.add(name)
        return name, seconds

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        ran = dict(pool.map(one, names))
    timings = {n: s for n, s in ran.items() if s is not None}
    timings_path.write_text(json.dumps({n: ran[n] or last.get(n, 0.0) for n in names}, indent=1))
    site = Path(site) if site else root / SITE_DIR
    try:
        _copy_sources(root, site)
        pages, changed = _place_pages(state, names, site / SOURCE_DIR, site,
                                      {n: (e, _page(n, scale, root, extra)[1]) for n, e in failed.items()})
        changed |= _place_generated(state / GENERATED, site / "book" / GENERATED)
        if html:
            _build_html(site, Path(output) if output else root, scale, pages, changed, strict=not failed)
    finally:
        if failed:
            print(f"[book] {len(failed)} of {len(names)} pages FAILED (each page shows its error; "
                  f"`patchnb book --scale {scale}` again executes only the failed and changed pages):", flush=True)
            for n, e in failed.items():
                print(f"[book]   {n}: {e}; partial notebook {state / f'{n}.failed.ipynb'}", flush=True)
    if failed:
        raise BookError(f"{len(failed)} of {len(names)} pages failed: {', '.join(failed)} (summary above)",
                        failed, timings)
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


def _place_pages(state: Path, names: list[str], target: Path, site: Path,
                 failed: dict[str, tuple[str, dict]]) -> tuple[dict[str, dict], bool]:
    """Copy executed notebooks into the book tree (``failed``: page -> (error, parameters), placed as
    :func:`_failed_page`); returns each page's record and whether any page changed. A page is rewritten
    only when its content changed, and then with a fresh modification time."""
    target.mkdir(parents=True, exist_ok=True)
    changed = False
    for stale in set(p.stem for p in target.glob("*.ipynb")) - set(names):
        (target / f"{stale}.ipynb").unlink()
        changed = True
    cited = _cited_glue(site)
    pages = {}
    for name in names:
        dst = target / f"{name}.ipynb"
        if name in failed:
            error, parameters = failed[name]
            text = json.dumps(_failed_page(state, name, error, parameters, cited.get(name, set())), indent=1)
            if not dst.is_file() or dst.read_text() != text:
                dst.write_text(text)
                changed = True
            pages[name] = {"sha": _sha(dst), "parameters": parameters, "failed": error}
            continue
        src = state / f"{name}.ipynb"
        if not dst.is_file() or _sha(dst) != _sha(src):
            shutil.copyfile(src, dst)  # new mtime on purpose
            changed = True
        meta = json.loads(src.read_text()).get("metadata", {}).get("patchnb", {})
        pages[name] = {"sha": _sha(dst), "parameters": meta.get("parameters", {})}
    return pages, changed


GLUE_PREFIX = "application/papermill.record/"  # myst-nb's mime prefix of a glued value that is not displayed


def _cited_glue(site: Path) -> dict[str, set[str]]:
    """The glue keys the book's Markdown pages take from each notebook (``<name>.ipynb::<key>``)."""
    cited: dict[str, set[str]] = {}
    for md in (site / "book").rglob("*.md"):
        for name, key in re.findall(r"([\w-]+)\.ipynb::([\w-]+)", md.read_text()):
            cited.setdefault(name, set()).add(key)
    return cited


def _failed_page(state: Path, name: str, error: str, parameters: dict, cited: set[str]) -> dict:
    """The page of a notebook that failed: its partial notebook (``<name>.failed.ipynb``) under an error
    box naming the error and that file, with the glue keys it did not reach set to "not computed"."""
    partial = state / f"{name}.failed.ipynb"
    nb = _hide_injected(json.loads(partial.read_text())) if partial.is_file() else {
        "cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    glued = {o.get("metadata", {}).get("scrapbook", {}).get("name") for c in nb["cells"] for o in c.get("outputs", [])}
    where = f"The partial notebook is `{partial}`; the cells below are what ran." if partial.is_file() else \
        "It failed before papermill wrote a partial notebook."
    box = {"cell_type": "markdown", "id": "patchnb-failed", "metadata": {"tags": ["patchnb-failed"]},
           "source": f"````{{error}}\nThis page failed to execute at scale={parameters.get('scale')}:\n\n"
                     f"```text\n{error.replace('`', chr(39))}\n```\n\n{where} The values other pages take "
                     f"from it read *not computed*.\n````"}
    missing = {"cell_type": "code", "execution_count": None, "id": "patchnb-not-computed",
               "metadata": {"tags": ["remove-cell"]}, "source": "# the values this page did not compute",
               "outputs": [{"output_type": "display_data", "data": {GLUE_PREFIX + "text/plain": "'not computed'"},
                            "metadata": {"scrapbook": {"name": k, "mime_prefix": GLUE_PREFIX}}}
                           for k in sorted(cited - glued)]}
    nb["cells"] = [box, *nb["cells"], missing]
    nb.setdefault("metadata", {})["patchnb"] = {"parameters": parameters, "failed": error}
    return nb


def _build_html(site: Path, output: Path, scale: str, pages: dict[str, dict], changed: bool,
                strict: bool = True) -> None:
    """jupyter-book on ``site`` into ``<output>/_build/html``, with warnings as errors when ``strict`` (a
    build with failed pages is not strict, and leaves no record, so that the next build is full)."""
    out = output / "_build" / "html"
    record_path = out / PAGES_RECORD
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    # Rebuild every page when any executed page changed or the output is of an unknown build: Sphinx's
    # incremental build goes by modification times and would keep stale HTML, and the intro's cross-page
    # glue must follow the notebooks it cites.
    full = changed or record is None or record != pages
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "jupyter_book"]
    cmd += ["build", str(site), "--path-output", str(output), *(["-W"] if strict else []), "-n", "--keep-going"]
    cmd += ["--all"] if full else []
    print("[book]", " ".join(cmd), flush=True)
    record_path.unlink(missing_ok=True)  # a failed build leaves no record: the next one is full
    subprocess.run(cmd, cwd=site, check=True)
    wrong = [n for n, p in pages.items() if p["parameters"].get("scale") != scale]
    if wrong:
        raise RuntimeError(f"pages {wrong} were executed at another scale than {scale!r}")
    if strict:
        record_path.write_text(json.dumps(pages, indent=1))
    print(f"[book] HTML: {out / 'index.html'}", flush=True)
