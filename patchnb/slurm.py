"""Slurm through submitit, for ``patchnb sweep --executor slurm`` (:mod:`patchnb.sweep`).

* :class:`SlurmOptions`: what each job asks for (partition, time, cpus, gpus, memory, array throttling).
* :func:`submit` submits calls of a function as one job array (``submitit.AutoExecutor(cluster="slurm")``
  run with this interpreter, so a venv's python runs the jobs); a missing or failing ``sbatch`` is one
  :class:`SlurmError` naming the command.
* :func:`states` asks ``squeue`` (then ``sacct``, where accounting is on) what became of jobs, and
  :func:`wait` polls until each job has a result or has left the queue without one. Neither needs
  Slurm's accounting database (submitit's own waiting does: without ``sacct`` it never sees a job die).
"""

from __future__ import annotations

import contextlib
import io
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .checks import check_float, check_int

# job states in which a job may still produce its result
LIVE_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
               "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT", "PREEMPTED"}
TOOLS = ("sbatch", "srun", "squeue")


class SlurmError(ValueError):
    """Slurm cannot be reached: a client command is missing or fails (one line naming it)."""


@dataclass(frozen=True)
class SlurmOptions:
    """What each job asks for; ``time`` is in minutes, ``array_parallelism`` the number of the array's
    jobs that may run at once (the ``%N`` of ``sbatch --array``)."""

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


def check_tools() -> None:
    """Slurm's client commands are on PATH, else a one-line :class:`SlurmError` naming the missing one."""
    for tool in TOOLS:
        if shutil.which(tool) is None:
            raise SlurmError(f"Slurm is not reachable: no `{tool}` on PATH (the slurm executor submits with "
                             "sbatch; run this on a Slurm login node, or use --executor local)")


def submit(fn: Callable, calls: list[tuple], folder: Path, opts: SlurmOptions, name: str) -> list[tuple[str, str]]:
    """``fn(*args)`` for each ``args`` of ``calls`` as one job array; logs (stdout and stderr together)
    under ``folder/<job id>/``. Returns ``(job id, log path)`` per call."""
    import submitit
    from submitit.core.utils import FailedJobError, FailedSubmissionError

    check_tools()
    throttle = {"slurm_array_parallelism": opts.array_parallelism} if opts.array_parallelism else {}
    try:
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm",
                                         slurm_python=shlex.quote(sys.executable))
        executor.update_parameters(name=name, timeout_min=opts.time, cpus_per_task=opts.cpus_per_task,
                                   gpus_per_node=opts.gpus_per_node, mem_gb=opts.mem_gb,
                                   slurm_partition=opts.partition, stderr_to_stdout=True, **throttle)
        with contextlib.redirect_stderr(io.StringIO()), executor.batch():  # submitit echoes sbatch's stderr
            jobs = [executor.submit(fn, *args) for args in calls]
    except (FailedJobError, FailedSubmissionError, OSError, RuntimeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "error" in ln.lower() and "sbatch" in ln.lower()), None)
        raise SlurmError(f"Slurm is not reachable: `sbatch` failed: "
                         f"{detail or (lines[-1] if lines else type(e).__name__)}") from e
    return [(str(job.job_id), str(job.paths.stdout)) for job in jobs]


def states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """``{job id: state}`` of the jobs Slurm still knows; a job missing from the answer has left the
    queue. None when ``squeue`` itself fails (controller unreachable)."""
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
    known = dict(line.split("|", 1) for line in q.stdout.splitlines() if "|" in line)
    if any(j not in known for j in job_ids):  # finished long ago: only accounting remembers them
        try:
            a = subprocess.run(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", arrays],
                               capture_output=True, text=True, timeout=60)
            for line in a.stdout.splitlines() if a.returncode == 0 else []:
                jid, _, state = line.partition("|")
                known.setdefault(jid, state.split()[0] if state.strip() else "UNKNOWN")
        except (OSError, subprocess.TimeoutExpired):
            pass
    return {j: known[j].split()[0] for j in job_ids if j in known}


def is_live(state: str) -> bool:
    return state in LIVE_STATES


def wait(jobs: dict[str, str], has_result: Callable[[str], bool], on_ended: Callable[[str, str], None],
         poll_s: float = 2.0, grace_s: float = 10.0, desc: str = "slurm") -> None:
    """Poll until every ``key`` of ``jobs`` (``{key: job id}``) ``has_result(key)``, or its job has left
    the live states for ``grace_s`` (time for a result to show on a shared file system) without one:
    then ``on_ended(key, state)`` (``GONE`` when Slurm no longer knows the job)."""
    from tqdm.auto import tqdm

    left, ended, failures = set(jobs), {}, 0
    with tqdm(total=len(jobs), desc=desc) as bar:
        while left:
            done = {k for k in left if has_result(k)}
            bar.update(len(done))
            left -= done
            if not left:
                break
            now = states(jobs[k] for k in left)
            failures = failures + 1 if now is None else 0
            if failures > 30:
                raise SlurmError("Slurm is not reachable: `squeue` keeps failing while waiting for the jobs")
            for k in sorted(left) if now is not None else []:
                state = now.get(jobs[k], "GONE")
                if is_live(state):
                    ended.pop(k, None)
                elif time.monotonic() - ended.setdefault(k, time.monotonic()) > grace_s:
                    on_ended(k, state)
                    left.discard(k)
                    bar.update(1)
            time.sleep(poll_s)
