"""The SupCon checkpoint-sweep recipe (patchnb.experiments.supcon_sweep) at smoke scale: pinned numbers (those
the notebook produced before the recipe moved into the package), the TrainConfig built from
ssl/configs/supcon.yaml with the presets' overrides, and validation naming the parameter."""

import matplotlib
import pytest

matplotlib.use("Agg")

from patchnb.experiments import supcon_sweep as exp  # noqa: E402

from ..conftest import needs_fmnist  # noqa: E402


@pytest.mark.slow
@needs_fmnist
def test_smoke_numbers_are_pinned():
    result = exp.run(exp.Config.preset("smoke"))
    n, t = result.numbers, result.text
    assert n["n_ckpts"] == 2 and n["best_epoch"] == 2 and n["ce_best_epoch"] == 1
    assert n["best_val"] == pytest.approx(0.6875, abs=1e-6) and n["last_val"] == pytest.approx(0.6875, abs=1e-6)
    assert n["spread"] == pytest.approx(0.015625, abs=1e-6)
    assert n["sup_accuracy"] == pytest.approx(0.6875, abs=1e-6)
    assert n["sup_precision"] == pytest.approx(0.68905, abs=1e-4)
    assert n["sup_recall"] == pytest.approx(0.65504, abs=1e-4)
    assert n["sup_f1"] == pytest.approx(0.66340, abs=1e-4)
    assert n["ce_accuracy"] == pytest.approx(0.09375, abs=1e-6)
    assert t["best_ckpt"] == "epoch_002.pt (epoch 2)" and t["verdict"] == "above" and t["diff"] == "59.4"
    assert "batch 64, SGD lr 0.05" in t["setup"] and "scale=smoke" in t["data_desc"]
    sweep = result.tables["tab_sweep"]
    assert sweep["val_accuracy"].tolist() == [67.19, 68.75] and sweep["weight_decay"].tolist() == [0.01, 0.001]
    assert list(result.tables["tab_test"].columns) == ["model", "accuracy", "precision", "recall", "f1"]
    assert set(result.figures) == {"fig_sweep", "fig_confusion"}


def test_train_config_reads_the_yaml():
    smoke = exp.Config.preset("smoke").train_config(0)
    assert (smoke.batch_size, smoke.lr, smoke.epochs, smoke.warmup_epochs) == (64, 0.05, 2, 0)
    assert (smoke.optimizer, smoke.momentum, smoke.weight_decay, smoke.schedule) == ("sgd", 0.9, 1e-4, "cosine")
    cpu = exp.Config.preset("cpu").train_config(1)
    assert (cpu.batch_size, cpu.lr, cpu.epochs, cpu.warmup_epochs, cpu.seed) == (128, 0.05, 10, 1, 1)
    paper = exp.Config.preset("paper").train_config(0)  # the YAML's own batch and lr
    assert (paper.batch_size, paper.lr, paper.epochs, paper.warmup_epochs) == (256, 0.125, 1000, 1)
    assert exp.Config.preset("cpu", epochs=5, every=1).train_config(0).warmup_epochs == 0
    assert exp.Config.BUDGET == "epochs" and exp.Config.preset("paper").at_budget(0.5).epochs == 500


def test_imagefolder_parameters():
    cfg = exp.Config.preset("cpu", dataset="imagefolder", data_root="/data/x", image_size=64,
                            mean=[0.0418, 0.0353, 0.0409], std=[0.0956, 0.0911, 0.0769])
    assert cfg.mean == (0.0418, 0.0353, 0.0409) and cfg.key()["data_root"] == "/data/x"


@pytest.mark.parametrize("overrides, name", [
    ({"seeds": [0, 1]}, "seeds"), ({"dataset": "mnist"}, "dataset"), ({"dataset": "imagefolder"}, "data_root"),
    ({"mean": [0.5]}, "mean"), ({"mean": [0.5], "std": [0.0]}, "std"), ({"mean": [0.5, 0.5], "std": [0.2]}, "mean"),
    ({"every": 3}, "every"), ({"epochs": 0}, "epochs"), ({"width": 0}, "width"), ({"batch_size": 1}, "batch_size"),
    ({"lr": 0.0}, "lr"), ({"n_val": 0}, "n_val"), ({"image_size": 0}, "image_size"),
])
def test_bad_parameters_name_themselves(overrides, name):
    with pytest.raises(ValueError, match=name):
        exp.Config.preset("smoke", **overrides)
