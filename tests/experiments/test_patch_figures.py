"""Figures 6, 8 and 9 of the patch chapter (Brutzkus et al., ICML 2022) at smoke scale: the recorded
accuracies of the k and N curves (seed 0), the verdicts, and validation of the grids."""

import pytest

from patchnb.experiments.patch import figures

from ..conftest import needs_fmnist

# k=16 joined the smoke grid (an interior optimum needs three k); the other points are unchanged
RECORDED = {"acc_k2": 0.262, "acc_k8": 0.358, "acc_k16": 0.350, "acc_n16": 0.234, "acc_n32": 0.358,
            "claim_k_interior_diff": 0.008, "claim_n_grows_diff": 0.124}


@needs_fmnist
@pytest.mark.slow
def test_figures_smoke_numbers():
    result = figures.run(figures.Config.preset("smoke"))
    assert result.numbers == pytest.approx(RECORDED, abs=1e-3)
    t = result.text
    assert (t["ks"], t["ns"], t["fig_seeds"], t["best_k"], t["best_n"]) == ("2, 8, 16", "16, 32", "0", "8", "32")
    assert (t["k_interior"], t["k_end"]) == ("k=8, N=32", "k=16, N=32")
    # one seed: "not settled at this budget" (before: "does not hold" with no interior k, and "holds")
    assert (t["claim_k_interior"], t["claim_n_grows"]) == ("not settled at this budget",) * 2
    assert set(result.figures) == {"fig6", "fig8", "fig9", "fig_budget_k", "fig_budget_n", "fig_curves_figures"}
    assert result.runs["zca"]["centroids"].shape == (32, 25)
    assert list(result.tables["tab_figures"]["test acc. (%)"])[0] == "26.2 (one seed)"


def test_curve_runs():
    cfg = figures.Config.preset("cpu")
    assert cfg.curve_seed_list() == (0, 1) and figures.Config.preset("paper").curve_seed_list() == (0, 1, 2, 3, 4)
    n = cfg.n_variants()["N=32, k=8"]
    assert (n["n_centroids"], n["k"], n["n_patches"]) == (32, [8], 8192)  # min(256 N, 65536 N / 256)


@pytest.mark.parametrize("overrides, match", [(dict(ks=(2, 4, 64)), "ks"), (dict(ns=()), "ns"),
                                              (dict(curve_seeds=0), "curve_seeds"), (dict(ks=(2.5, 3, 4)), "ks"),
                                              (dict(ks=(2, 8)), "ks"), (dict(ks=(8, 2, 4)), "ks"),
                                              (dict(ns=(16, 16)), "ns")])
def test_figures_config_rejects_bad_values(overrides, match):
    with pytest.raises(ValueError, match=match):
        figures.Config.preset("smoke", **overrides)
