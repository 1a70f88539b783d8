"""No parameter value is ever run as code: every path to papermill (``run -p``, ``run -f``, ``book -p``,
``execute``) refuses a value that is not plain before papermill sees it, naming the parameter."""
import base64
import json

import pytest

from patchnb import build, cli
from patchnb.build import ParameterError, check_plain

# papermill would write these bytes unescaped between quotes in the injected cell: a statement runs
CODE = b'"; import os; os.system("touch marker"); x="'
PAYLOAD = f"!!binary {base64.b64encode(CODE).decode()}"

NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "id": "p", "metadata": {"tags": ["parameters"]},
                       "outputs": [], "source": 'scale = "cpu"  # smoke | cpu | paper\ndataset = None\n'
                                                'seeds = None\nconfig = None\ndevice = "cpu"  # cpu | cuda | auto\n'},
                      {"cell_type": "code", "execution_count": None, "id": "q", "metadata": {}, "outputs": [],
                       "source": "print(dataset)\n"}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def book(tmp_path, monkeypatch):
    """A one-page book in a temporary folder, which is also the working directory."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "nb.ipynb").write_text(json.dumps(NOTEBOOK))
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/nb\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATCHNB_EXECUTED", str(tmp_path / "executed"))
    return tmp_path


def _refused(book, capsys, argv, name):
    rc = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and f"parameter {name}" in err and "not a plain value" in err, err
    assert not (book / "marker").exists()
    return err


def test_run_p_refuses_binary(book, capsys):
    _refused(book, capsys, ["run", "notebooks/nb.ipynb", "-p", "scale", "smoke", "-p", "dataset", PAYLOAD,
                            "-o", "out.ipynb"], "dataset")
    assert not (book / "out.ipynb").exists()


@pytest.mark.parametrize("value", [f"[0, {PAYLOAD}]", f"{{a: {PAYLOAD}}}", f"{{a: [{{b: {PAYLOAD}}}]}}"])
def test_run_p_refuses_binary_inside_a_list_or_dict(book, capsys, value):
    err = _refused(book, capsys, ["run", "notebooks/nb.ipynb", "-p", "config", value], "config")
    assert "config[" in err  # says where inside the value


def test_run_f_refuses_binary(book, capsys):
    (book / "params.yaml").write_text(f"scale: smoke\nseeds: [0, 1]\ndataset: {PAYLOAD}\n")
    err = _refused(book, capsys, ["run", "notebooks/nb.ipynb", "-f", "params.yaml"], "dataset")
    assert "params.yaml" in err


def test_run_f_refuses_yaml_aliases(book, capsys):
    # a few nested aliases expand past any memory ("billion laughs"): refused before anything is built
    (book / "params.yaml").write_text("a: &a [x, x]\nb: &b [*a, *a]\nconfig: [*b, *b]\n")
    rc = cli.main(["run", "notebooks/nb.ipynb", "-f", "params.yaml"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "params.yaml" in err and "alias" in err and len(err.splitlines()) == 1, err


def test_book_p_refuses_binary(book, capsys):
    _refused(book, capsys, ["book", "--scale", "smoke", "--no-html", "-p", "dataset", PAYLOAD], "dataset")
    assert not (book / "executed").exists()


def test_execute_and_build_book_refuse_binary(book):
    """The API below the command line: execute() is the last step before papermill."""
    with pytest.raises(ParameterError, match="parameter dataset"):
        build.execute(book / "notebooks" / "nb.ipynb", book / "out.ipynb", {"dataset": CODE}, book)
    with pytest.raises(ParameterError, match="parameter dataset"):
        build.build_book("smoke", root=book, html=False, extra={"dataset": CODE})
    with pytest.raises(ParameterError, match="parameter dataset"):
        build.check_parameters(book / "notebooks" / "nb.ipynb", {"dataset": CODE})
    assert not (book / "marker").exists() and not (book / "out.ipynb").exists()


@pytest.mark.parametrize("value, where", [
    (b"x", "dataset = b'x' is a bytes"), (float("inf"), "is a float"), (float("nan"), "is a float"),
    ({1: "a"}, "dataset has the key 1, a int"), ({"a": {2, 3}}, "dataset['a'] = {2, 3} is a set"),
    ((1, 2), "is a tuple"), ([0, [1, b"x"]], "dataset[1][1] = b'x'"), (__import__("datetime").date(2020, 1, 1), "date"),
])
def test_check_plain_refuses(value, where):
    with pytest.raises(ParameterError, match=__import__("re").escape(where)):
        check_plain({"dataset": value})


def test_check_plain_accepts_plain_values():
    params = {"a": "s", "b": 1, "c": 0.5, "d": True, "e": None, "f": [1, [2.5, "x"]], "g": {"k": {"j": [None]}}}
    assert check_plain(params) == params


@pytest.mark.parametrize("text", ["2020-01-01", "!!set {a: null}", ".inf", "{1: a}", PAYLOAD])
def test_yaml_values_that_are_not_plain(text):
    with pytest.raises(ParameterError, match="parameter seeds"):
        build.parse_value(text, "seeds")


def test_a_parameter_name_that_is_not_an_identifier_is_refused():
    with pytest.raises(ParameterError, match="is not a parameter name"):
        check_plain({"x=1;import os": 1})


def test_invalid_yaml_value_is_one_line_naming_the_parameter(book, capsys):
    assert cli.main(["run", "notebooks/nb.ipynb", "-p", "seeds", "[0, 1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-p seeds '[0, 1' is not valid YAML" in err, err
