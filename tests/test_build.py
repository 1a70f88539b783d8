"""Parameters are checked against a notebook's parameters cell before it runs; configuration errors are
one line and exit status 2."""
import json

import pytest

from patchnb import cli
from patchnb.build import ParameterError, check_parameters


@pytest.fixture
def notebook(tmp_path):
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "p", "metadata": {"tags": ["parameters"]},
                     "outputs": [], "source": 'scale = "cpu"  # smoke | cpu | paper\nseeds = None\nlr = 0.1\n'
                                               'epochs = 2\nfast = False\n'}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_known_parameters_pass(notebook):
    assert check_parameters(notebook, {"scale": "smoke", "seeds": [0, 1], "lr": 1, "epochs": 3, "fast": True}) == {
        "scale": "smoke", "seeds": [0, 1], "lr": 1, "epochs": 3, "fast": True}


@pytest.mark.parametrize("params, match", [
    ({"n_centriods": 8}, r"no parameter\(s\) \['n_centriods'\]; its parameters are \['epochs', 'fast', 'lr', "),
    ({"epochs": "3"}, "epochs='3' is a str, but its default 2 is a int"),
    ({"epochs": 2.5}, "epochs=2.5 is a float"),
    ({"lr": "fast"}, "lr='fast' is a str"),
    ({"fast": 1}, "fast=1 is a int"),
    ({"epochs": True}, "epochs=True is a bool"),
    ({"scale": "huge"}, r"scale='huge' is not one of \['smoke', 'cpu', 'paper'\]"),
])
def test_bad_parameters_are_refused(notebook, params, match):
    with pytest.raises(ParameterError, match=match):
        check_parameters(notebook, params)


def test_book_wide_parameters_go_to_notebooks_that_have_them(notebook):
    assert check_parameters(notebook, {"scale": "smoke", "device": "cuda"}, strict=False) == {"scale": "smoke"}


def test_cli_run_refuses_a_misspelt_parameter_before_executing(notebook, tmp_path, capsys):
    out = tmp_path / "out.ipynb"
    assert cli.main(["run", str(notebook), "-p", "n_centriods", "8", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "n_centriods" in err and len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("content, match", [(None, "no such file"), ("a: [1", "not valid YAML"),
                                            ("- 1\n- 2\n", "must hold a mapping")])
def test_cli_run_parameters_file_errors(notebook, tmp_path, capsys, content, match):
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    assert cli.main(["run", str(notebook), "-f", str(path)]) == 2
    assert match in capsys.readouterr().err


def test_python_dash_m_patchnb(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "patchnb", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "patchnb" in r.stdout


def test_book_refuses_a_scale_parameter_that_contradicts_scale(tmp_path, capsys, monkeypatch):
    from patchnb.build import build_book

    from .conftest import ROOT

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(cli, "build_book", lambda *a, **k: pytest.fail("built despite contradicting parameters"))
    assert cli.main(["book", "--scale", "smoke", "-p", "scale", "paper"]) == 2
    err = capsys.readouterr().err
    assert "-p scale 'paper' contradicts --scale smoke" in err and len(err.strip().splitlines()) == 1
    assert cli.main(["book", "--device", "cpu", "-p", "device", "cuda"]) == 2
    assert "-p device 'cuda' contradicts --device cpu" in capsys.readouterr().err
    with pytest.raises(ParameterError, match=r"parameter scale='paper' contradicts the build's scale 'smoke'"):
        build_book("smoke", root=ROOT, site=tmp_path / "site", output=tmp_path, extra={"scale": "paper"})
    assert not (tmp_path / "site").exists()


def test_book_accepts_a_scale_parameter_that_agrees(monkeypatch):
    from .conftest import ROOT

    monkeypatch.chdir(ROOT)
    seen = {}
    monkeypatch.setattr(cli, "build_book", lambda scale, jobs, **k: seen.update(k["extra"], build=scale) or {})
    assert cli.main(["book", "--scale", "smoke", "-p", "scale", "smoke", "-p", "device", "cpu"]) == 0
    assert seen == {"build": "smoke", "scale": "smoke", "device": "cpu"}
