"""``patchnb runs``: list the cached runs, ``--clean [--older-than AGE] [--name PATTERN]`` removes them."""

import json
import os
import time

import pytest
import torch
from filelock import FileLock

from patchnb import cache, cli


def make_runs():
    cache.cached("patch_run", {"k": 8, "n": 32}, lambda d: {"results": [{"test_acc": 0.75, "val_acc": 0.7}],
                                                            "config": {"lr": 0.1}, "w": torch.zeros(1000)})
    cache.cached("ssl_zoo", {"row": "simclr"}, lambda d: {"eval": {"probe_accuracy": 0.5}, "history": [1.0]})
    old = next(cache.runs_dir().glob("patch_run-*"))
    week_ago = time.time() - 8 * 86400
    for p in old.iterdir():
        os.utime(p, (week_ago, week_ago))
    return old


def runs_json(capsys, *args):
    assert cli.main(["runs", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_runs_lists_name_config_metrics_seconds_code_and_size(tmp_cache, capsys):
    make_runs()
    rows = runs_json(capsys)
    assert [r["name"] for r in rows] == ["ssl_zoo", "patch_run"]  # newest first
    patch = rows[1]
    assert patch["config"] == {"k": 8, "n": 32}
    assert patch["metrics"] == {"results.0.test_acc": 0.75, "results.0.val_acc": 0.7}  # not the config's lr
    assert patch["seconds"] >= 0 and patch["size"] > 4000 and patch["complete"]  # the 1000 float32 weights
    assert patch["code_version"] and patch["age"] > 7 * 86400
    assert rows[0]["metrics"] == {"eval.probe_accuracy": 0.5}
    assert cli.main(["runs"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["name", "key", "seconds", "age"]
    assert table[2].startswith("patch_run") and "k=8, n=32" in table[2] and "results.0.test_acc=0.75" in table[2]
    assert table[-1].startswith("2 run(s)")


def test_clean_older_than_and_name(tmp_cache, capsys):
    old = make_runs()
    assert cli.main(["runs", "--clean", "--older-than", "7d", "--dry-run"]) == 0
    assert "0 of 1 selected run(s) removed" in capsys.readouterr().out and old.exists()
    assert cli.main(["runs", "--clean", "--older-than", "7d"]) == 0
    assert "1 of 1 selected run(s) removed" in capsys.readouterr().out
    assert not old.exists() and [r["name"] for r in runs_json(capsys)] == ["ssl_zoo"]
    assert cli.main(["runs", "--clean", "--name", "patch_*"]) == 0  # nothing left that matches
    assert "0 of 0" in capsys.readouterr().out
    assert cli.main(["runs", "--clean", "--name", "ssl_*"]) == 0
    assert "1 of 1" in capsys.readouterr().out and runs_json(capsys) == []


def test_a_run_being_computed_is_not_removed(tmp_cache, capsys):
    make_runs()
    busy = next(cache.runs_dir().glob("ssl_zoo-*"))
    with FileLock(busy / ".lock"):
        assert cli.main(["runs", "--clean"]) == 0
        out = capsys.readouterr().out
    assert "kept (being computed)" in out and busy.exists() and "1 of 2 selected run(s) removed" in out


def test_an_incomplete_run_is_listed_and_cleanable(tmp_cache, capsys):
    (cache.runs_dir() / "ssl_zoo-0123456789ab").mkdir()
    (cache.runs_dir() / "ssl_zoo-0123456789ab" / "last.pt").write_bytes(b"x" * 10)
    rows = runs_json(capsys)
    assert rows[0]["name"] == "ssl_zoo" and rows[0]["key"] == "0123456789ab" and not rows[0]["complete"]
    assert cli.main(["runs"]) == 0 and "(incomplete)" in capsys.readouterr().out
    assert cli.main(["runs", "--clean"]) == 0 and "1 of 1" in capsys.readouterr().out
    assert runs_json(capsys) == []


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800),
                                           ("2w", 1209600), ("1.5", 129600)])
def test_ages(text, seconds):
    assert cache.parse_age(text) == seconds


def test_bad_age_is_a_one_line_error(tmp_cache, capsys):
    assert cli.main(["runs", "--clean", "--older-than", "soon"]) == 2
    err = capsys.readouterr().err
    assert "--older-than" in err and "'soon'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("record", ["[1, 2, 3]", '"a string"', "{not json",
                                    '{"name": 5, "config": [1], "seconds": "x"}'])
def test_a_bad_run_record_is_reported_and_skipped(tmp_cache, capsys, record):
    """A ``run.json`` that is no record (a list, a string, broken JSON, fields of the wrong type) is named in a
    warning and left out; the run is still listed from its ``cached.pt`` and can be cleaned."""
    make_runs()
    folder = next(cache.runs_dir().glob("ssl_zoo-*"))
    (folder / "run.json").write_text(record)
    with pytest.warns(UserWarning, match=r"ssl_zoo-.*run\.json"):
        rows = runs_json(capsys)
    row = next(r for r in rows if r["folder"] == str(folder))
    assert row["name"] == "ssl_zoo" and row["complete"] and isinstance(row["config"], (dict, type(None)))
    with pytest.warns(UserWarning, match=r"run\.json"):
        assert cli.main(["runs"]) == 0
    assert "ssl_zoo" in capsys.readouterr().out
    with pytest.warns(UserWarning, match=r"run\.json"):
        assert cli.main(["runs", "--clean", "--name", "ssl_*"]) == 0
    assert "1 of 1" in capsys.readouterr().out and not folder.exists()


def test_clean_reports_a_folder_it_could_not_remove(tmp_cache, capsys, monkeypatch):
    make_runs()

    def fail(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cache.shutil, "rmtree", fail)
    assert cli.main(["runs", "--clean", "--name", "ssl_*"]) == 0
    out = capsys.readouterr().out
    assert "kept (PermissionError" in out and "0 of 1 selected run(s) removed" in out, out
