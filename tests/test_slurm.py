"""``patchnb sweep --executor slurm`` against a real single-node Slurm that this module starts: munged (with
a munge key), slurmctld and slurmd from Debian's ``slurm-wlm`` and ``munge`` packages (``.ci/run`` installs
them), a minimal slurm.conf with this host as the only node and partition. The daemons it starts are
stopped at the end. Skipped where they cannot start (not root, packages missing)."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from patchnb import sweep as sw

from .test_sweep import GRID_2X2, write_tiny_notebook

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("munge", "unmunge", "sbatch", "srun", "squeue", "sinfo", "scancel")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
PARTITION = "patchnb"


def _which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def _skip_reason() -> str | None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "starting Slurm's daemons needs root (slurmd runs each job as its user)"
    missing = [b for b in DAEMONS + CLIENTS if _which(b) is None]
    if missing:
        return f"no {', '.join(missing)}: install Debian's slurm-wlm and munge (.ci/run does)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (Debian's munge package creates it)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _munge_works() -> bool:
    cred = subprocess.run([_which("munge"), "-n"], capture_output=True, timeout=10)
    if cred.returncode != 0:
        return False
    return subprocess.run([_which("unmunge")], input=cred.stdout, capture_output=True, timeout=10).returncode == 0


def _start_munged(logs: Path) -> subprocess.Popen | None:
    """munged with /etc/munge/munge.key (made if missing: 1 KiB of random bytes, mode 400, owned by
    munge); None when a munged already answers."""
    if _munge_works():
        return None
    user = pwd.getpwnam("munge")
    key = Path("/etc/munge/munge.key")
    for folder in (key.parent, Path("/run/munge"), Path("/var/lib/munge"), Path("/var/log/munge")):
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, user.pw_uid, user.pw_gid)
    if not key.is_file():
        key.write_bytes(os.urandom(1024))
    os.chown(key, user.pw_uid, user.pw_gid)
    key.chmod(0o400)
    runuser = _which("runuser")
    cmd = [runuser, "-u", "munge", "--", _which("munged"), "-F"] if runuser else [_which("munged"), "-F", "--force"]
    proc = subprocess.Popen(cmd, stdout=open(logs / "munged.log", "w"), stderr=subprocess.STDOUT)
    for _ in range(50):
        if _munge_works():
            return proc
        time.sleep(0.2)
    proc.terminate()
    pytest.fail(f"munged did not start: {(logs / 'munged.log').read_text()[-2000:]}")


def _slurm_conf(root: Path) -> str:
    host = socket.gethostname().split(".")[0]  # hostname -s
    return "\n".join([
        "ClusterName=patchnb-test",
        f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        "SlurmUser=root",
        "AuthType=auth/munge",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'logs' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'logs' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "ReturnToService=2",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n"


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running single-node Slurm (SLURM_CONF set for this process and the commands it starts)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "logs"):
        (root / sub).mkdir()
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root))
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    started = []
    try:
        started.append(_start_munged(root / "logs"))
        for daemon in ("slurmctld", "slurmd"):
            started.append(subprocess.Popen([_which(daemon), "-D", "-f", str(conf)],
                                            stdout=open(root / "logs" / f"{daemon}.out", "w"),
                                            stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 90
        state = ""
        while time.monotonic() < deadline and state != "idle":
            time.sleep(1)
            state = subprocess.run([_which("sinfo"), "-h", "-o", "%t"], capture_output=True, text=True,
                                   timeout=30).stdout.strip()
            if any(p is not None and p.poll() is not None for p in started):
                break
        if state != "idle":
            logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted((root / "logs").iterdir()))
            pytest.fail(f"Slurm did not come up (sinfo state {state!r}):\n{logs}")
        yield conf
    finally:
        subprocess.run([_which("scancel"), "--full", "-u", "root"], capture_output=True, timeout=30)
        for proc in reversed(started):
            _stop(proc)
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf


def _patchnb(*args, cwd):
    return subprocess.run([sys.executable, "-m", "patchnb", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


SLURM_OPTIONS = ("--executor", "slurm", "--partition", PARTITION, "--time", "10", "--cpus-per-task", "1",
                 "--array-parallelism", "2")


@pytest.mark.slow
def test_slurm_sweep_collects_and_skips_finished_points(slurm_cluster, tmp_path):
    write_tiny_notebook(tmp_path / "tiny.ipynb")
    (tmp_path / "grid.yaml").write_text(GRID_2X2)
    out = Path("runs/sweeps/tiny")
    command = ("sweep", "tiny.ipynb", "--grid", "grid.yaml", *SLURM_OPTIONS, "--out", out)
    run = _patchnb(*command, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 points, 0 finished earlier, 0 still queued, 4 to run (slurm)" in run.stdout
    assert "submitted 4 Slurm job(s)" in run.stdout and "4 points, 4 done" in run.stdout
    out = tmp_path / out
    table = sw.collect(out)
    assert list(table["status"]) == ["done"] * 4
    assert sorted(zip(table["x"], table["y"], table["product"])) == [(1, 0.5, 0.5), (1, 2.0, 2.0),
                                                                      (2, 0.5, 1.0), (2, 2.0, 4.0)]
    records = sw._records(out)
    job_ids = {r["job_id"] for r in records.values()}
    assert len(job_ids) == 4 and len({j.split("_")[0] for j in job_ids}) == 1  # one array of 4 tasks
    for row in table.itertuples():  # each job's own log, under the sweep folder
        log = Path(row.log)
        assert log.is_relative_to(out / "logs") and f"[sweep] point {row.point}: done" in log.read_text()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.ipynb")}
    jobs_before = sorted(p.name for p in (out / "logs").iterdir())

    again = _patchnb(*command, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "4 points, 4 finished earlier, 0 still queued, 0 to run" in again.stdout
    assert "submitted" not in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.ipynb")} == before
    assert sorted(p.name for p in (out / "logs").iterdir()) == jobs_before  # no job ran again


@pytest.mark.slow
def test_slurm_no_wait_then_collect_reports_a_job_that_dies(slurm_cluster, tmp_path):
    """``--no-wait`` returns at submission; ``--collect`` later reports the point whose job was killed
    (the notebook kills the job's python) as failed, with the job's log, and exits 2."""
    write_tiny_notebook(tmp_path / "tiny.ipynb")
    (tmp_path / "grid.yaml").write_text("- {x: 5}\n- {x: 6, mode: die}\n")
    command = ("sweep", "tiny.ipynb", "--grid", "grid.yaml", *SLURM_OPTIONS, "--out", "out")
    run = _patchnb(*command, "--no-wait", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "collect with: patchnb sweep tiny.ipynb --grid grid.yaml --out out --collect" in run.stdout
    deadline = time.monotonic() + 180
    table = sw.collect(tmp_path / "out")
    while set(table["status"]) & {"pending", "running"} and time.monotonic() < deadline:
        time.sleep(2)
        table = sw.collect(tmp_path / "out")
    assert list(table["status"]) == ["done", "failed"], table
    dead = table.iloc[1]
    assert dead["error"].startswith(f"Slurm job {sw._records(tmp_path / 'out')[dead['point']]['job_id']} ended ")
    assert dead["error"].endswith(" without a result") and Path(dead["log"]).is_file()
    collected = _patchnb(*command, "--collect", cwd=tmp_path)
    err = collected.stderr.strip().splitlines()
    assert collected.returncode == 2 and len(err) == 1, collected.stderr
    assert err[0].startswith("patchnb sweep: error: 1 of 2 points failed: point ") and dead["log"] in err[0]
