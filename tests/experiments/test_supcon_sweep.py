"""The SupCon checkpoint-sweep recipe (patchnb.experiments.supcon_sweep) at smoke scale: pinned numbers, the
claim decided by the book's rule from the runs of the budget curve (epochs), the TrainConfig built from
ssl/configs/supcon.yaml with the presets' overrides, and validation naming the parameter."""

import matplotlib
import pytest

matplotlib.use("Agg")

from patchnb.eval.probe import WEIGHT_DECAYS  # noqa: E402
from patchnb.experiments import supcon_sweep as exp  # noqa: E402
from patchnb.experiments.verdict import budget_verdict  # noqa: E402

from ..conftest import needs_fmnist  # noqa: E402
from ..pins import ACCURACY, ACCURACY_DIFF, trained  # noqa: E402

#: smoke numbers recorded on an Intel host with AMX: 3 epochs over seeds 0 and 1. Per budget (epochs) per seed (0, 1):
#: (SupCon test accuracy, cross-entropy test accuracy). trained: band ACCURACY (tests/pins.py; measured between
#: hosts: 0.035). Cross-entropy stays near chance at 4-12 steps; SupCon + head is far above it at every budget.
BUDGET_RUNS = {1: [(0.62890625, 0.09375), (0.58203125, 0.09375)], 2: [(0.6875, 0.09375), (0.58984375, 0.09375)],
               3: [(0.71875, 0.16015625), (0.578125, 0.09375)]}
#: trained: the rule's word on the claim; the same on both hosts measured (a gap of 52-56 points, +- 7)
CLAIM = "holds"
#: trained: the page's run (seed 0, 3 epochs): its checkpoint sweep and test scores
PAGE = {"best_val": 0.6875, "last_val": 0.65625, "spread": 0.03125, "sup_accuracy": 0.71875,
        "sup_precision": 0.71711, "sup_recall": 0.68517, "sup_f1": 0.69161, "ce_accuracy": 0.16015625}


@pytest.mark.slow
@needs_fmnist
@pytest.mark.pinned
def test_smoke_numbers_are_pinned():
    result = exp.run(exp.Config.preset("smoke"))
    n, t = result.numbers, result.text
    assert n["n_ckpts"] == 3  # exact: a checkpoint per epoch
    assert n["best_epoch"] in (1, 2, 3) and n["ce_best_epoch"] in (1, 2, 3)  # trained: which epoch validates best
    assert {k: n[k] for k in PAGE} == trained(PAGE, ACCURACY)  # trained
    # the words follow this run's numbers
    best = int(n["best_epoch"])
    assert t["best_ckpt"] == f"epoch_{best:03d}.pt (epoch {best})"
    assert t["diff"] == f"{100 * (n['sup_accuracy'] - n['ce_accuracy']):+.1f}"
    sweep = result.tables["tab_sweep"]
    assert sweep["epoch"].tolist() == [1, 2, 3] and sweep["val_accuracy"].max() == pytest.approx(100 * n["best_val"],
                                                                                               abs=0.005)
    assert set(sweep["weight_decay"]) <= set(WEIGHT_DECAYS)  # selected on validation from the probe's grid
    assert n["claim_supcon_diff"] == trained(0.521484375, ACCURACY_DIFF)  # trained
    assert "batch 64, SGD lr 0.05" in t["setup"] and "scale=smoke" in t["data_desc"]
    assert list(result.tables["tab_test"].columns) == ["model", "accuracy", "precision", "recall", "f1"]
    assert set(result.figures) == {"fig_sweep", "fig_confusion", "fig_budget"}
    runs = result.runs["budgets"]
    assert list(runs) == [1, 2, 3] and all(len(at) == 2 for at in runs.values())
    for epochs, at in runs.items():
        for r, (sup, ce) in zip(at, BUDGET_RUNS[epochs]):
            assert (r["test"]["accuracy"], r["ce_test"]["accuracy"]) == trained((sup, ce), ACCURACY)  # trained
        assert all(len(r["rows"]) == epochs for r in at)  # every = 1: a checkpoint per epoch
    assert runs[3][0]["test"] == result.runs["test"]  # the full budget's first seed is the page's run
    budgets = list(runs)  # the recipe's word is the rule applied to this run's accuracies, paired by seed
    v = budget_verdict(budgets, [[r["test"]["accuracy"] for r in runs[b]] for b in budgets],
                       [[r["ce_test"]["accuracy"] for r in runs[b]] for b in budgets], claimed="greater", paired=True)
    assert t["claim_supcon"] == v.word == CLAIM and t["claim_supcon_gap"] == v.gap()
    assert n["claim_supcon_diff"] == pytest.approx(v.diffs[-1])
    assert t["budget_epochs"] == "1, 2, 3" and t["budget_seeds"] == "2 seeds (0, 1)"
    ax = result.figures["fig_budget"].axes[0]
    assert ax.get_xlabel().startswith("training epochs") and len(ax.containers) == 2


def test_budget_configs_scale_the_epochs():
    cpu = exp.Config.preset("cpu")
    points = cpu.budget_configs()
    assert [e for e, _ in points] == [2, 5, 10] and points[-1][1] is cpu  # the full budget: the page's runs
    assert [c.every for _, c in points] == [2, 1, 2]  # 5 epochs: a checkpoint every epoch, so epoch 5 is one
    assert [c.train_config(0).warmup_epochs for _, c in points] == [0, 0, 1]
    assert [c.every for _, c in exp.Config.preset("cpu", every=4).budget_configs()] == [2, 1, 4]
    assert [c.every for _, c in exp.Config.preset("cpu", epochs=12, every=3).budget_configs()] == [3, 3, 3]
    assert cpu.seeds == (0, 1) and exp.Config.preset("smoke").seeds == (0, 1)
    with pytest.raises(ValueError, match="not distinct"):
        exp.Config.preset("smoke", epochs=2).budget_configs()


def test_train_config_reads_the_yaml():
    smoke = exp.Config.preset("smoke").train_config(0)
    assert (smoke.batch_size, smoke.lr, smoke.epochs, smoke.warmup_epochs) == (64, 0.05, 3, 0)
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
    ({"seeds": [0, 0]}, "seeds"), ({"budget_fractions": (0.5, 1.0)}, "budget_fractions"),
    ({"dataset": "mnist"}, "dataset"), ({"dataset": "imagefolder"}, "data_root"),
    ({"mean": [0.5]}, "mean"), ({"mean": [0.5], "std": [0.0]}, "std"), ({"mean": [0.5, 0.5], "std": [0.2]}, "mean"),
    ({"every": 4}, "every"), ({"epochs": 0}, "epochs"), ({"width": 0}, "width"), ({"batch_size": 1}, "batch_size"),
    ({"lr": 0.0}, "lr"), ({"n_val": 0}, "n_val"), ({"image_size": 0}, "image_size"),
])
def test_bad_parameters_name_themselves(overrides, name):
    with pytest.raises(ValueError, match=name):
        exp.Config.preset("smoke", **overrides)
