import pytest
import yaml

from patchnb import book, cli, track

from .conftest import ROOT


def test_pm_format():
    assert book.pm(0.9123, 0.0031) == "91.2 ± 0.3"


def test_run_record(tmp_path):
    r = track.Run("demo", {"lr": 0.1, "shape": (1, 2)}, tmp_path)
    r.log({"loss": 1.5}, step=0)
    rec = r.finish(best=0.9)
    on_disk = track.load_record(tmp_path)
    assert on_disk["config"] == {"lr": 0.1, "shape": [1, 2]} and on_disk["summary"] == {"best": 0.9}
    assert on_disk["history"] == [{"loss": 1.5, "step": 0}] and rec["code_version"] == on_disk["code_version"]


def test_wandb_is_never_required(monkeypatch):
    monkeypatch.setenv("PATCHNB_WANDB", "1")
    monkeypatch.setitem(__import__("sys").modules, "wandb", None)  # import fails
    assert track.wandb_wanted() is False


def test_toc_lists_existing_notebooks():
    names = cli.toc_notebooks(ROOT)
    assert "dictionary" in names and "intrinsic_dimension" in names


def test_cli_rejects_bad_scale(capsys):
    with pytest.raises(SystemExit):
        cli.main(["book", "--scale", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_cli_parameter_values_are_yaml():
    assert cli.parse_value("[0, 1]") == [0, 1] and cli.parse_value("0.5") == 0.5 and cli.parse_value("cpu") == "cpu"


def test_environment_and_pyproject_list_the_same_dependencies():
    import tomllib

    py = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    assert py == pip


def test_cli_delegates_train_and_sweep(capsys):
    for cmd in ("train", "sweep-checkpoints"):
        with pytest.raises(SystemExit) as e:
            cli.main([cmd, "--help"])
        assert e.value.code == 0
        assert f"usage: patchnb {cmd}" in capsys.readouterr().out


def test_code_version_is_scoped_to_the_modules_used():
    names = {p.name for p in track.module_closure({"patchnb.cache"})}
    assert {"cache.py", "checkpoint.py", "data.py", "track.py", "__init__.py"} <= names
    assert {"cluster.py", "embedding.py", "train.py", "book.py"}.isdisjoint(names)  # not imported, transitively
    assert track.code_version({"patchnb.cache"}) == track.code_version({"patchnb.cache", "patchnb.track"})
    assert track.code_version({"patchnb.cache"}) != track.code_version({"patchnb.cluster"})


def test_notebook_modules_parses_imports():
    import json

    nb = {"cells": [{"cell_type": "code", "source": ["import torch\n", "from patchnb import book, cluster\n",
                                                     "import patchnb.data as d\n"]},
                    {"cell_type": "markdown", "source": ["from patchnb import ssl"]}]}
    mods = track.notebook_modules(json.dumps(nb))
    assert {"patchnb.book", "patchnb.cluster", "patchnb.data"} <= mods and "patchnb.ssl" not in mods
