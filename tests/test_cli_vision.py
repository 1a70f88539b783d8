"""`patchnb vision`: a tiny run on synthetic-silhouette stimuli with its shape bias, an interrupted run (one
epoch of two) resumed to the same model as an uninterrupted one, transfer with a frozen backbone on
combined data, evaluation of a saved run, `--dry-run`, and bad options (exit code 2, the option named)."""

import json
import shlex

import pytest
import torch

from patchnb import cli
from patchnb.cli_run import EXIT_STOPPED
from patchnb.cli_vision import combine, main
from patchnb.data import ImageData, Normalization, Splits
from patchnb.eval import load_backbone
from patchnb.models.vision import make_vision_model
from tests.test_cli_ssl import one_thread  # noqa: F401  (autouse: one torch thread)

STIMULI = "--masks synthetic --masks-per-class 6 --test-masks-per-class 3 --n-train 64 --n-val 32 --n-test 32 " \
          "--n-conflict 40 --image-size 16 --width 4 --epochs 2 --batch-size 32 --device cpu"


def summary(folder) -> dict:
    s = json.loads((folder / "summary.json").read_text())
    return {k: v for k, v in s.items() if k not in ("run_dir", "train_seconds")}


def weights(folder) -> dict:
    """The whole model (backbone and head) of a finished run folder, read with the one loader."""
    return load_backbone(folder / "result.pt", make_vision_model("resnet", 1, 10, 16, 4)).state_dict()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An interrupted-then-resumed run and an uninterrupted one of the same command."""
    root = tmp_path_factory.mktemp("vision")
    run, whole = root / "run", root / "whole"
    assert main(shlex.split(f"{STIMULI} --run-dir {run} --time-budget 0")) == EXIT_STOPPED
    assert not (run / "result.pt").exists() and (run / "last.pt").is_file()
    assert main(shlex.split(f"{STIMULI} --run-dir {run}")) == 0
    assert cli.main(shlex.split(f"vision {STIMULI} --run-dir {whole}")) == 0  # through `patchnb vision`
    return run, whole


def test_resume_is_exact(trained):
    run, whole = trained
    a, b = weights(run), weights(whole)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    s = summary(run)
    assert s == summary(whole)
    assert s["epochs_run"] == 2 and 0 <= s["test_accuracy"] <= 1 and 0 <= s["shape_bias"] <= 1
    assert s["data"].startswith("stimuli-stylized: 64 train")
    assert s["conflict_shape_fraction"] + s["conflict_texture_fraction"] <= 1


def test_eval_only_reproduces_the_run(trained, capsys):
    run, _ = trained
    capsys.readouterr()
    assert main(shlex.split(f"{STIMULI} --eval-only --load {run}")) == 0
    out = capsys.readouterr().out
    s = summary(run)
    assert f"test_accuracy: {s['test_accuracy']:.4f}" in out and f"shape_bias: {s['shape_bias']:.4f}" in out


def test_frozen_transfer_on_combined_data(trained, tmp_path):
    run, _ = trained
    out = tmp_path / "frozen"
    assert main(shlex.split(f"{STIMULI} --load {run} --frozen --combined-data --epochs 1 --run-dir {out}")) == 0
    s = summary(out)
    assert s["data"].startswith("stimuli-combined: 128 train / 64 val / 32 test")
    before, after = weights(run), weights(out)
    backbone = [k for k in before if k.startswith("backbone.")]
    assert backbone and all(torch.equal(before[k], after[k]) for k in backbone)  # incl. BatchNorm statistics
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_combine_checks_classes():
    def data(classes):
        return ImageData(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1]), classes)

    norm = Normalization((0.5,), (0.25,))
    a = Splits("a", data(("x", "y")), data(("x", "y")), data(("x", "y")), norm)
    both = combine(a, a, "a+a")
    assert len(both.train) == 4 and len(both.test) == 4 and both.classes == ("x", "y")
    b = Splits("b", data(("x", "z")), data(("x", "z")), data(("x", "z")), norm)
    with pytest.raises(ValueError, match="different classes"):
        combine(a, b, "a+b")


def test_dry_run(capsys):
    capsys.readouterr()
    assert main(["--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    t, o = out["train"], out["options"]
    assert (t["epochs"], t["batch_size"], t["lr"], t["patience"], t["schedule"], t["step_epochs"], t["seed"]) == \
        (80, 64, 0.1, 5, "staircase", 20, 123)
    assert (o["model"], o["dataset"], o["train_kind"], o["n_train"], o["masks"]) == \
        ("resnet", "stimuli", "stylized", 2000, "fashion_mnist")
    assert out["run_dir"].endswith("resnet-stimuli-seed123")
    out = main(["--dry-run", "--patience", "0", "--model", "vit", "--dataset", "cifar10"])
    assert out == 0 and json.loads(capsys.readouterr().out)["train"]["patience"] is None


def test_bad_options(tmp_path, capsys):
    capsys.readouterr()
    for argv, word in (("--frozen", "--load"), ("--eval-only", "--load"), ("--load nowhere", "nowhere"),
                       ("--model alexnet", "--model"), ("--dataset cifar10 --n-train 5", "--n-train"),
                       ("--dataset cifar10 --combined-data", "--combined-data"),
                       ("--dataset imagefolder", "--data-root"),
                       (f"--dataset imagefolder --data-root {tmp_path} --combined-data", "--combined-root"),
                       ("--combined-root x", "--combined-root"), ("--train-size 10", "--n-train"),
                       ("--patience -1", "--patience"), ("--n-conflict 0", "--n-conflict"),
                       ("--texture-strength 2", "--texture-strength"), ("--lr 0", "lr"), ("--width 0", "--width")):
        assert main(shlex.split(argv + " --dry-run")) == 2, argv
        err = capsys.readouterr().err
        assert word in err and len(err.strip().splitlines()) == 1, (argv, err)
    for argv in ("--optimizer rmsprop", "--train-kind photo", "--augment maybe", "--epochs x"):
        with pytest.raises(SystemExit) as e:
            main(shlex.split(argv + " --dry-run"))
        assert e.value.code == 2 and argv.split()[0] in capsys.readouterr().err, argv
