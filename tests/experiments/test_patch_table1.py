"""Table 1 of the patch chapter (Brutzkus et al., ICML 2022) at smoke scale: the recorded accuracies of
the five variants (seed 0), the claims' gaps at the largest budget and their verdicts (budget curves
of 64, 128, 256 images), the figures."""

import pytest

from patchnb.experiments.patch import table1

from ..conftest import needs_fmnist

# test accuracy of the validation-selected model, smoke scale, seed 0 (recorded before the recipe moved
# out of the notebook; unchanged by the move). The two random-patch rows were re-recorded when the random
# dictionary became the original's (issue 12: gaussian patches whitened by their own covariance and
# clustered, centroids in the pixel frame, instead of gaussian centroids in the data-whitened space):
# Phi_hard random 0.314 -> 0.340, Phi_full random 0.126 -> 0.232; the other rows are unchanged
RECORDED = {"acc_cnn": 0.338, "acc_hard_random": 0.340, "acc_full_random": 0.232, "acc_hard_clustered": 0.222,
            "acc_full_clustered": 0.358}
# the claims' differences at the largest budget (= the accuracies above). Smoke scale has one seed, so
# every verdict is "not settled at this budget" (one seed gives no standard error); before the budget
# rule the words were holds / holds / does not hold / holds / does not hold (means compared at one budget).
# The random-patch claims' gaps follow the re-recorded random rows (issue 12): 0.232 -> 0.126, -0.092 -> -0.118
GAPS = {"claim_beats_cnn_diff": 0.020, "claim_clustered_full_diff": 0.126, "claim_clustered_hard_diff": -0.118,
        "claim_full_hard_diff": 0.136, "claim_90_diff": -0.542}


@needs_fmnist
@pytest.mark.slow
def test_table1_smoke_numbers():
    result = table1.run(table1.Config.preset("smoke"))
    assert result.numbers == pytest.approx({**RECORDED, **GAPS}, abs=1e-3)
    t = result.text
    assert t["acc_full_clustered"] == "35.8 ± 0.0" and t["best_patch"] == "Phi_full, clustered patches"
    assert all(t[claim] == "not settled at this budget" for claim in (*table1.CLAIMS, "claim_90"))
    assert t["claim_beats_cnn_gap"] == "+2.0 points (one seed: no error bar)"
    assert (t["budget_images"], t["target_acc"]) == ("64, 128, 256", "90%")
    assert set(result.figures) == {"fig_table1", "fig_curves_table1", "fig_budget_table1"}
    for fig in result.figures.values():
        assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    assert sorted(result.runs["budgets"]) == [64, 128, 256]
    assert result.runs["budgets"][256] == result.runs["table"]  # the table's runs are the full budget
    assert list(result.tables["tab_table1"].index) == list(table1.VARIANTS)
    assert "256 train / 200 val / 500 test" in t["data_desc"] and t["budget_desc"].endswith("seeds [0]")


@pytest.mark.parametrize("field, value", [("n_patches", 0), ("k", 0), ("kmeans_iters", 2.5), ("val_size", -1)])
def test_table1_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        table1.Config.preset("smoke", **{field: value})
