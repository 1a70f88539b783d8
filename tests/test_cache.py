"""The run cache: once per config and code version, plain values only, safe for parallel processes."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from filelock import FileLock

from patchnb import cache


def test_cached_runs_once_per_config(tmp_cache):
    calls = []

    def fn(run_dir):
        calls.append(run_dir)
        return {"x": len(calls)}

    assert cache.cached("t", {"a": 1}, fn) == {"x": 1}
    assert cache.cached("t", {"a": 1}, fn) == {"x": 1}
    assert cache.cached("t", {"a": 2}, fn) == {"x": 2}
    assert len(calls) == 2 and calls[0] != calls[1]


def test_cached_run_of_a_patchnb_function_is_keyed_by_its_own_module(tmp_cache, monkeypatch):
    """A run computed by patchnb code is shared by notebooks that loaded different patchnb modules;
    code from outside patchnb (a notebook's lambda) is keyed by every loaded patchnb module."""
    import sys
    import types

    def fn(run_dir):
        return str(run_dir)

    fn.__module__ = "patchnb.cluster"
    first = cache.cached("t", {}, fn)
    monkeypatch.setitem(sys.modules, "patchnb.plots", types.ModuleType("patchnb.plots"))
    assert cache.cached("t", {}, fn) == first
    assert first.endswith(cache.run_key("t", {}, ["patchnb.cluster"]))
    fn.__module__ = "__main__"
    assert cache.cached("t", {}, fn).endswith(cache.run_key("t", {}))
    fn.__module__ = "patchnb.plots"  # another closure, another key
    assert cache.cached("t", {}, fn) != first


def test_cached_values_are_plain_and_load_without_code(tmp_cache):
    """A cached result holds only tensors and plain containers; anything else is refused before it is
    written, so every cache file loads with weights_only=True."""
    value = {"acc": 0.5, "curve": [1, 2.5], "w": torch.ones(2), "nested": {"t": (1, "a", None, True)}}
    assert cache.cached("plain", {}, lambda d: value)["w"].sum() == 2
    assert cache.cached("plain", {}, lambda d: 1 / 0)["curve"] == [1, 2.5]  # loaded, not recomputed

    class Thing:
        pass

    with pytest.raises(TypeError, match=r"\['bad'\]\[1\] is a .*Thing"):
        cache.cached("bad", {}, lambda d: {"bad": [1, Thing()]})
    import numpy as np

    with pytest.raises(TypeError, match="numpy.ndarray.*tolist"):
        cache.check_plain(np.zeros(2))


# ----------------------------------------------------------------------------- parallel jobs (issue 14, part 3)

ROOT = Path(__file__).resolve().parents[1]

# The code both processes run: it says it arrived, then asks for the same run; the run records who
# computed it and does not finish before both processes have arrived, so the second one asks while
# the first one computes (without the lock both would compute it).
ASK = textwrap.dedent("""
    import os, time
    from pathlib import Path
    from patchnb.cache import cached
    root = Path({root!r})
    (root / f"arrived-{{os.getpid()}}").touch()
    def compute(run_dir):
        with open(root / "computed.log", "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        deadline = time.time() + 120
        while len(list(root.glob("arrived-*"))) < 2 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        return {{"pid": os.getpid()}}
    value = cached("two_processes", {{"n": 1}}, compute)
    (root / f"value-{{os.getpid()}}").write_text(str(value["pid"]))
""")


def check_computed_once(root: Path, stderr: str) -> None:
    computed = (root / "computed.log").read_text().split()
    values = {p.read_text() for p in root.glob("value-*")}
    assert len(computed) == 1, f"the run was computed {len(computed)} times"
    assert len(list(root.glob("value-*"))) == 2 and values == {computed[0]}  # the waiter loaded the first's value
    assert "is being computed by another process; waiting" in stderr


def test_two_processes_asking_for_the_same_run_compute_it_once(tmp_cache):
    code = ASK.format(root=str(tmp_cache))
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    stderr = "".join(p.communicate(timeout=180)[1] for p in procs)
    assert [p.returncode for p in procs] == [0, 0], stderr
    check_computed_once(tmp_cache, stderr)


@pytest.mark.slow
def test_two_patchnb_run_notebooks_train_the_same_cached_run_once(tmp_cache):
    """Two ``patchnb run`` processes (two papermill kernels) asking for the same cached run."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(ASK.format(root=str(tmp_cache)))]
    nbformat.write(nb, tmp_cache / "ask.ipynb")
    procs = [subprocess.Popen([sys.executable, "-m", "patchnb", "run", "ask.ipynb", "-o", f"out{i}.ipynb"],
                              cwd=tmp_cache, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True) for i in range(2)]
    stderr = "".join(p.communicate(timeout=300)[1] for p in procs)
    assert [p.returncode for p in procs] == [0, 0], stderr[-3000:]
    check_computed_once(tmp_cache, stderr)


def test_a_killed_computation_releases_its_lock(tmp_cache):
    """The lock is the process's: one killed while computing (SIGKILL) leaves no stale lock behind."""
    code = ASK.format(root=str(tmp_cache)).replace("time.sleep(0.5)", "os.kill(os.getpid(), 9)")
    (tmp_cache / "arrived-other").touch()  # nobody else comes: the computation kills itself at once
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9
    folder = next(cache.runs_dir().glob("two_processes-*"))
    assert (folder / ".lock").exists() and not (folder / "cached.pt").exists()
    with FileLock(folder / ".lock").acquire(timeout=5):  # free again
        pass


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_text_bytes_and_writer(tmp_path):
    from patchnb.checks import atomic_write

    atomic_write(tmp_path / "a.txt", "héllo")
    atomic_write(tmp_path / "b.bin", b"\0\1")
    atomic_write(tmp_path / "c.csv", lambda tmp: tmp.write_text("x,y\n"))
    assert (tmp_path / "a.txt").read_text() == "héllo" and (tmp_path / "b.bin").read_bytes() == b"\0\1"
    assert (tmp_path / "c.csv").read_text() == "x,y\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.csv"]  # no temporary left


def test_atomic_write_that_fails_keeps_the_old_file(tmp_path):
    from patchnb.checks import atomic_write

    atomic_write(tmp_path / "a.txt", "old")

    def half(tmp):
        tmp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "a.txt", half)
    assert (tmp_path / "a.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_replaces_a_link_and_never_writes_through_it(tmp_path):
    from patchnb.checks import atomic_write

    (tmp_path / "target").write_text("someone else's")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    atomic_write(tmp_path / "link", "mine")
    assert not (tmp_path / "link").is_symlink() and (tmp_path / "link").read_text() == "mine"
    assert (tmp_path / "target").read_text() == "someone else's"
