"""The EMP-SSL recipe (patchnb.experiments.emp_ssl) at smoke scale: pinned numbers (the EMP-SSL and random
rows are those the notebook produced before the recipe moved into the package; SimCLR's depend on the
wall-clock calibration, so they are pinned with a fixed ``simclr_epochs``), the TrainConfigs and methods
built from ssl/configs/emp_ssl.yaml and simclr.yaml with the presets' overrides, and validation naming the
parameter."""

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from patchnb.experiments import emp_ssl as exp  # noqa: E402
from patchnb.ssl import EMPSSL, SimCLR  # noqa: E402

from ..conftest import needs_fmnist  # noqa: E402

#: the notebook's smoke numbers before the move (seed 0)
EMP = {1: (0.5572916666666666, 0.4375, -0.194527076115671), 2: (0.5104166666666666, 0.46875, -0.11548763119711403)}
RANDOM = dict(linear=0.4791666666666667, knn=0.3541666567325592, uniformity=-0.21278423302300453,
              kappa=503.15283867982777)


@pytest.mark.slow
@needs_fmnist
def test_smoke_numbers_are_pinned():
    result = exp.run(exp.Config.preset("smoke", simclr_epochs=1))
    n, t = result.numbers, result.text
    for epoch, (linear, knn, unif) in EMP.items():
        assert n[f"emp{epoch}_linear"] == pytest.approx(linear, abs=1e-6)
        assert n[f"emp{epoch}_knn"] == pytest.approx(knn, abs=1e-6)
        assert n[f"emp{epoch}_uniformity"] == pytest.approx(unif, abs=1e-4)
    for k, v in RANDOM.items():
        assert n[f"random_{k}"] == pytest.approx(v, abs=1e-4 if k != "kappa" else 1e-2)
    assert n["random_whole_linear"] == pytest.approx(0.5572916666666666, abs=1e-6)
    assert n["emp_whole_linear"] == pytest.approx(0.5104166666666666, abs=1e-6)
    assert n["emp_whole_knn"] == pytest.approx(0.421875, abs=1e-6)
    assert n["sim_epochs"] == 1  # one SimCLR checkpoint: the same one for both EMP-SSL epochs
    assert n["simclr1_linear"] == pytest.approx(0.640625, abs=1e-6) and n["simclr1_knn"] == pytest.approx(0.5885417)
    assert t["claim_random"] == "holds" and t["vs_simclr"] == "not better than"
    assert t["spread_verdict"] == "did not spread out" and t["emp1_lin"] == "55.7%" and t["rand_knn"] == "35.4%"
    assert "batch 32 images x 4 patches, LARS lr 0.3" in t["setup"] and "scale=smoke" in t["data_desc"]
    table = result.tables["tab_results"]
    assert list(table["encoder"]) == ["EMP-SSL, 1 epoch(s)", "EMP-SSL, 2 epoch(s)", "SimCLR, 1 epoch(s)",
                                      "SimCLR, 1 epoch(s)", "EMP-SSL, last", "random", "random"]
    assert set(result.figures) == {"fig_curves", "fig_sphere"}
    assert all(Path(p).is_file() and p.endswith(".csv") for p in result.runs["projections"])


def test_methods_and_train_configs_read_the_yaml():
    smoke = exp.Config.preset("smoke")
    emp, simclr = smoke.methods()
    assert emp == EMPSSL(n_patches=4, knn_bank_size=2000) and simclr == SimCLR(knn_bank_size=2000)
    t = smoke.train_config(0)
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.schedule) == ("lars", 0.3, 0.9, 1e-4, "cosine")
    assert (t.batch_size, t.epochs, t.warmup_epochs) == (32, 2, 0)
    s = smoke.train_config(0, "simclr", 6)
    assert (s.optimizer, s.lr, s.momentum, s.weight_decay, s.batch_size, s.epochs) == ("sgd", 0.06, 0.9, 5e-4, 32, 6)
    paper = exp.Config.preset("paper")  # batch 100 and 200 patches are the YAML's
    assert paper.train_config(0).batch_size == 100 and paper.methods()[0].n_patches == 200
    assert exp.Config.preset("cpu").train_config(0).epochs == 3


@pytest.mark.parametrize("field, value, match", [
    ("epochs", (2, 1), "epochs"), ("epochs", (0,), "epochs"), ("epochs", (), "epochs"),
    ("n_patches", 1, "n_patches"), ("eval_patches", 1, "eval_patches"), ("width", 0, "width"),
    ("batch_size", 1, "batch_size"), ("dataset", "mnist", "dataset"), ("simclr_lr", 0.0, "simclr_lr"),
    ("simclr_epochs", 0, "simclr_epochs"), ("seeds", (0, 1), "seeds"), ("n_train", 0, "n_train"),
    ("mean", (0.5,), "mean"),
])
def test_config_rejects_bad_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        exp.Config.preset("smoke", **{field: value})
    with pytest.raises(ValueError, match="data_root"):
        exp.Config.preset("smoke", dataset="imagefolder")
