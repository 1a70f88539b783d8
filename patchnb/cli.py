"""``patchnb`` command line: ``data``, ``run``, ``book``, ``bench``.

* ``patchnb data fashion_mnist`` fetches a dataset (torchvision download) unless it is present.
* ``patchnb run notebooks/x.ipynb -p scale cpu [-f params.yaml] [-o out.ipynb]`` executes one
  notebook with papermill.
* ``patchnb book --scale smoke|cpu|paper [--jobs N]`` executes every notebook of ``_toc.yml``
  (skipping those whose source, parameters and package code are unchanged) and builds the HTML
  book with warnings as errors.
* ``patchnb bench NAME`` runs ``benchmarks/NAME.py``.
* ``patchnb train ...`` trains one patch-based network or baseline (the original ``main.py``'s options;
  see :mod:`patchnb.cli_train`).
* ``patchnb sweep-checkpoints RUN_DIR ...`` trains a linear head on every checkpoint of a run, picks the
  best on validation and tests it once (see :mod:`patchnb.eval.sweep`); it resumes where it stopped.
"""

from __future__ import annotations

import argparse
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

from .book import SCALES
from .data import check_choice
from .track import code_version, notebook_modules

SOURCE_DIR = "notebooks"
EXECUTED_DIR = Path("book") / "nb"  # where _toc.yml points; build products, not committed
STATE_DIR = Path(".patchnb") / "executed"


def repo_root(start: Path | None = None) -> Path:
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").is_file() and (d / SOURCE_DIR).is_dir():
            return d
    raise SystemExit("patchnb: run this inside the patchnb repository (no _toc.yml with a notebooks/ folder "
                     f"found above {here})")


def toc_notebooks(root: Path) -> list[str]:
    """Names of the notebooks the book's _toc.yml lists (entries ``book/nb/<name>``)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    names = []

    def walk(node):
        if isinstance(node, dict):
            f = node.get("file") or node.get("root")
            if isinstance(f, str) and f.startswith(EXECUTED_DIR.as_posix() + "/"):
                names.append(f.split("/")[-1].removesuffix(".ipynb"))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(toc)
    for n in names:
        if not (root / SOURCE_DIR / f"{n}.ipynb").is_file():
            raise SystemExit(f"patchnb: _toc.yml lists {EXECUTED_DIR}/{n} but {SOURCE_DIR}/{n}.ipynb does not exist")
    return names


def parse_value(text: str):
    """Parameter values are YAML: ``-p seeds '[0, 1]'``, ``-p lr 0.01``, ``-p scale cpu``."""
    return yaml.safe_load(text)


def execute(source: Path, output: Path, parameters: dict, cwd: Path, log_output: bool = False) -> float:
    """Run one notebook with papermill into ``output``; on failure the partial notebook is kept at
    ``output`` with suffix ``.failed.ipynb`` and the error names it."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial.ipynb")
    os.environ["PATCHNB_BATCH"] = "1"  # inherited by the kernel: widgets stay inert
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(source), str(partial), parameters=parameters, cwd=str(cwd), kernel_name="python3",
                            progress_bar=False, log_output=log_output)
    except Exception as e:
        failed = output.with_suffix(".failed.ipynb")
        if partial.exists():
            os.replace(partial, failed)
        raise RuntimeError(f"{source} failed ({type(e).__name__}); the partial output is {failed}:\n{e}") from e
    _hide_injected_parameters(partial)
    os.replace(partial, output)
    return time.perf_counter() - t0


def _hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` so the page reads as an essay
    (the page states its scale and dataset in prose)."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = tags + ["remove-cell"]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def notebook_key(source: Path, parameters: dict) -> str:
    """Changes when the notebook, its parameters or the patchnb code it imports (transitively) change."""
    text = source.read_text()
    h = hashlib.sha1(text.encode())
    h.update(json.dumps(parameters, sort_keys=True).encode())
    h.update(code_version(notebook_modules(text)).split("+")[0].encode())
    return h.hexdigest()[:16]


def execute_cached(name: str, scale: str, root: Path, force: bool = False, extra: dict | None = None) -> float:
    """Execute ``notebooks/<name>.ipynb`` at ``scale`` into ``.patchnb/executed/<scale>/<name>.ipynb``
    unless the copy there is current (same source, parameters and package code). Returns the
    seconds it took (0 when current)."""
    parameters = {"scale": scale, **(extra or {})}
    state = root / STATE_DIR / scale
    state.mkdir(parents=True, exist_ok=True)
    source = root / SOURCE_DIR / f"{name}.ipynb"
    out = state / f"{name}.ipynb"
    key = notebook_key(source, parameters)
    stamp = state / f"{name}.key"
    if not force and out.is_file() and stamp.is_file() and stamp.read_text() == key:
        print(f"[book] {name}: current, not re-executed", flush=True)
        return 0.0
    print(f"[book] {name}: executing at scale={scale}", flush=True)
    stamp.unlink(missing_ok=True)
    seconds = execute(source, out, parameters, root)
    stamp.write_text(key)
    print(f"[book] {name}: {seconds:.1f} s", flush=True)
    return seconds


def build_book(scale: str, jobs: int = 1, root: Path | None = None, force: bool = False,
               extra: dict | None = None, html: bool = True) -> dict[str, float]:
    """Execute the book's notebooks at ``scale`` and build the HTML; returns seconds per notebook
    (0 for notebooks whose cached execution is current)."""
    check_choice("scale", scale, SCALES)
    root = root or repo_root()
    names = toc_notebooks(root)
    state = root / STATE_DIR / scale

    def one(name: str) -> tuple[str, float]:
        return name, execute_cached(name, scale, root, force, extra)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        timings = dict(pool.map(one, names))
    (state / "timings.json").write_text(json.dumps(timings, indent=1))
    target = root / EXECUTED_DIR
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in names:
        shutil.copy2(state / f"{name}.ipynb", target / f"{name}.ipynb")
    if html:
        cmd = [sys.executable, "-m", "jupyter_book", "build", str(root), "-W", "-n", "--keep-going"]
        exe = Path(sys.executable).with_name("jupyter-book")
        if exe.exists():
            cmd = [str(exe), "build", str(root), "-W", "-n", "--keep-going"]
        print("[book]", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=root, check=True)
        print(f"[book] HTML: {root / '_build' / 'html' / 'index.html'}")
    return timings


def _delegated(name: str):
    """Commands whose options live with their implementation."""
    if name == "train":
        from .cli_train import main as train_main

        return train_main
    from .eval.sweep import main as sweep_main

    return sweep_main


DELEGATED = ("train", "sweep-checkpoints")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        return _delegated(argv[0])(argv[1:])
    p = argparse.ArgumentParser(prog="patchnb", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data", help="fetch a dataset with torchvision unless it is already present")
    d.add_argument("name", choices=["fashion_mnist", "cifar10", "cifar100"])
    d.add_argument("--root", default=None, help="target folder (default: the patchnb cache)")
    r = sub.add_parser("run", help="execute one notebook with papermill")
    r.add_argument("notebook")
    r.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    r.add_argument("-f", "--parameters-file", default=None, help="YAML file of parameters")
    r.add_argument("-o", "--output", default=None, help="output notebook (default: runs/<name>.ipynb)")
    b = sub.add_parser("book", help="execute the notebooks and build the HTML book")
    b.add_argument("--scale", default="cpu", choices=SCALES)
    b.add_argument("--jobs", type=int, default=1, help="notebooks executed in parallel")
    b.add_argument("--force", action="store_true", help="re-execute even current notebooks")
    b.add_argument("--no-html", action="store_true", help="execute only")
    sub.add_parser("train", help="train a patch-based network or baseline (`patchnb train --help`)")
    sub.add_parser("sweep-checkpoints", help="linear head on every checkpoint (see its --help)")
    be = sub.add_parser("bench", help="run benchmarks/NAME.py")
    be.add_argument("name")
    be.add_argument("args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)

    if args.cmd == "data":
        from .data import download

        print(download(args.name, args.root))
    elif args.cmd == "run":
        source = Path(args.notebook)
        if not source.is_file():
            raise SystemExit(f"patchnb: no notebook at {source}")
        params = yaml.safe_load(Path(args.parameters_file).read_text()) if args.parameters_file else {}
        params.update({k: parse_value(v) for k, v in args.parameter})
        out = Path(args.output) if args.output else Path("runs") / source.name
        seconds = execute(source, out, params, Path.cwd(), log_output=True)
        print(f"{out} ({seconds:.1f} s)")
    elif args.cmd == "book":
        timings = build_book(args.scale, args.jobs, force=args.force, html=not args.no_html)
        for name, s in timings.items():
            print(f"{name:40s} {s:8.1f} s")
    elif args.cmd == "bench":
        script = repo_root() / "benchmarks" / f"{args.name}.py"
        if not script.is_file():
            raise SystemExit(f"patchnb: no benchmark {script}")
        return subprocess.call([sys.executable, str(script), *args.args])
    return 0


if __name__ == "__main__":
    sys.exit(main())
