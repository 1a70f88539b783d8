"""The EMP-SSL recipe (patchnb.experiments.emp_ssl) at smoke scale: pinned numbers (SimCLR's depend on the
wall-clock calibration, so they are pinned with a fixed ``simclr_epochs``), the claims decided by the book's
rule from the one-epoch runs of the budget curve, the TrainConfigs and methods built from
ssl/configs/emp_ssl.yaml and simclr.yaml with the presets' overrides, and validation naming the parameter."""

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from patchnb.experiments import emp_ssl as exp  # noqa: E402
from patchnb.experiments.emp_ssl_report import BUDGET_XLABEL  # noqa: E402
from patchnb.experiments.verdict import VERDICTS, budget_verdict  # noqa: E402
from patchnb.ssl import EMPSSL, SimCLR  # noqa: E402

from ..conftest import needs_fmnist  # noqa: E402
from ..pins import ACCURACY, UNIFORMITY, trained  # noqa: E402

#: smoke numbers (seed 0), recorded on an Intel host with AMX: per EMP-SSL epoch (linear probe, kNN, uniformity).
#: trained: bands ACCURACY / UNIFORMITY (tests/pins.py; measured between hosts: up to 0.068 in a probe accuracy of
#: the budget curve, 0.0013 in uniformity). At 12 steps the BatchNorm running statistics of the pre_feature layer
#: are far from settled, so its post-ReLU outputs share one direction (uniformity near 0).
EMP = {1: (0.2604166666666667, 0.203125, -0.00031839243448672505),
       2: (0.296875, 0.25, -0.0007082612660411769)}
#: the one-epoch runs of the claims' budget curve: per budget (training images) per seed (0, 1), the linear-probe
#: test accuracy of EMP-SSL after one epoch, of the random encoder and of SimCLR (1 epoch) on that budget's images
#: (trained: band ACCURACY)
BUDGET_RUNS = {48: [(0.2760416666666667, 0.24479166666666666, 0.4010416666666667),
                    (0.22916666666666666, 0.2552083333333333, 0.3020833333333333)],
               96: [(0.2864583333333333, 0.3645833333333333, 0.6145833333333334),
                    (0.22916666666666666, 0.390625, 0.5885416666666666)],
               192: [(0.296875, 0.4375, 0.640625), (0.3541666666666667, 0.3697916666666667, 0.6510416666666666)]}
#: the random encoder is not trained, but its evaluation (a linear probe fitted by L-BFGS, kNN) is float32: the
#: probe and kNN as trained numbers, uniformity and the ill-conditioned kappa (~ 1/(1 - R), R near 1) as computed
#: numbers (measured between hosts: 2e-11 and 7e-9 relative)
RANDOM = dict(linear=0.4375, knn=0.2760416567325592)
RANDOM_GEOMETRY = dict(uniformity=-0.003168850335390161, kappa=322704.18063014874)


@pytest.mark.slow
@needs_fmnist
@pytest.mark.pinned
def test_smoke_numbers_are_pinned():
    result = exp.run(exp.Config.preset("smoke", simclr_epochs=1))
    n, t = result.numbers, result.text
    for epoch, (linear, knn, unif) in EMP.items():
        assert n[f"emp{epoch}_linear"] == trained(linear, ACCURACY)  # trained
        assert n[f"emp{epoch}_knn"] == trained(knn, ACCURACY)  # trained
        assert n[f"emp{epoch}_uniformity"] == trained(unif, UNIFORMITY)  # trained
    for k, v in RANDOM.items():
        assert n[f"random_{k}"] == trained(v, ACCURACY)  # trained (a fitted probe)
    assert n["random_uniformity"] == pytest.approx(RANDOM_GEOMETRY["uniformity"], abs=1e-5)  # computed, float32
    assert n["random_kappa"] == pytest.approx(RANDOM_GEOMETRY["kappa"], rel=1e-3)  # computed, ill-conditioned
    assert n["random_whole_linear"] == trained(0.4895833333333333, ACCURACY)  # trained
    assert n["emp_whole_linear"] == trained(0.390625, ACCURACY)  # trained
    assert n["emp_whole_knn"] == trained(0.3177083432674408, ACCURACY)  # trained
    assert n["sim_epochs"] == 1  # exact: one SimCLR checkpoint, the same one for both EMP-SSL epochs
    assert n["simclr1_linear"] == trained(0.640625, ACCURACY) and n["simclr1_knn"] == trained(0.5885417, ACCURACY)
    # the words follow this run's numbers
    spread = "spread out" if n["emp2_uniformity"] < n["random_uniformity"] else "did not spread out"  # last: epoch 2
    assert t["spread_verdict"] == spread
    assert t["emp1_lin"] == f"{100 * n['emp1_linear']:.1f}%" and t["rand_knn"] == f"{100 * n['random_knn']:.1f}%"
    assert "256-d pre_feature layer and a 256-256-64 projection" in t["setup"] and "scale=smoke" in t["data_desc"]
    assert "batch 32 images x 4 patches of area 0.25; SGD-Nesterov in EMP-SSL's LARS wrapper, lr 0.3" in t["setup"]
    table = result.tables["tab_results"]
    assert list(table["encoder"]) == ["EMP-SSL, 1 epoch(s)", "EMP-SSL, 2 epoch(s)", "SimCLR, 1 epoch(s)",
                                      "SimCLR, 1 epoch(s)", "EMP-SSL, last", "random", "random"]
    assert set(result.figures) == {"fig_curves", "fig_sphere", "fig_budget"}
    assert all(Path(p).is_file() and p.endswith(".csv") for p in result.runs["projections"])
    # the claims' budget curve: one-epoch runs at 48 / 96 / 192 images, seeds 0 and 1 (paired)
    runs = result.runs["budgets"]
    assert list(runs) == [48, 96, 192] and all(len(at) == 2 for at in runs.values())
    assert all(r["n_train"] == size and r["sim_epochs"] == 1 for size, at in runs.items() for r in at)
    for size, at in runs.items():
        for r, pinned in zip(at, BUDGET_RUNS[size]):
            got = (r["emp"]["linear"], r["random"]["linear"], r["simclr"]["linear"])
            assert got == trained(pinned, ACCURACY)  # trained
    budgets = list(runs)
    for claim, other in exp.CLAIMS.items():  # the recipe's words are the rule applied to this run's accuracies
        v = budget_verdict(budgets, [[r["emp"]["linear"] for r in runs[b]] for b in budgets],
                           [[r[other]["linear"] for r in runs[b]] for b in budgets], claimed="greater", paired=True)
        assert t[claim] == v.word and t[f"{claim}_gap"] == v.gap() and n[f"{claim}_diff"] == pytest.approx(v.diffs[-1])
        assert t[claim] in VERDICTS
        assert t[f"{claim}_curve"] == ", ".join(f"{100 * d:+.1f} points at {b}" for b, d in zip(budgets, v.diffs))
    assert t["budget_images"] == "48, 96, 192" and t["budget_seeds"] == "2 seeds (0, 1)"
    ax = result.figures["fig_budget"].axes[0]  # the book's budget figure: three curves against the images
    assert ax.get_xlabel() == BUDGET_XLABEL and len(ax.containers) == 3
    assert [x.get_text() for x in ax.get_legend().get_texts()] == ["EMP-SSL, one epoch", "SimCLR, same seconds",
                                                                 "random encoder"]


def test_methods_and_train_configs_read_the_yaml():
    smoke = exp.Config.preset("smoke")
    emp, simclr = smoke.methods()
    # the smoke preset's narrower pre_feature / projection (256 / 64 for the 32-d ResNet; the paper: 4096 / 1024)
    assert emp == EMPSSL(n_patches=4, knn_bank_size=2000, hidden_dim=256, out_dim=64)
    assert simclr == SimCLR(knn_bank_size=2000)
    assert emp.patch_scale == (0.25, 0.25) and emp.augment.solarize_prob == 0.1  # the code's, not 0.25-1 / 0.2
    t = smoke.train_config(0)
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.schedule) == ("lars_solo", 0.3, 0.9, 1e-4, "cosine")
    assert (t.batch_size, t.epochs, t.warmup_epochs) == (32, 2, 0)
    s = smoke.train_config(0, "simclr", 6)
    assert (s.optimizer, s.lr, s.momentum, s.weight_decay, s.batch_size, s.epochs) == ("sgd", 0.06, 0.9, 5e-4, 32, 6)
    paper = exp.Config.preset("paper")  # batch 100, 200 patches and the 4096 / 1024 head are the YAML's
    assert paper.train_config(0).batch_size == 100 and paper.methods()[0].n_patches == 200
    assert (paper.methods()[0].hidden_dim, paper.methods()[0].out_dim) == (4096, 1024)
    enc = paper.encoder(3)  # the evaluated network: ResNet-18 (512-d) + the 4096-d pre_feature layer
    assert (enc.feature_dim, enc.out_dim) == (512, 4096)
    cpu = exp.Config.preset("cpu")
    assert cpu.train_config(0).epochs == 3 and (cpu.methods()[0].hidden_dim, cpu.methods()[0].out_dim) == (1024, 256)


@pytest.mark.parametrize("field, value, match", [
    ("epochs", (2, 1), "epochs"), ("epochs", (0,), "epochs"), ("epochs", (), "epochs"),
    ("n_patches", 1, "n_patches"), ("eval_patches", 1, "eval_patches"), ("width", 0, "width"),
    ("hidden_dim", 0, "hidden_dim"), ("out_dim", 0, "out_dim"),
    ("batch_size", 1, "batch_size"), ("dataset", "mnist", "dataset"), ("simclr_lr", 0.0, "simclr_lr"),
    ("simclr_epochs", 0, "simclr_epochs"), ("seeds", (0, -1), "seeds"), ("n_train", 0, "n_train"),
    ("mean", (0.5,), "mean"), ("budget_fractions", (0.5, 1.0), "budget_fractions"),
    ("budget_fractions", (0.25, 0.5, 0.75), "budget_fractions"),
    ("budget_fractions", (0.0, 0.5, 1.0), "budget_fractions"),
])
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        exp.Config.preset("smoke", **{field: value})
    with pytest.raises(ValueError, match="data_root"):
        exp.Config.preset("smoke", dataset="imagefolder")


def test_budget_configs_are_one_epoch_runs_on_fewer_images():
    smoke = exp.Config.preset("smoke")
    assert smoke.seeds == (0, 1) and exp.Config.preset("cpu").seeds == (0, 1)
    points = smoke.budget_configs(192)
    assert [n for n, _ in points] == [48, 96, 192]
    assert all(c.n_train == n and c.epochs == (1,) and c.train_config(0).epochs == 1 for n, c in points)
    assert all(c.eval_patches == smoke.eval_patches and c.n_val == smoke.n_val for _, c in points)
    assert [n for n, _ in exp.Config.preset("paper").budget_configs(45000)] == [11250, 22500, 45000]
    with pytest.raises(ValueError, match="not distinct"):
        smoke.budget_configs(2)
