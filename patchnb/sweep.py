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
import io
import itertools
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from .build import check_parameters, execute
from .checks import check_choice, check_float, check_int

EXECUTORS = ("local", "slurm")
SWEEPS_DIR = Path("runs") / "sweeps"
RESULTS = "results"
# Slurm job states in which a job may still produce its result
LIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
               "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "PREEMPTED"}


class SweepError(ValueError):
    """A sweep that cannot run as asked: bad grid, unreachable Slurm, failed points (one line)."""


# ----------------------------------------------------------------------------- grids


def load_grid(path: str | Path) -> list[dict]:
    """The points of a YAML grid file (see :func:`expand_grid`)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"--grid {path}: no such file")
    try:
        grid = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SweepError(f"--grid {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    return expand_grid(grid, where=f"grid {path}")


def expand_grid(grid, where: str = "the grid") -> list[dict]:
    """``{"x": [1, 2], "y": [0.5, 1.0]}`` -> the 4 points of the cartesian product (the last name
    varies fastest); ``[{"x": 1}, {"x": 2, "y": 0.1}]`` -> those points. Values must be plain YAML
    (numbers, strings, booleans, null, lists, mappings); a point may not appear twice."""
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
        points = [dict(zip(lists, combo)) for combo in itertools.product(*lists.values())]
    elif isinstance(grid, list):
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


def _write_atomic(path: Path, write) -> None:
    """``write(tmp_path)`` then rename over ``path``: readers see the old file or the new one, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_json(path: Path, data: dict) -> None:
    _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=1) + "\n"))


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
        message = _short_error(e)
        _write_json(_error_path(out, pid), {"error": message, "log": rec.get("log"),
                                             "partial": str(target.with_suffix(".failed.ipynb"))})
        raise RuntimeError(f"point {pid} failed: {message}") from e
    finally:
        logger.removeHandler(handler)
    print(f"[sweep] point {pid}: done in {seconds:.1f} s -> {target}", flush=True)
    return str(target)


def _short_error(e: BaseException) -> str:
    """One line: the notebook's exception (``ValueError: ...``) rather than papermill's whole report."""
    cause = e.__cause__ or e
    if hasattr(cause, "ename"):  # papermill.PapermillExecutionError
        return f"{cause.ename}: {str(cause.evalue).strip().splitlines()[0] if cause.evalue else ''}".strip()
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".strip()


# ----------------------------------------------------------------------------- executors


@dataclass(frozen=True)
class SlurmOptions:
    """What each point's Slurm job asks for; ``time`` is in minutes, ``array_parallelism`` the number of
    the sweep's jobs that may run at once (the ``%N`` of ``sbatch --array``)."""

    partition: str | None = None
    time: int = 60
    cpus_per_task: int | None = None
    gpus_per_node: int | None = None
    mem_gb: float | None = None
    array_parallelism: int | None = None

    def validate(self) -> None:
        check_int("--time", self.time, 1)
        check_int("--cpus-per-task", self.cpus_per_task, 1, allow_none=True)
        check_int("--gpus-per-node", self.gpus_per_node, 0, allow_none=True)
        check_int("--array-parallelism", self.array_parallelism, 1, allow_none=True)
        if self.mem_gb is not None:
            check_float("--mem-gb", self.mem_gb, 0, strict_min=True)


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


def _check_slurm_tools() -> None:
    for tool in ("sbatch", "srun", "squeue"):
        if shutil.which(tool) is None:
            raise SweepError(f"Slurm is not reachable: no `{tool}` on PATH (the slurm executor submits with "
                             "sbatch; run this on a Slurm login node, or use --executor local)")


def _submit_slurm(out: Path, pids: list[str], opts: SlurmOptions, name: str) -> list[str]:
    """Submit the points as one job array with submitit; returns the job ids (``<array>_<task>``)."""
    import submitit
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    _check_slurm_tools()
    try:
        executor = submitit.AutoExecutor(folder=out / "logs" / "%j", cluster="slurm",
                                         slurm_python=shlex.quote(sys.executable))
        executor.update_parameters(name=name, timeout_min=opts.time, cpus_per_task=opts.cpus_per_task,
                                   gpus_per_node=opts.gpus_per_node, mem_gb=opts.mem_gb,
                                   slurm_partition=opts.partition, stderr_to_stdout=True,
                                   **({"slurm_array_parallelism": opts.array_parallelism}
                                      if opts.array_parallelism else {}))
        with contextlib.redirect_stderr(io.StringIO()), executor.batch():  # submitit echoes sbatch's stderr
            jobs = [executor.submit(run_point, str(out), pid) for pid in pids]
    except (FailedJobError, FailedSubmissionError, OSError, RuntimeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "error" in ln.lower() and "sbatch" in ln.lower()), None)
        detail = detail or (lines[-1] if lines else type(e).__name__)
        raise SweepError(f"Slurm is not reachable: `sbatch` failed: {detail}") from e
    for pid, job in zip(pids, jobs):
        rec = _read_json(_record_path(out, pid))
        rec.update(job_id=str(job.job_id), log=str(job.paths.stdout))
        _write_json(_record_path(out, pid), rec)
    return [str(j.job_id) for j in jobs]


def slurm_states(job_ids) -> dict[str, str] | None:
    """``{job id: state}`` of the jobs Slurm still knows (squeue, then sacct where accounting is on);
    a job missing from the answer has left the queue. None when squeue itself fails."""
    job_ids = sorted(set(job_ids))
    if not job_ids:
        return {}
    arrays = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    try:
        q = subprocess.run(["squeue", "-h", "-r", "--states=all", "-o", "%i|%T", "-j", arrays],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if q.returncode != 0 and "Invalid job id" not in q.stderr:
        return None
    states = dict(line.split("|", 1) for line in q.stdout.splitlines() if "|" in line)
    if any(j not in states for j in job_ids):
        try:
            a = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", arrays],
                               capture_output=True, text=True, timeout=60)
            for line in a.stdout.splitlines() if a.returncode == 0 else []:
                jid, _, state = line.partition("|")
                states.setdefault(jid, state.split()[0] if state else "UNKNOWN")
        except (OSError, subprocess.TimeoutExpired):
            pass
    return {j: states[j] for j in job_ids if j in states}


def _mark_dead(out: Path, pid: str, rec: dict, state: str) -> None:
    _write_json(_error_path(out, pid), {"error": f"Slurm job {rec['job_id']} ended {state} without a result",
                                        "log": rec.get("log")})


def _wait_slurm(out: Path, pids: list[str], poll_s: float = 2.0, grace_s: float = 10.0) -> None:
    """Wait until every point has a result: its notebook, its error, or a job Slurm no longer runs (then
    recorded as failed after ``grace_s`` for the result to appear on a shared file system)."""
    from tqdm.auto import tqdm

    recs = {pid: _read_json(_record_path(out, pid)) for pid in pids}
    left, ended, failures = set(pids), {}, 0
    with tqdm(total=len(pids), desc="sweep (slurm)") as bar:
        while left:
            done = {p for p in left if _executed(out, p, recs[p]["parameters"]) or _error_path(out, p).is_file()}
            bar.update(len(done))
            left -= done
            if not left:
                break
            states = slurm_states(recs[p]["job_id"] for p in left)
            failures = failures + 1 if states is None else 0
            if failures > 30:
                raise SweepError("Slurm is not reachable: `squeue` keeps failing while waiting for the sweep's jobs")
            for p in sorted(left) if states is not None else []:
                state = states.get(recs[p]["job_id"], "GONE")
                if state.split()[0] in LIVE_STATES:
                    ended.pop(p, None)
                elif time.monotonic() - ended.setdefault(p, time.monotonic()) > grace_s:
                    _mark_dead(out, p, recs[p], state)
            time.sleep(poll_s)


# ----------------------------------------------------------------------------- sweep and collect


def sweep(notebook: str | Path, points: list[dict], out: str | Path | None = None, executor: str = "local",
          jobs: int = 1, slurm: SlurmOptions | None = None, wait: bool = True, cwd: str | Path | None = None,
          echo=print):
    """Run the ``points`` of ``notebook`` that are not finished in ``out`` and return :func:`collect`'s
    table (None with ``wait=False``). Every point is checked against the notebook before anything runs;
    a failed point is a row with status ``failed``, not an exception."""
    from filelock import FileLock

    check_choice("executor", executor, EXECUTORS)
    check_int("jobs", jobs, 1)
    slurm = slurm or SlurmOptions()
    slurm.validate()
    source = Path(notebook)
    if not source.is_file():
        raise SweepError(f"no notebook at {source}")
    if not points:
        raise SweepError("the grid is empty: it has no points to run")
    for point in points:
        check_parameters(source, point)
    if executor == "slurm":
        _check_slurm_tools()
    out = Path(out) if out else default_out(source, points)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    with FileLock(out / ".sweep.lock"):  # two submissions of one sweep never run a point twice
        recs = _records(out)
        other = {r.get("notebook") for r in recs.values()} - {str(source.resolve())}
        if other:
            raise SweepError(f"{out} holds a sweep of {sorted(other)[0]}, not of {source}; choose another --out")
        todo, finished, queued = [], 0, 0
        live = slurm_states(r["job_id"] for r in recs.values() if r.get("job_id")) or {}
        for order, point in enumerate(points):
            pid = point_id(point)
            old = recs.get(pid)
            if _executed(out, pid, point):
                finished += 1
            elif old and old.get("job_id") in live and live[old["job_id"]].split()[0] in LIVE_STATES \
                    and not _error_path(out, pid).is_file():
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
        _wait_slurm(out, [point_id(p) for p in points])
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
    waiting = {p: r for p, r in recs.items() if r.get("job_id") and not _executed(out, p, r["parameters"])
               and not _error_path(out, p).is_file()}
    states = slurm_states(r["job_id"] for r in waiting.values()) if waiting else {}
    rows, glued_names = [], []
    for pid, rec in sorted(recs.items(), key=lambda kv: (kv[1].get("order", 0), kv[0])):
        row = {"point": pid, "status": "not run", "error": None, "log": rec.get("log"), "seconds": None,
               "parameters": _canon(rec["parameters"])}
        nb, err = _executed(out, pid, rec["parameters"]), _read_json(_error_path(out, pid))
        if pid in waiting and states is not None:
            state = states.get(rec["job_id"], "GONE").split()[0]
            if state in LIVE_STATES:
                row["status"] = "running" if state == "RUNNING" else "pending"
            else:
                _mark_dead(out, pid, rec, state)
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
    _write_atomic(out / f"{RESULTS}.csv", lambda tmp: table.to_csv(tmp, index=False))
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        pass
    else:
        plain = table.astype({c: str for c in table.columns if table[c].dtype == object})
        _write_atomic(out / f"{RESULTS}.parquet", lambda tmp: plain.to_parquet(tmp, index=False))
    return table


# ----------------------------------------------------------------------------- command line


def add_parser(sub) -> None:
    """The ``patchnb sweep`` subcommand (registered by :mod:`patchnb.cli`)."""
    s = sub.add_parser("sweep", help="run a notebook over a grid of parameters (local processes or Slurm jobs)")
    s.add_argument("notebook")
    s.add_argument("--grid", required=True, help="YAML: parameter -> list of values, or a list of mappings")
    s.add_argument("--executor", default="local", help="local (processes on this host) or slurm (submitit)")
    s.add_argument("--out", default=None, help="sweep folder (default: runs/sweeps/<notebook>-<grid hash>)")
    s.add_argument("--jobs", type=int, default=1, help="local: points run at once")
    s.add_argument("--no-wait", action="store_true", help="slurm: return after submitting (then --collect)")
    s.add_argument("--collect", action="store_true", help="collect the results of an earlier sweep, run nothing")
    s.add_argument("--partition", default=None, help="slurm partition")
    s.add_argument("--time", type=int, default=60, help="slurm time limit per point, minutes")
    s.add_argument("--cpus-per-task", type=int, default=None)
    s.add_argument("--gpus-per-node", type=int, default=None)
    s.add_argument("--mem-gb", type=float, default=None)
    s.add_argument("--array-parallelism", type=int, default=None, help="slurm: jobs of the sweep running at once")


def run_cli(args) -> int:
    points = load_grid(args.grid)
    out = Path(args.out) if args.out else default_out(args.notebook, points)
    if args.collect:
        table = collect(out)
    else:
        opts = SlurmOptions(args.partition, args.time, args.cpus_per_task, args.gpus_per_node, args.mem_gb,
                            args.array_parallelism)
        table = sweep(args.notebook, points, out, args.executor, args.jobs, opts, wait=not args.no_wait)
        if table is None:
            print(f"[sweep] collect with: patchnb sweep {args.notebook} --grid {args.grid} --out {out} --collect")
            return 0
    counts = table["status"].value_counts().to_dict()
    print(f"[sweep] {out / (RESULTS + '.csv')}: {len(table)} points, "
          + ", ".join(f"{n} {s}" for s, n in counts.items()))
    failed = table[table["status"] == "failed"]
    if len(failed):
        raise SweepError(f"{len(failed)} of {len(table)} points failed: " + "; ".join(
            f"point {r.point} {r.parameters}: {r.error} (log: {r.log})" for r in failed.itertuples()))
    return 0


if __name__ == "__main__":  # one point, as the local executor runs it
    try:
        run_point(sys.argv[1], sys.argv[2])
    except RuntimeError as e:
        print(f"[sweep] {e}", file=sys.stderr)
        sys.exit(1)
