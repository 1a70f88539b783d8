"""``patchnb`` command line: ``data``, ``run``, ``book``, ``bench``.

* ``patchnb data fashion_mnist`` fetches a dataset (torchvision download) unless it is present.
* ``patchnb run notebooks/x.ipynb -p scale cpu [-f params.yaml] [-o out.ipynb]`` executes one
  notebook with papermill, after checking the parameters against its ``parameters`` cell.
* ``patchnb book --scale smoke|cpu|paper [-p NAME VALUE ...] [--device auto|cpu|cuda] [--jobs N]``
  executes every notebook of ``_toc.yml`` (skipping those whose source, parameters and package code
  are unchanged) and builds the HTML book with warnings as errors (see :mod:`patchnb.build`). A page
  that fails is shown with its error, the others are built, and the command exits with status 1.
* ``patchnb bench NAME`` runs ``benchmarks/NAME.py``.
* ``patchnb runs [--clean] [--older-than 7d] [--name PATTERN]`` lists the cached runs or removes them
  (see :mod:`patchnb.cache`).
* ``patchnb train ...`` trains one patch-based network or baseline (the original ``main.py``'s options;
  see :mod:`patchnb.cli_train`).
* ``patchnb sweep-checkpoints RUN_DIR ...`` trains a linear head on every checkpoint of a run, picks the
  best on validation and tests it once (see :mod:`patchnb.eval.sweep`); it resumes where it stopped.
* ``patchnb emp-ssl train|resume``, ``patchnb supcon``, ``patchnb ssl METHOD`` and ``patchnb vision``: the
  entry points of EMP-SSL, SupCon, the SSL zoo and convolution-vs-attention (see :mod:`patchnb.cli_emp`,
  :mod:`patchnb.cli_ssl`, :mod:`patchnb.cli_vision`).
* ``patchnb sweep NOTEBOOK --grid grid.yaml [--executor local|slurm] ...`` runs a notebook over a grid of
  parameters, as local processes or Slurm jobs, into one results table (see :mod:`patchnb.sweep`).

Parameter values (``-p``, ``-f``) are YAML and must be plain: str, number, bool, null, lists and
mappings of these (:func:`patchnb.build.check_plain`).

Configuration errors are one line on stderr and exit status 2. ``python -m patchnb`` is the same command.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

from .build import (  # noqa: F401  (re-exported: the tests and scripts use them from here)
    SCALES,
    SOURCE_DIR,
    STATE_DIR,
    BookError,
    ParameterError,
    build_book,
    check_parameters,
    check_plain,
    execute,
    execute_cached,
    parse_value,
    repo_root,
    toc_notebooks,
)
from .checks import YAMLAliasError, load_yaml_plain
from .publish import PublishError


def _parameters(pairs, path) -> dict:
    """``-f params.yaml`` then ``-p NAME VALUE`` pairs (YAML values), all plain (:func:`check_plain`)."""
    params = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise ParameterError(f"-f {path}: no such file")
        try:
            params = load_yaml_plain(file.read_text()) or {}
        except YAMLAliasError as e:
            raise ParameterError(f"-f {path}: {e}") from e
        except yaml.YAMLError as e:
            raise ParameterError(f"-f {path} is not valid YAML: {e}".splitlines()[0]) from e
        if not isinstance(params, dict):
            raise ParameterError(f"-f {path} must hold a mapping of parameter names to values, got a "
                                 f"{type(params).__name__}")
        try:
            check_plain(params)
        except ParameterError as e:
            raise ParameterError(f"-f {path}: {e}") from e
    params.update({k: parse_value(v, k) for k, v in pairs})
    return params


def _delegated(name: str):
    """Commands whose options live with their implementation."""
    if name == "train":
        from .cli_train import main as train_main

        return train_main
    if name in ("emp-ssl", "supcon", "ssl"):
        from . import cli_emp, cli_ssl

        return {"emp-ssl": cli_emp.main_emp_ssl, "supcon": cli_ssl.main_supcon, "ssl": cli_ssl.main_ssl}[name]
    if name == "vision":
        from .cli_vision import main as vision_main

        return vision_main
    from .eval.sweep import main as sweep_main

    return sweep_main


DELEGATED = ("train", "sweep-checkpoints", "emp-ssl", "supcon", "ssl", "vision")


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
    b.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a parameter for every notebook that has it (YAML value), e.g. -p seeds '[0, 1, 2]'")
    b.add_argument("--device", default=None, help="device parameter of every notebook: auto (default), cpu, cuda")
    pu = sub.add_parser("publish", help="push the built HTML to the gh-pages branch of a git remote (ghp-import)")
    pu.add_argument("--html", default="_build/html", help="the built book (default: _build/html)")
    pu.add_argument("--remote", default="origin", help="git remote name or URL/path (default: origin)")
    pu.add_argument("--branch", default="gh-pages")
    pu.add_argument("--repo", default=".", help="the git checkout to publish from (default: .)")
    sub.add_parser("train", help="train a patch-based network or baseline (`patchnb train --help`)")
    sub.add_parser("sweep-checkpoints", help="linear head on every checkpoint (see its --help)")
    sub.add_parser("emp-ssl", help="EMP-SSL's main.py: `patchnb emp-ssl train ...` / `resume --exp-dir DIR`")
    sub.add_parser("supcon", help="SupCon's main_supcon.py: pre-training with checkpoints for sweep-checkpoints")
    sub.add_parser("ssl", help="one self-supervised method of the zoo: `patchnb ssl METHOD [--config FILE]`")
    sub.add_parser("vision", help="convolution-vs-attention's train.py: --model, --frozen, --patience, ...")
    from .cli_sweep import add_parser as add_sweep_parser

    add_sweep_parser(sub)
    from .cache import add_parser as add_runs_parser

    add_runs_parser(sub)
    be = sub.add_parser("bench", help="run benchmarks/NAME.py")
    be.add_argument("name")
    be.add_argument("args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    try:
        return _run(args)
    except (ParameterError, ValueError, PublishError) as e:  # configuration errors: one line, exit 2 (as argparse does)
        print(f"patchnb {args.cmd}: error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.cmd == "data":
        from .data import download

        print(download(args.name, args.root))
    elif args.cmd == "run":
        source = Path(args.notebook)
        if not source.is_file():
            raise ParameterError(f"no notebook at {source}")
        params = check_parameters(source, _parameters(args.parameter, args.parameters_file))
        out = Path(args.output) if args.output else Path("runs") / source.name
        seconds = execute(source, out, params, Path.cwd(), log_output=True)
        print(f"{out} ({seconds:.1f} s)")
    elif args.cmd == "book":
        extra = _parameters(args.parameter, None)
        for name, given in (("scale", args.scale), ("device", args.device)):
            if given is not None and extra.get(name, given) != given:
                raise ParameterError(f"-p {name} {extra[name]!r} contradicts --{name} {given}; give the {name} once")
        extra.setdefault("device", args.device or "auto")
        try:
            timings = build_book(args.scale, args.jobs, force=args.force, html=not args.no_html, extra=extra)
        except BookError as e:
            timings = {**e.timings, **dict.fromkeys(e.failed)}
            print("\n".join(f"{n:40s} " + ("  FAILED" if s is None else f"{s:8.1f} s") for n, s in timings.items()))
            print(f"patchnb book: error: {e}", file=sys.stderr)
            return 1
        for name, s in timings.items():
            print(f"{name:40s} {s:8.1f} s")
    elif args.cmd == "publish":
        from .publish import publish

        print(publish(args.html, remote=args.remote, branch=args.branch, repo=args.repo))
    elif args.cmd == "sweep":
        from .cli_sweep import run_cli

        return run_cli(args)
    elif args.cmd == "runs":
        from .cache import run_cli as runs_cli

        return runs_cli(args)
    elif args.cmd == "bench":
        script = repo_root() / "benchmarks" / f"{args.name}.py"
        if not script.is_file():
            raise ParameterError(f"no benchmark {script}")
        return subprocess.call([sys.executable, str(script), *args.args])
    return 0


if __name__ == "__main__":
    sys.exit(main())
