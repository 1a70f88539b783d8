"""The calibration recipe: its rates are the verdict module's simulation, its previous-rule contrast is the
old rule by hand on a tiny case, and bad parameters fail naming the parameter. Simulated with fixed
generators (host-independent)."""
import numpy as np
import pytest

from patchnb.experiments import calibration as C
from patchnb.experiments import verdict as V


def test_previous_rule_matches_its_definition_on_the_same_draws():
    rng = np.random.default_rng(0)
    sims = V._simulated(0.0, 2, 0.8, 500, 3, rng)
    d, se = sims.mean(-1), sims.std(-1, ddof=1) / np.sqrt(2)
    by_hand = np.mean([(np.sign(x[-2]) == np.sign(x[-1])) and abs(x[-1]) > 2 * s[-1] for x, s in zip(d, se)])
    assert C.previous_rule_rate(2, 0.8, 500, seed=0) == pytest.approx(by_hand)


def test_run_at_smoke_scale():
    r = C.run(C.Config.preset("smoke"))
    t = r.tables["calibration"]
    assert len(t) == 2 * (len(C.Config().seed_counts) + 1)
    assert r.numbers["worst_null"] <= V.ALPHA + 3 * (V.ALPHA * 0.95 / 2000) ** 0.5
    assert r.numbers["previous_2_0.8"] > 0.15  # the old rule on 2 seeds, correlated budgets: ~26 %


@pytest.mark.parametrize("bad, match", [({"n_sims": 10}, "n_sims"), ({"seed_counts": (1,)}, "seed_counts"),
                                        ({"rhos": (1.0,)}, "rhos"), ({"effects": (0,)}, "effects"),
                                        ({"looks": (5, 3)}, "looks"), ({"n_budgets": 2}, "n_budgets")])
def test_bad_parameters_name_themselves(bad, match):
    with pytest.raises(ValueError, match=match):
        C.Config.preset("smoke", **bad)
