"""Parameter sweeps of one notebook: ``patchnb sweep NOTEBOOK --grid grid.yaml [--executor local|slurm]``.

A grid is YAML: a mapping of parameter -> list of values (the points are their cartesian product; a
value that is not a list is held fixed), or a list of mappings, one per point. Every point is checked
against the notebook's ``parameters`` cell (:func:`patchnb.build.check_parameters`) before anything
runs, then executed with papermill (:func:`patchnb.build.execute`):

* ``local``: each point is its own process on this host (``--jobs N`` at a time);
* ``slurm``: each point is a task of one Slurm job array submitted with submitit (partition, time,
  cpus, gpus, memory and array throttling as options); ``--no-wait`` returns after submission and a
  later ``--collect`` gathers what has finished.

The sweep folder (``--out``, default ``runs/sweeps/<notebook>-<grid hash>/``) holds, for each point
named by the hash of its parameters ``<id>``: ``<id>.params.json`` (notebook, parameters, job id, log),
the executed ``<id>.ipynb`` once it succeeded, or ``<id>.error.json`` when it failed; logs are under
``logs/``. A point is finished when its executed notebook exists and records the same parameters:
finished points are never run again. :func:`collect` gathers every point's glued values and
parameters into one table (``results.csv``, and ``results.parquet`` with pyarrow), with a ``status``
(done / failed / pending / running / not run) and, for failures, the ``error`` and the ``log``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .build import check_parameters, error_line, execute
from .checks import YAMLAliasError, atomic_write, check_choice, check_int, load_yaml_plain

if TYPE_CHECKING:
    from .slurm import SlurmOptions

EXECUTORS = ("local", "slurm")
SWEEPS_DIR = Path("runs") / "sweeps"
RESULTS = "results"


class SweepError(ValueError):
    """A sweep that cannot run as asked: bad grid, unreachable Slurm, failed points (one line)."""


@contextlib.contextmanager
def _slurm_errors():
    """:class:`patchnb.slurm.SlurmError` (Slurm unreachable) raised as a :class:`SweepError`."""
    from .slurm import SlurmError

    try:
        yield
    except SlurmError as e:
        raise SweepError(str(e)) from e


# ----------------------------------------------------------------------------- grids


#: the most points a grid may have (checked before it is expanded); a larger sweep is several grids
MAX_GRID_POINTS = 10_000
#: the largest grid file read, in bytes (a grid of MAX_GRID_POINTS points written out fits well within it)
MAX_GRID_BYTES = 4_000_000


def load_grid(path: str | Path) -> list[dict]:
    """The points of a YAML grid file (see :func:`expand_grid`). YAML aliases (``*name``) are refused, as
    are files over :data:`MAX_GRID_BYTES` bytes: either could expand past any memory."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"--grid {path}: no such file")
    size = path.stat().st_size
    if size > MAX_GRID_BYTES:
        raise SweepError(f"--grid {path} is {size:,} bytes, more than the {MAX_GRID_BYTES:,} a grid file may have "
                         f"(MAX_GRID_BYTES); write the values as lists of a mapping, or split the sweep")
    try:
        grid = load_yaml_plain(path.read_text())
    except YAMLAliasError as e:
        raise SweepError(f"--grid {path}: {e}") from None
    except yaml.YAMLError as e:
        raise SweepError(f"--grid {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    return expand_grid(grid, where=f"grid {path}")


def expand_grid(grid, where: str = "the grid") -> list[dict]:
    """``{"x": [1, 2], "y": [0.5, 1.0]}`` -> the 4 points of the cartesian product (the last name
    varies fastest); ``[{"x": 1}, {"x": 2, "y": 0.1}]`` -> those points. Values must be plain YAML
    (numbers, strings, booleans, null, lists, mappings); a point may not appear twice. A grid has at
    most :data:`MAX_GRID_POINTS` points, counted (the product of the lists' lengths) before any is made."""
    if grid is None or (isinstance(grid, (dict, list)) and not grid):
        raise SweepError(f"{where} is empty: give a mapping of parameter -> list of values, or a list of "
                         "parameter mappings")
    if isinstance(grid, dict):
        lists = {}
        for name, values in grid.items():
            values = values if isinstance(values, list) else [values]
            if not values:
                raise SweepError(f"{where}: parameter {name} has an empty list of values, so the grid has no points")
            lists[name] = values
        check_grid_size(math.prod(len(v) for v in lists.values()), where,
                        " x ".join(f"{len(v)} {name}" for name, v in lists.items()))
        points = [dict(zip(lists, combo)) for combo in itertools.product(*lists.values())]
    elif isinstance(grid, list):
        check_grid_size(len(grid), where, "its list of points")
        points = grid
    else:
        raise SweepError(f"{where} must be a mapping of parameter -> list of values or a list of mappings, "
                         f"got a {type(grid).__name__}")
    seen = set()
    for i, point in enumerate(points):
        if not isinstance(point, dict):
            raise SweepError(f"{where}: point {i} is a {type(point).__name__} ({point!r}), not a mapping")
        for name, value in point.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise SweepError(f"{where}: {name!r} is not a parameter name")
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise SweepError(f"{where}: {name}={value!r} is not a plain value ({e})") from e
        key = _canon(point)
        if key in seen:
            raise SweepError(f"{where}: point {point} appears twice")
        seen.add(key)
    return [dict(p) for p in points]


def check_grid_size(n: int, where: str = "the grid", how: str = "") -> None:
    """A :class:`SweepError` when ``n`` points are more than :data:`MAX_GRID_POINTS`."""
    if n > MAX_GRID_POINTS:
        raise SweepError(f"{where} has {n:,} points ({how}), more than the {MAX_GRID_POINTS:,} a sweep may have "
                         f"(MAX_GRID_POINTS); nothing was run: give fewer values, or split it into several grids")


def _canon(params: dict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def point_id(params: dict) -> str:
    """The name of a point in the sweep folder: a hash of its parameters (their order does not matter)."""
    return hashlib.sha1(_canon(params).encode()).hexdigest()[:12]


def grid_id(points: list[dict]) -> str:
    """A hash of the set of points of a grid."""
    return hashlib.sha1("\n".join(sorted(map(_canon, points))).encode()).hexdigest()[:8]


def default_out(notebook: str | Path, points: list[dict]) -> Path:
    """``runs/sweeps/<notebook>-<grid hash>`` (relative to the working directory)."""
    return SWEEPS_DIR / f"{Path(notebook).stem}-{grid_id(points)}"


# ----------------------------------------------------------------------------- the sweep folder


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1) + "\n")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _record_path(out: Path, pid: str) -> Path:
    return out / f"{pid}.params.json"


def _error_path(out: Path, pid: str) -> Path:
    return out / f"{pid}.error.json"


def _executed(out: Path, pid: str, params: dict) -> dict | None:
    """The executed notebook of a finished point (it exists and records ``params``), else None."""
    nb = _read_json(out / f"{pid}.ipynb")
    meta = (nb or {}).get("metadata", {}).get("patchnb", {})
    return nb if nb is not None and _canon(meta.get("parameters", {})) == _canon(params) else None


def _records(out: Path) -> dict[str, dict]:
    recs = {}
    for path in sorted(out.glob("*.params.json")):
        rec = _read_json(path)
        if rec is not None:
            recs[path.name.removesuffix(".params.json")] = rec
    return recs


# ----------------------------------------------------------------------------- one point (the job)


def run_point(out_dir: str, pid: str) -> str:
    """Execute one point of a sweep (what a local process or a Slurm job runs). On failure the error,
    one line, is written to ``<id>.error.json`` before raising, so that the sweep can report it."""
    out = Path(out_dir)
    rec = json.loads(_record_path(out, pid).read_text())
    target = out / f"{pid}.ipynb"
    logger = logging.getLogger("papermill")
    handler = logging.StreamHandler(sys.stdout)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    print(f"[sweep] point {pid}: {rec['notebook']} with {rec['parameters']}", flush=True)
    try:
        seconds = execute(Path(rec["notebook"]), target, rec["parameters"], Path(rec["cwd"]), log_output=True)
    except Exception as e:
        message = error_line(e)
        _write_json(_error_path(out, pid), {"error": message, "log": rec.get("log"),
                                             "partial": str(target.with_suffix(".failed.ipynb"))})
        raise RuntimeError(f"point {pid} failed: {message}") from e
    finally:
        logger.removeHandler(handler)
    print(f"[sweep] point {pid}: done in {seconds:.1f} s -> {target}", flush=True)
    return str(target)


# ----------------------------------------------------------------------------- executors


def _run_local(out: Path, pids: list[str], jobs: int) -> None:
    """Each point in its own ``python -m patchnb.sweep`` process, ``jobs`` at a time; a process that dies
    without recording an error (killed, out of memory) gets one naming its exit status."""
    from tqdm.auto import tqdm

    def one(pid: str) -> None:
        log = Path(_read_json(_record_path(out, pid))["log"])
        with open(log, "w") as f:
            rc = subprocess.run([sys.executable, "-m", "patchnb.sweep", str(out), pid], stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        if rc != 0 and not _error_path(out, pid).is_file():
            how = f"was killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}"
            _write_json(_error_path(out, pid), {"error": f"the point's process {how} without a result",
                                                 "log": str(log)})

    with ThreadPoolExecutor(max_workers=jobs) as pool:  # threads only wait on the processes
        for _ in tqdm(pool.map(one, pids), total=len(pids), desc="sweep (local)", disable=not pids):
            pass


def _submit_slurm(out: Path, pids: list[str], opts, name: str) -> list[str]:
    """The points as one Slurm job array (:func:`patchnb.slurm.submit`); their records get the job id
    and log. Returns the job ids."""
    from . import slurm

    with _slurm_errors():
        submitted = slurm.submit(run_point, [(str(out), pid) for pid in pids], out / "logs", opts, name)
    for pid, (job_id, log) in zip(pids, submitted):
        rec = _read_json(_record_path(out, pid))
        rec.update(job_id=job_id, log=log)
        _write_json(_record_path(out, pid), rec)
    return [job_id for job_id, _ in submitted]


def _mark_dead(out: Path, pid: str, state: str) -> None:
    rec = _read_json(_record_path(out, pid))
    _write_json(_error_path(out, pid), {"error": f"Slurm job {rec['job_id']} ended {state} without a result",
                                        "log": rec.get("log")})


def _has_result(out: Path, pid: str, params: dict) -> bool:
    return _executed(out, pid, params) is not None or _error_path(out, pid).is_file()


# ----------------------------------------------------------------------------- sweep and collect


def sweep(notebook: str | Path, points: list[dict], out: str | Path | None = None, executor: str = "local",
          jobs: int = 1, slurm: SlurmOptions | None = None, wait: bool = True, cwd: str | Path | None = None,
          echo=print):
    """Run the ``points`` of ``notebook`` that are not finished in ``out`` and return :func:`collect`'s
    table (None with ``wait=False``). Every point is checked against the notebook before anything runs;
    a failed point is a row with status ``failed``, not an exception."""
    from filelock import FileLock

    from . import slurm as slurm_

    check_choice("executor", executor, EXECUTORS)
    check_int("jobs", jobs, 1)
    slurm = slurm or slurm_.SlurmOptions()
    slurm.validate()
    source = Path(notebook)
    if not source.is_file():
        raise SweepError(f"no notebook at {source}")
    if not points:
        raise SweepError("the grid is empty: it has no points to run")
    check_grid_size(len(points), "the sweep", "its list of points")
    for point in points:
        check_parameters(source, point)
    if executor == "slurm":
        with _slurm_errors():
            slurm_.check_tools()
    out = Path(out) if out else default_out(source, points)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    with FileLock(out / ".sweep.lock"):  # two submissions of one sweep never run a point twice
        recs = _records(out)
        other = {r.get("notebook") for r in recs.values()} - {str(source.resolve())}
        if other:
            raise SweepError(f"{out} holds a sweep of {sorted(other)[0]}, not of {source}; choose another --out")
        todo, finished, queued = [], 0, 0
        live = {}
        if executor == "slurm":  # points of an earlier --no-wait submission still in the queue
            live = slurm_.states(r["job_id"] for p, r in recs.items()
                                 if r.get("job_id") and not _has_result(out, p, r["parameters"])) or {}
        for order, point in enumerate(points):
            pid = point_id(point)
            old = recs.get(pid)
            if _executed(out, pid, point):
                finished += 1
            elif old and slurm_.is_live(live.get(old.get("job_id"), "")):
                queued += 1
            else:
                todo.append(pid)
                _error_path(out, pid).unlink(missing_ok=True)
                _write_json(_record_path(out, pid), {
                    "id": pid, "order": order, "notebook": str(source.resolve()), "parameters": point,
                    "cwd": str(Path(cwd or Path.cwd()).resolve()), "executor": executor, "job_id": None,
                    "log": str((out / "logs" / f"{pid}.log").resolve())})
        echo(f"[sweep] {source.name}: {len(points)} points, {finished} finished earlier, {queued} still queued, "
             f"{len(todo)} to run ({executor}) -> {out}")
        if executor == "local":
            _run_local(out, todo, jobs)
        elif todo:
            try:
                ids = _submit_slurm(out, todo, slurm, name=f"patchnb-{source.stem}")
            except SweepError:
                for pid in todo:
                    _record_path(out, pid).unlink(missing_ok=True)
                raise
            echo(f"[sweep] submitted {len(ids)} Slurm job(s) {ids[0]}..{ids[-1]}; logs under {out / 'logs'}")
    if executor == "slurm" and not wait:
        return None
    if executor == "slurm":
        params_of = {point_id(p): p for p in points}
        with _slurm_errors():
            slurm_.wait({pid: _read_json(_record_path(out, pid))["job_id"] for pid in params_of},
                        has_result=lambda pid: _has_result(out, pid, params_of[pid]),
                        on_ended=lambda pid, state: _mark_dead(out, pid, state), desc="sweep (slurm)")
    return collect(out)


def collect(out_dir: str | Path):
    """One row per point of the sweep in ``out_dir``: ``point``, ``status``, ``error``, ``log``,
    ``seconds``, its parameters and its glued values (numbers where every value of a column is one).
    Written to ``results.csv`` (and ``results.parquet`` when pyarrow is installed) by rename, so the
    table on disk is never half-written."""
    import pandas as pd

    from .book import read_glued

    out = Path(out_dir)
    recs = _records(out)
    if not recs:
        raise SweepError(f"no sweep in {out} (no <point>.params.json files)")
    waiting = {p: r for p, r in recs.items() if r.get("job_id") and not _has_result(out, p, r["parameters"])}
    if waiting:
        from . import slurm

        states = slurm.states(r["job_id"] for r in waiting.values())
    rows, glued_names = [], []
    for pid, rec in sorted(recs.items(), key=lambda kv: (kv[1].get("order", 0), kv[0])):
        row = {"point": pid, "status": "not run", "error": None, "log": rec.get("log"), "seconds": None,
               "parameters": _canon(rec["parameters"])}
        nb, err = _executed(out, pid, rec["parameters"]), _read_json(_error_path(out, pid))
        if pid in waiting and states is not None:
            state = states.get(rec["job_id"], "GONE")
            if slurm.is_live(state):
                row["status"] = "running" if state == "RUNNING" else "pending"
            else:
                _mark_dead(out, pid, state)
                err = _read_json(_error_path(out, pid))
        glued = {}
        if nb is not None:
            row.update(status="done", seconds=nb["metadata"]["patchnb"].get("seconds"))
            glued = read_glued(out / f"{pid}.ipynb")
        elif err is not None:
            row.update(status="failed", error=err.get("error"), log=err.get("log") or row["log"])
        for name, value in rec["parameters"].items():
            row[name] = json.dumps(value) if isinstance(value, (list, dict)) else value
        for name, value in glued.items():
            column = name if name not in row else f"glued:{name}"
            row[column] = value
            if column not in glued_names:
                glued_names.append(column)
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in glued_names:
        try:
            table[column] = pd.to_numeric(table[column])
        except (ValueError, TypeError):
            pass
    atomic_write(out / f"{RESULTS}.csv", lambda tmp: table.to_csv(tmp, index=False))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        plain = table.astype({c: str for c in table.columns if table[c].dtype == object})
        atomic_write(out / f"{RESULTS}.parquet", lambda tmp: plain.to_parquet(tmp, index=False))
    return table


if __name__ == "__main__":  # one point, as the local executor runs it
    try:
        run_point(sys.argv[1], sys.argv[2])
    except RuntimeError as e:
        print(f"[sweep] {e}", file=sys.stderr)
        sys.exit(1)
