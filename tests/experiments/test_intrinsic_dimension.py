"""Figure 5 of the patch paper (Brutzkus et al., ICML 2022) at smoke scale: the recorded fitted
dimensions (seed 0), the verdicts on the paper's reading, and validation of the configuration."""

import pytest

from patchnb.experiments import intrinsic_dimension

from ..conftest import needs_fmnist

# recorded from run(Config.preset("smoke")) (the same values the notebook glued before the recipe moved)
RECORDED = {"dim_original": 4.98763, "dim_whitened": 9.07677, "dim_shuffled": 20.0562,
            "dim_whitened_shuffled": 10.7584, "dim_gaussian": 26.6858, "zero_share": 0.16644}


@needs_fmnist
@pytest.mark.slow
def test_intrinsic_dimension_smoke_numbers():
    result = intrinsic_dimension.run(intrinsic_dimension.Config.preset("smoke"))
    assert {k: result.numbers[k] for k in RECORDED} == pytest.approx(RECORDED, rel=1e-4)
    assert all(result.numbers[f"low_norm_{n}"] == 82 for n in ("original", "whitened", "gaussian"))
    t = result.text
    assert (t["claim_low"], t["claim_gauss"]) == ("holds", "holds")
    assert (t["fit_from"], t["ambient"], t["n_zero_original"], t["zero_share"]) == ("4", "25", "0", "16.6%")
    assert list(result.tables["tab_dims"]["intrinsic dimension (fit)"]) == ["5.0", "9.1", "20.1", "10.8", "26.7"]
    assert set(result.figures) == {"fig5"}


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
    assert smoke.at_budget(0.5).n_points == 4096
    with pytest.raises(ValueError, match="ks: the largest k"):
        intrinsic_dimension.Config.preset("smoke", n_points=40)
    with pytest.raises(ValueError, match="one seed"):
        intrinsic_dimension.Config.preset("smoke", seeds=[0, 1])
