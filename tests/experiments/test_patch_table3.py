"""Table 3 of the patch chapter (Brutzkus et al., ICML 2022) at smoke scale: the recorded accuracies of
the four heads (seed 0), the ordering and the verdicts; "Both" is Table 1's Phi_full run."""

import pytest

from patchnb.experiments.patch import table1, table3

from ..conftest import needs_fmnist
from ..pins import ACCURACY, ACCURACY_DIFF, trained

# smoke scale, seed 0, recorded on an Intel host with AMX. trained: bands ACCURACY / ACCURACY_DIFF (tests/pins.py)
RECORDED = {"acc_original": 0.506, "acc_avgpool": 0.482, "acc_bottleneck": 0.422, "acc_both": 0.358}
GAPS = {"claim_both_best_diff": -0.148, "claim_pool_helps_diff": -0.024, "claim_bottleneck_helps_diff": -0.084}


@needs_fmnist
@pytest.mark.slow
@pytest.mark.pinned
def test_table3_smoke_numbers():
    result = table3.run(table3.Config.preset("smoke"))
    n, t = result.numbers, result.text
    assert {k: n[k] for k in RECORDED} == trained(RECORDED, ACCURACY)  # trained
    assert {k: n[k] for k in GAPS} == trained(GAPS, ACCURACY_DIFF)  # trained
    acc = {head: n[f"acc_{head.lower()}"] for head in table3.HEADS}
    order = sorted(table3.HEADS, key=lambda h: -acc[h])  # the words follow this run's numbers
    assert t["t3_order"] == " > ".join(order)
    assert t["t3_rival"] == next(h for h in order if h != "Both")  # Both is compared with the best other head
    assert n["claim_both_best_diff"] == pytest.approx(acc["Both"] - acc[t["t3_rival"]], abs=1e-9)  # exact
    assert n["claim_pool_helps_diff"] == pytest.approx(acc["AvgPool"] - acc["Original"], abs=1e-9)
    # one seed: "not settled at this budget" whatever the numbers (exact)
    assert (t["claim_both_best"], t["claim_pool_helps"], t["claim_bottleneck_helps"]) == \
        ("not settled at this budget",) * 3
    assert set(result.figures) == {"fig_table3", "fig_curves_table3", "fig_budget_table3"}


def test_both_is_table1s_phi_full_run():
    """The default head is the same run configuration as Table 1's Phi_full (one cached run for both)."""
    cfg = table3.Config.preset("smoke")
    assert cfg.run_config(0, embedding="full", **table3.HEADS["Both"]) == \
        table1.Config.preset("smoke").run_config(0, **table1.VARIANTS["Phi_full, clustered patches"])


def test_table3_config_rejects_bad_values():
    with pytest.raises(ValueError, match="n_centroids"):
        table3.Config.preset("smoke", n_centroids=0)
