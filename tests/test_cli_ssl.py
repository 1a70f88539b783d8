"""`patchnb emp-ssl`, `patchnb supcon`, `patchnb ssl`: tiny runs on synthetic data, an interrupted run
(a time budget of one epoch out of two) resumed to the very same weights as an uninterrupted one, the
checkpoint layout `patchnb sweep-checkpoints` reads, `--dry-run`, and bad options (exit code 2, the
option named)."""

import json
import shlex

import pytest
import torch
import yaml

from patchnb import cli
from patchnb.cli_emp import main_emp_ssl
from patchnb.cli_ssl import EXIT_STOPPED, main_ssl, main_supcon

DATA = "--dataset synthetic --train-size 48 --val-size 24 --test-size 24 --batch-size 16 --epochs 2 --device cpu"
EMP = f"train {DATA} --width 4 --hidden-dim 32 --out-dim 16 --n-patches 3"
SMALL = f"{DATA} --width 4"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on a shared machine: one intra-op thread is several times faster than many."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def backbone(path):
    return torch.load(path, weights_only=False)["backbone"]


def same_weights(a, b) -> bool:
    a, b = backbone(a), backbone(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def summary(folder) -> dict:
    s = json.loads((folder / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in ("name", "run_dir", "checkpoints", "train_seconds", "seconds")}


def dry(main, argv: str, capsys) -> dict:
    capsys.readouterr()
    assert main(shlex.split(argv + " --dry-run")) == 0
    return json.loads(capsys.readouterr().out)


def test_emp_ssl_resume_is_exact(tmp_path, capsys):
    logs = tmp_path / "logs"
    folder = logs / "default__numpatch3_bs16_lr0.3"
    assert main_emp_ssl(shlex.split(f"{EMP} --log-folder {logs} --time-budget 0")) == EXIT_STOPPED
    assert "run the same command again" in capsys.readouterr().err
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch_001.pt"]
    hparams = yaml.safe_load((folder / "hparams.yaml").read_text())
    assert hparams["n_patches"] == 3 and hparams["exp_name"] == "default" and "time_budget" not in hparams
    # the folder belongs to its options: other data never resumes it
    assert main_emp_ssl(shlex.split(f"{EMP} --log-folder {logs} --train-size 40")) == 2
    assert "--train-size 48 -> 40" in capsys.readouterr().err
    assert main_emp_ssl(["resume", "--exp-dir", str(folder)]) == 0
    assert "probe_accuracy" in capsys.readouterr().out
    whole = tmp_path / "whole"
    assert main_emp_ssl(shlex.split(f"{EMP} --log-folder {whole}")) == 0
    other = whole / "default__numpatch3_bs16_lr0.3"
    assert same_weights(folder / "checkpoints" / "epoch_002.pt", other / "checkpoints" / "epoch_002.pt")
    assert summary(folder) == summary(other)
    assert 0 <= summary(folder)["probe_accuracy"] <= 1
    # a finished run returns its result; --config-from copies the options but not the name
    out = dry(main_emp_ssl, f"train --config-from {folder} --log-folder {logs} --exp-name copy --lr 0.1", capsys)
    assert out["options"]["n_patches"] == 3 and out["train"]["lr"] == 0.1 and "copy__numpatch3" in out["run_dir"]


def test_emp_ssl_dry_run_and_errors(tmp_path, capsys):
    out = dry(main_emp_ssl, "train", capsys)
    assert out["train"]["optimizer"] == "lars_solo" and out["train"]["lr"] == 0.3 and out["train"]["epochs"] == 2
    assert out["method"]["n_patches"] == 100 and out["options"]["eval_patches"] == 100
    assert out["run_dir"].endswith("default__numpatch100_bs100_lr0.3") and out["options"]["seed"] == 42
    assert main_emp_ssl(["train", "--n-patches", "1", "--dry-run"]) == 2
    assert "n_patches" in capsys.readouterr().err
    assert main_emp_ssl(["train", "--eval-patches", "1", "--dry-run"]) == 2
    assert "--eval-patches" in capsys.readouterr().err
    assert main_emp_ssl(["resume", "--exp-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--exp-dir" in err and "hparams.yaml" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main_emp_ssl(["train", "--bogus"])
    assert e.value.code == 2 and "--bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main_emp_ssl(["resume"])  # --exp-dir is required
    assert "--exp-dir" in capsys.readouterr().err


def test_supcon_checkpoints_resume_and_sweep(tmp_path, capsys):
    run, whole = tmp_path / "run", tmp_path / "whole"
    cmd = f"{SMALL} --save-freq 1 --lr 0.05"
    assert main_supcon(shlex.split(f"{cmd} --run-dir {run} --time-budget 0")) == EXIT_STOPPED
    assert main_supcon(shlex.split(f"{cmd} --run-dir {run}")) == 0
    assert f"patchnb sweep-checkpoints {run / 'checkpoints'}" in capsys.readouterr().out
    assert main_supcon(shlex.split(f"{cmd} --run-dir {whole} --sweep")) == 0
    assert "epoch_002.pt" in capsys.readouterr().out
    ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert ckpts == ["epoch_001.pt", "epoch_002.pt"]
    for name in ckpts:
        assert same_weights(run / "checkpoints" / name, whole / "checkpoints" / name)
    s = json.loads((whole / "summary.json").read_text())
    assert s["sweep_best"] in ckpts and 0 <= s["test_accuracy"] <= 1
    # the layout is the one `patchnb sweep-checkpoints` reads
    sweep = f"sweep-checkpoints {run / 'checkpoints'} --dataset synthetic --train-size 48 --val-size 24 " \
            f"--test-size 24 --width 4 --no-progress"
    assert cli.main(shlex.split(sweep)) == 0
    assert "selected on validation" in capsys.readouterr().out


def test_supcon_dry_run_and_errors(capsys):
    out = dry(main_supcon, "", capsys)
    t = out["train"]
    assert (t["epochs"], t["batch_size"], t["lr"], t["weight_decay"], t["milestones"]) == \
        (1000, 256, 0.05, 1e-4, [700, 800, 900])
    assert t["schedule"] == "multistep" and t["warmup_epochs"] == 0 and out["method"]["temperature"] == 0.07
    assert out["method"]["augment"]["blur_prob"] == 0.0 and out["run_dir"].endswith("_temp_0.07_trial_0")
    out = dry(main_supcon, "--cosine --batch-size 512 --lr-decay-epochs 10 --method simclr --trial 3 "
                           "--mean '0.0418, 0.0353, 0.0409' --std 0.0956 0.0911 0.0769", capsys)
    assert out["train"]["schedule"] == "cosine" and out["train"]["warmup_epochs"] == 10  # batch > 256: warm
    assert out["options"]["mean"] == [0.0418, 0.0353, 0.0409] and out["run_dir"].endswith("trial_3_cosine_warm")
    assert out["method"]["name"] == "simclr"
    for argv, word in (("--dataset path", "--data-root"), ("--mean 0.5", "--std"),
                       ("--lr-decay-epochs 7,x", "--lr-decay-epochs"), ("--lr -1", "lr")):
        assert main_supcon(shlex.split(argv + " --dry-run")) == 2, argv
        assert word in capsys.readouterr().err, argv
    for argv in ("--method byol", "--save-freq -1", "--time-budget -5", "--epochs many"):
        with pytest.raises(SystemExit) as e:
            main_supcon(shlex.split(argv + " --dry-run"))
        assert e.value.code == 2 and argv.split()[0] in capsys.readouterr().err, argv


def test_ssl_resume_is_exact(tmp_path, capsys):
    run, whole = tmp_path / "run", tmp_path / "whole"
    cmd = f"simclr {SMALL} --param temperature=0.2 --augment blur_prob=0 --save-proj"
    assert main_ssl(shlex.split(f"{cmd} --run-dir {run} --time-budget 0")) == EXIT_STOPPED
    assert main_ssl(shlex.split(f"{cmd} --run-dir {run}")) == 0
    assert main_ssl(shlex.split(f"{cmd} --run-dir {whole}")) == 0
    a, b = torch.load(run / "result.pt", weights_only=False), torch.load(whole / "result.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert summary(run) == summary(whole) and summary(run)["config"] == "simclr"
    assert (run / "projections.csv").is_file()
    capsys.readouterr()


def test_ssl_momentum_method_trains(tmp_path, capsys):
    params = "--param queue_size=32 --param mochi_n_hard=16 --param mochi_s=8 --param mochi_s_prime=4"
    assert main_ssl(shlex.split(f"mocov2 {SMALL} {params} --out-dim 16 --run-dir {tmp_path / 'moco'}")) == 0
    s = json.loads((tmp_path / "moco" / "summary.json").read_text())
    assert s["method"] == "mocov2" and 0 <= s["knn_accuracy"] <= 1 and s["uniformity"] is not None
    capsys.readouterr()


def test_ssl_dry_run_and_errors(tmp_path, capsys):
    out = dry(main_ssl, "mocov2 --param queue_size=64 --lr 0.01 --train warmup_epochs=2 --augment flip_prob=0",
              capsys)
    assert out["config"]["file"] == "mocov2" and out["config"]["params"]["queue_size"] == 64
    assert out["train"]["lr"] == 0.01 and out["train"]["warmup_epochs"] == 2 and out["train"]["epochs"] == 10
    assert out["train"]["optimizer"] == "sgd"  # from mocov2.yaml
    assert "queue_size=64" in out["method"] and "flip_prob=0" in out["method"]
    other = tmp_path / "my.yaml"
    other.write_text("method: hcl\nparams: {beta: 0.3}\n")
    out = dry(main_ssl, f"hcl --config {other}", capsys)
    assert out["config"]["params"] == {"beta": 0.3}
    assert cli.main(["ssl", "simclr", "--dry-run"]) == 0
    capsys.readouterr()
    for argv, words in (("simclr --param temp=0.2", ("--param temp", "temperature")),
                        ("simclr --param temperature", ("--param", "NAME=VALUE")),
                        ("simclr --augment nope=1", ("--augment nope",)),
                        ("simclr --train epochs=3", ("--train epochs", "own options")),
                        ("mocov2 --param queue_size=0", ("queue_size",)),
                        (f"simclr --config {other}", ("hcl config",)),
                        ("simclr --config nowhere.yaml", ("nowhere.yaml",)),
                        ("simclr --dataset imagefolder", ("--data-root",))):
        assert main_ssl(shlex.split(argv + " --dry-run")) == 2, argv
        err = capsys.readouterr().err
        assert all(w in err for w in words), (argv, err)
    with pytest.raises(SystemExit) as e:
        main_ssl(["byol", "--dry-run"])
    assert e.value.code == 2 and "METHOD" in capsys.readouterr().err
