"""Figure 5 of the patch paper (Brutzkus et al., ICML 2022) at smoke scale: the recorded fitted
dimensions per budget and seed, the verdicts on the paper's reading (the book's rule applied to those
numbers), and validation of the configuration."""

import pytest

from patchnb.experiments import intrinsic_dimension
from patchnb.experiments.verdict import budget_verdict

from ..conftest import needs_fmnist
from ..pins import DIMENSION, trained

# recorded from run(Config.preset("smoke")) on an Intel host with AMX. Seeds 0 and 1 at 2,048 / 4,096 / 8,192
# points; dim_<set> is the mean over seeds at the full budget. trained: every fitted dimension comes from float32
# faiss k-means at growing k (measured: up to 0.43 between hosts and thread counts): band DIMENSION
RECORDED = {"dim_original": 4.82899, "dim_whitened": 8.98126, "dim_shuffled": 20.0159,
            "dim_whitened_shuffled": 10.9628, "dim_gaussian": 26.4972}
# per point set: per budget (2,048 / 4,096 / 8,192 points), the fitted dimension of seeds 0 and 1
DIMS = {"original": [[4.68599, 4.54067], [4.81329, 4.69865], [4.98763, 4.67036]],
        "whitened": [[9.00141, 8.49167], [8.92575, 8.81100], [9.07677, 8.88574]],
        "shuffled": [[16.5922, 16.1899], [18.6419, 18.5473], [20.0562, 19.9755]],
        "whitened_shuffled": [[11.1856, 10.1755], [10.5441, 10.9009], [10.7584, 11.1672]],
        "gaussian": [[21.9331, 21.3511], [24.3043, 24.6772], [26.6858, 26.3086]]}


@needs_fmnist
@pytest.mark.slow
@pytest.mark.pinned
def test_intrinsic_dimension_smoke_numbers():
    result = intrinsic_dimension.run(intrinsic_dimension.Config.preset("smoke"))
    n, t = result.numbers, result.text
    assert {k: n[k] for k in RECORDED} == trained(RECORDED, DIMENSION)  # trained
    assert n["zero_share"] == pytest.approx(0.16644, abs=1e-5)  # exact: a count of zero patches
    assert result.runs["budgets"] == [2048, 4096, 8192]
    dims = result.runs["dims"]
    for name, per_budget in DIMS.items():
        assert dims[name] == [trained(want, DIMENSION) for want in per_budget], name  # trained
    assert all(n[f"low_norm_{s}"] == 82 for s in ("original", "whitened", "gaussian"))  # exact: 1% of the points
    # the words are the rule applied to this run's dimensions (trained numbers: the words may differ by host)
    budgets = result.runs["budgets"]
    verdicts = intrinsic_dimension.claims(budgets, dims)
    for claim, v in verdicts.items():
        gap = v.gap(scale=1.0, unit=" dimensions")
        assert (t[claim], t[f"{claim}_gap"]) == (v.word, gap) and n[f"{claim}_diff"] == pytest.approx(v.diffs[-1])
    assert (t["budget_points"], t["n_seeds"], t["seed_list"]) == ("2,048, 4,096, 8,192", "2", "0, 1")  # exact
    assert (t["fit_from"], t["ambient"], t["n_zero_original"], t["zero_share"]) == ("4", "25", "0", "16.6%")
    fitted = list(result.tables["tab_dims"]["intrinsic dimension (fit)"])
    for name, cell in zip(DIMS, fitted):
        assert cell.startswith(f"{n[f'dim_{name}']:.1f} ± "), (name, cell)
    assert set(result.figures) == {"fig5", "fig_budget_dims"}


def test_claims_are_the_books_rule_on_the_recorded_dimensions():
    """claim_low: original below min(shuffled, gaussian); claim_gauss: gaussian above the max of the others,
    per seed, paired; the recipe's words are budget_verdict's on the recorded numbers."""
    budgets = [2048, 4096, 8192]
    v = intrinsic_dimension.claims(budgets, DIMS)
    low = [[min(s, g) for s, g in zip(DIMS["shuffled"][i], DIMS["gaussian"][i])] for i in range(3)]
    others = [[max(v) for v in zip(*(DIMS[n][i] for n in DIMS if n != "gaussian"))] for i in range(3)]
    assert v["claim_low"] == budget_verdict(budgets, DIMS["original"], low, claimed="less")
    assert v["claim_gauss"] == budget_verdict(budgets, DIMS["gaussian"], others, claimed="greater")
    assert (v["claim_low"].word, v["claim_gauss"].word) == ("holds", "holds")
    one_seed = {n: [[x[0]] for x in per] for n, per in DIMS.items()}
    assert intrinsic_dimension.claims(budgets, one_seed)["claim_low"].word == "not settled at this budget"


@pytest.mark.parametrize("field, value", [("patch_size", 0), ("n_points", 1), ("ks", (4, 2, 8)), ("ks", (2,)),
                                          ("ks", (2, 4, 0)), ("n_iter", 0), ("dataset", "svhn")])
def test_intrinsic_dimension_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        intrinsic_dimension.Config.preset("smoke", **{field: value})


def test_intrinsic_dimension_presets():
    smoke, cpu = intrinsic_dimension.Config.preset("smoke"), intrinsic_dimension.Config.preset("cpu")
    assert smoke.fit_from == 4 and cpu.fit_from == 32 and cpu.ks[-1] == 1024
    assert intrinsic_dimension.Config.preset("paper").n_points == 2 ** 20
    assert intrinsic_dimension.Config.preset("smoke", ks=[2, 4, 8]).ks == (2, 4, 8)  # lists from a notebook
    assert smoke.at_budget(0.5).n_points == 4096 and smoke.budgets == [2048, 4096, 8192]
    assert (smoke.seeds, cpu.seeds, cpu.budget_fractions) == ((0, 1), (0, 1, 2), (0.25, 0.5, 1.0))
    with pytest.raises(ValueError, match="ks: the largest k"):
        intrinsic_dimension.Config.preset("smoke", n_points=40)
    with pytest.raises(ValueError, match="budget_fractions"):  # the smallest budget below twice the largest k
        intrinsic_dimension.Config.preset("smoke", n_points=100)
    for bad in ((0.5, 1.0), (0.25, 0.5, 0.75), (0.0, 0.5, 1.0), (0.5, 0.5, 1.0)):
        with pytest.raises(ValueError, match="budget_fractions"):
            intrinsic_dimension.Config.preset("smoke", budget_fractions=bad)
