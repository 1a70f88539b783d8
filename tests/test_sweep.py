"""``patchnb sweep``: grids (both YAML forms), bad input as one-line errors, the local executor on a tiny
notebook (2x2 grid, collected table, finished points skipped, failed points reported with their log)."""
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from patchnb import sweep as sw
from patchnb.cli import main

from .conftest import ROOT


def write_tiny_notebook(path: Path) -> Path:
    """A parameters cell (``x``, ``y``, ``mode``), a cell that fails (``raise``) or kills the process
    running the notebook (``die``) when asked, and a cell gluing ``product = x * y``."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('x = 1\ny = 0.5\nmode = "ok"  # ok | raise | die')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell("import os\nimport signal\n\nfrom patchnb.book import glue_text"),
        nbformat.v4.new_code_cell('if mode == "raise":\n    raise ValueError("asked to fail")\n'
                                  'if mode == "die":\n    os.kill(os.getppid(), signal.SIGKILL)'),
        nbformat.v4.new_code_cell('glue_text("product", x * y)\nglue_text("label", f"x={x}")'),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(path))
    return path


GRID_2X2 = "x: [1, 2]\ny: [0.5, 2.0]\n"


@pytest.fixture
def tiny(tmp_path):
    return write_tiny_notebook(tmp_path / "tiny.ipynb")


def _grid(tmp_path, text, name="grid.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- grids


def test_mapping_is_the_cartesian_product():
    points = sw.expand_grid({"x": [1, 2], "y": [0.5, 2.0], "scale": "smoke"})
    assert points == [{"x": 1, "y": 0.5, "scale": "smoke"}, {"x": 1, "y": 2.0, "scale": "smoke"},
                      {"x": 2, "y": 0.5, "scale": "smoke"}, {"x": 2, "y": 2.0, "scale": "smoke"}]


def test_list_of_points_and_both_yaml_forms(tmp_path):
    listed = sw.load_grid(_grid(tmp_path, "- {x: 1, seeds: [0, 1]}\n- {x: 2}\n", "list.yaml"))
    assert listed == [{"x": 1, "seeds": [0, 1]}, {"x": 2}]
    mapped = sw.load_grid(_grid(tmp_path, GRID_2X2, "map.yaml"))
    assert len(mapped) == 4 and {p["x"] for p in mapped} == {1, 2}


@pytest.mark.parametrize("grid", [None, {}, [], {"x": [1], "y": []}])
def test_empty_grid_is_an_error(grid):
    with pytest.raises(sw.SweepError, match="empty"):
        sw.expand_grid(grid)


@pytest.mark.parametrize("grid, match", [
    ("x", "must be a mapping"),
    ([{"x": 1}, 3], "point 1 is a int"),
    ({1: [2]}, "not a parameter name"),
    ({"x": [1, 1]}, "appears twice"),
    ([{"x": 1, "y": 2}, {"y": 2, "x": 1}], "appears twice"),
    ({"day": [datetime.date(2024, 1, 1)]}, "not a plain value"),
])
def test_bad_grid_shapes(grid, match):
    with pytest.raises(sw.SweepError, match=match):
        sw.expand_grid(grid)


def test_grid_files(tmp_path):
    with pytest.raises(sw.SweepError, match="no such file"):
        sw.load_grid(tmp_path / "missing.yaml")
    with pytest.raises(sw.SweepError, match="not valid YAML"):
        sw.load_grid(_grid(tmp_path, "x: [1, 2\n"))


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))


def test_a_grid_too_large_is_refused_before_it_is_expanded(monkeypatch):
    monkeypatch.setattr(sw.itertools, "product", lambda *a: pytest.fail("the grid was expanded"))
    with pytest.raises(sw.SweepError, match=r"100,000,000 points \(10000 x x 10000 y\).*10,000.*MAX_GRID_POINTS"):
        sw.expand_grid({"x": list(range(10_000)), "y": list(range(10_000))})
    with pytest.raises(sw.SweepError, match=r"10,001 points"):
        sw.expand_grid([{"x": i} for i in range(sw.MAX_GRID_POINTS + 1)])
    monkeypatch.undo()
    assert len(sw.expand_grid({"x": list(range(100)), "y": list(range(100))})) == sw.MAX_GRID_POINTS  # at the limit


def test_yaml_aliases_are_refused(tmp_path):
    """A "billion laughs" grid (nested aliases, 10^9 values from ten lines) is refused as it is read."""
    with pytest.raises(sw.SweepError, match=r"line 2 uses the YAML alias \*a; aliases are not allowed"):
        sw.load_grid(_grid(tmp_path, BILLION_LAUGHS))
    with pytest.raises(sw.SweepError, match=r"alias \*base"):
        sw.load_grid(_grid(tmp_path, "base: &base [1, 2]\nx: *base\n"))
    assert sw.load_grid(_grid(tmp_path, "x: &anchor [1, 2]\n")) == [{"x": 1}, {"x": 2}]  # an anchor alone is fine


def test_a_grid_file_too_large_is_refused(tmp_path):
    path = _grid(tmp_path, "x: [" + "1, " * (sw.MAX_GRID_BYTES // 3) + "1]\n")
    with pytest.raises(sw.SweepError, match=r"bytes, more than the 4,000,000 a grid file may have"):
        sw.load_grid(path)


@pytest.mark.parametrize("text, message", [
    (BILLION_LAUGHS, "uses the YAML alias *a"),
    ("x: [" + ", ".join(map(str, range(200))) + "]\ny: [" + ", ".join(map(str, range(200))) + "]\n",
     "40,000 points (200 x x 200 y), more than the 10,000"),
])
def test_sweep_of_a_huge_grid_is_one_line(tiny, tmp_path, capsys, text, message):
    out = tmp_path / "out"
    rc = main(["sweep", str(tiny), "--grid", str(_grid(tmp_path, text)), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_point_names_and_default_folder():
    assert sw.point_id({"x": 1, "y": 2.0}) == sw.point_id({"y": 2.0, "x": 1}) != sw.point_id({"x": 2, "y": 2.0})
    points = sw.expand_grid({"x": [1, 2]})
    assert sw.default_out("notebooks/tiny.ipynb", points) == Path("runs/sweeps") / f"tiny-{sw.grid_id(points)}"
    assert sw.grid_id(points) == sw.grid_id(points[::-1])


# ----------------------------------------------------------------------------- bad input: one line, exit 2


@pytest.mark.parametrize("grid, extra, message", [
    ("x: [1]\nz: [3]\n", [], "tiny.ipynb has no parameter(s) ['z']"),
    ("x: [1, two]\n", [], "parameter x='two' is a str, but its default 1 is a int"),
    ("mode: [ok, maybe]\n", [], "parameter mode='maybe' is not one of ['ok', 'raise', 'die']"),
    ("{}\n", [], "is empty"),
    ("x: [1]\n", ["--executor", "cloud"], "executor='cloud' is not supported; allowed values: 'local', 'slurm'"),
    ("x: [1]\n", ["--executor", "slurm", "--time", "0"], "--time must be >= 1"),
])
def test_bad_input_is_one_line_and_nothing_runs(tiny, tmp_path, capsys, grid, extra, message):
    out = tmp_path / "out"
    rc = main(["sweep", str(tiny), "--grid", str(_grid(tmp_path, grid)), "--out", str(out), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("patchnb sweep: error: ")
    assert message in err
    assert not list(out.glob("*.params.json"))


def test_missing_notebook(tmp_path, capsys):
    rc = main(["sweep", str(tmp_path / "nope.ipynb"), "--grid", str(_grid(tmp_path, "x: [1]\n"))])
    assert rc == 2 and "no notebook at" in capsys.readouterr().err


def test_slurm_without_sbatch(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    rc = main(["sweep", str(tiny), "--grid", str(_grid(tmp_path, "x: [1]\n")), "--executor", "slurm",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "Slurm is not reachable: no `sbatch` on PATH" in err


def test_slurm_whose_sbatch_fails(tiny, tmp_path, capsys, monkeypatch):
    """A cluster whose controller is down: sbatch exits 1; the error names sbatch and says why."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scripts = {"sbatch": "echo 'sbatch: error: Batch job submission failed: Unable to contact slurm controller "
                         "(connect failure)' >&2; exit 1",
               "srun": "exit 1", "squeue": "exit 0"}
    for name, body in scripts.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    rc = main(["sweep", str(tiny), "--grid", str(_grid(tmp_path, "x: [1, 2]\n")), "--executor", "slurm",
               "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "Slurm is not reachable: `sbatch` failed" in err and "Unable to contact slurm controller" in err
    assert not list(out.glob("*.params.json"))  # nothing recorded as submitted


def test_collect_of_an_empty_folder(tmp_path):
    with pytest.raises(sw.SweepError, match="no sweep in"):
        sw.collect(tmp_path)


# ----------------------------------------------------------------------------- the local executor


def _patchnb(*args, cwd):
    return subprocess.run([sys.executable, "-m", "patchnb", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """``patchnb sweep tiny.ipynb --grid grid.yaml --jobs 2`` run once for the tests below."""
    work = tmp_path_factory.mktemp("sweep")
    write_tiny_notebook(work / "tiny.ipynb")
    (work / "grid.yaml").write_text(GRID_2X2)
    run = _patchnb("sweep", "tiny.ipynb", "--grid", "grid.yaml", "--jobs", "2", cwd=work)
    out = work / sw.default_out("tiny.ipynb", sw.expand_grid({"x": [1, 2], "y": [0.5, 2.0]}))
    return work, out, run


@pytest.mark.slow
def test_local_sweep_collects_every_point(local_sweep):
    work, out, run = local_sweep
    assert run.returncode == 0, run.stderr
    assert "4 points, 0 finished earlier, 0 still queued, 4 to run (local)" in run.stdout
    table = sw.collect(out)
    assert list(table["status"]) == ["done"] * 4
    assert sorted(zip(table["x"], table["y"], table["product"])) == [(1, 0.5, 0.5), (1, 2.0, 2.0),
                                                                      (2, 0.5, 1.0), (2, 2.0, 4.0)]
    assert table["product"].dtype.kind == "f" and set(table["label"]) == {"x=1", "x=2"}
    for row in table.itertuples():  # one executed notebook, record and log per point, named by its hash
        params = json.loads(row.parameters)
        assert row.point == sw.point_id(params)
        assert (out / f"{row.point}.ipynb").is_file() and Path(row.log).is_file()
        assert json.loads((out / f"{row.point}.params.json").read_text())["parameters"] == params
    on_disk = (out / "results.csv").read_text().splitlines()
    assert on_disk[0].startswith("point,status,error,log,seconds,parameters,x,y,") and len(on_disk) == 5
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or ".partial." in p.name]


@pytest.mark.slow
def test_local_resubmission_runs_nothing(local_sweep):
    work, out, _ = local_sweep
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.ipynb")}
    again = _patchnb("sweep", "tiny.ipynb", "--grid", "grid.yaml", cwd=work)
    assert again.returncode == 0, again.stderr
    assert "4 points, 4 finished earlier, 0 still queued, 0 to run" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.ipynb")} == before
    # a point whose executed notebook records other parameters is not finished
    pid = sw.point_id({"x": 1, "y": 0.5})
    assert sw._executed(out, pid, {"x": 1, "y": 0.5}) and not sw._executed(out, pid, {"x": 1, "y": 0.25})


@pytest.mark.slow
def test_failed_points_are_reported_with_their_log(tiny, tmp_path):
    """A cell that raises and a process that dies: both are rows with status failed, their error and log,
    and the command exits 2 with one line naming them."""
    grid = _grid(tmp_path, "- {x: 3, mode: raise}\n- {x: 4, mode: die}\n")
    out = tmp_path / "out"
    run = _patchnb("sweep", tiny, "--grid", grid, "--out", out, "--jobs", "2", cwd=tmp_path)
    err = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 2 and err.startswith("patchnb sweep: error: 2 of 2 points failed"), run.stderr
    table = sw.collect(out)
    assert list(table["status"]) == ["failed", "failed"]
    raised, died = table.iloc[0], table.iloc[1]
    assert raised["error"] == "ValueError: asked to fail"
    assert "asked to fail" in Path(raised["log"]).read_text()
    assert died["error"] == "the point's process was killed by SIGKILL without a result"
    assert Path(died["log"]).is_file()
    for row in (raised, died):
        assert f"point {row['point']}" in err and row["log"] in err
    assert not list(out.glob("*.ipynb")) or all(".failed." in p.name or ".partial." in p.name
                                               for p in out.glob("*.ipynb"))


def test_the_command_is_registered():
    run = subprocess.run([sys.executable, "-m", "patchnb", "sweep", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert run.returncode == 0 and "--array-parallelism" in run.stdout and "--no-wait" in run.stdout
