"""The book's verdict rule (patchnb.experiments.verdict): hand-worked cases (each decided by one part of the
rule), the made-up cases the old rule got wrong, and calibration by simulation: with no true difference the
chance of a decisive word is at most ALPHA at the cpu presets' seed counts (3 and 5), also for budgets
correlated like the book's, for Holm-corrected families, for "every method beats random" and for the
sequential design. All values here are exact or simulated with a fixed generator (host-independent)."""
import math

import numpy as np
import pytest
from scipy import stats

from patchnb.experiments import verdict as V
from patchnb.experiments.verdict import ALPHA, FAILS, HOLDS, UNSETTLED, budget_verdict, difference

B = [1000, 2000, 4000]


def test_paired_difference_and_standard_error_by_hand():
    # differences 0.1, 0.3 -> mean 0.2, sd sqrt(0.02) = 0.1414, se = 0.1
    d, se = difference([0.6, 0.8], [0.5, 0.5], paired=True)
    assert d == pytest.approx(0.2) and se == pytest.approx(0.1)
    d, se = difference([0.6, 0.8], [0.5, 0.7], paired=False)  # sqrt(0.02/2 + 0.02/2) = 0.1414
    assert d == pytest.approx(0.1) and se == pytest.approx(math.sqrt(0.02))
    assert difference([0.9], 0.5, paired=True) == (pytest.approx(0.4), math.inf)


def test_the_test_is_a_paired_t_test_at_the_largest_budget():
    # per-seed differences at 4,000: 0.10, 0.12, 0.14 -> mean 0.12, sd 0.02, se 0.02/sqrt(3), t = 10.39 on 2 df
    a = [[0.60, 0.61, 0.62], [0.70, 0.72, 0.71], [0.80, 0.82, 0.84]]
    b = [[0.50, 0.50, 0.50], [0.60, 0.60, 0.60], [0.70, 0.70, 0.70]]
    v = budget_verdict(B, a, b)
    t = 0.12 / (0.02 / math.sqrt(3))
    assert v.word == HOLDS and v.df == 2 and v.seeds == 3
    assert v.p == pytest.approx(2 * stats.t.sf(t, 2))
    lo, hi = v.interval()
    h = stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)
    assert (lo, hi) == (pytest.approx(0.12 - h), pytest.approx(0.12 + h))
    assert v.gap() == f"+12.0 points (95 % CI {100 * (0.12 - h):+.1f} to {100 * (0.12 + h):+.1f})"
    assert budget_verdict(B, b, a, claimed="less").word == HOLDS
    assert budget_verdict(B, b, a).word == FAILS
    # the same t on 2 seeds (1 df) is not enough: t_{0.975, 1} = 12.7
    assert budget_verdict(B, [x[:2] for x in a], [x[:2] for x in b]).word == UNSETTLED


def test_the_cases_the_old_two_standard_error_rule_called_decided():
    # +0.6 / +0.3 points from two noisy seeds: t = 3 on 1 df, p = 0.20
    assert budget_verdict(B, [[0.8, 0.8]] * 2 + [[0.806, 0.803]], [[0.8, 0.8]] * 3).word == UNSETTLED
    # +0.1 point (one of 1,000 test images) on both seeds: no spread, and within the test split's error
    one_image = budget_verdict(B, [[0.901, 0.901]] * 3, [[0.900, 0.900]] * 3)
    assert one_image.word == UNSETTLED and "all equal" in one_image.reason
    assert budget_verdict(B, [[0.901] * 5] * 3, [[0.900] * 5] * 3, n_eval=1000).word == UNSETTLED
    # 90.1 / 90.3 then 90.5 / 90.2 against 90 %
    assert budget_verdict(B, [[0.9, 0.9], [0.901, 0.903], [0.905, 0.902]], 0.90).word == UNSETTLED


def test_sampling_error_of_the_test_split_by_hand():
    # accuracies 0.9 and 0.8 on 1,000 images: error rates 0.1 + 0.2 -> e^2 = 0.3 / 1000
    assert V.sampling_error([0.9, 0.9], [0.8, 0.8], 1000) == pytest.approx(math.sqrt(0.3 / 1000))
    assert V.sampling_error([0.9], 0.5, 100) == pytest.approx(math.sqrt(0.09 / 100))  # threshold: p (1 - p) / n
    # it adds to the seeds' error: per-seed differences 0.10, 0.12, 0.14 (se 0.01155) and e = 0.01732
    a = [[0.60, 0.61, 0.62], [0.70, 0.72, 0.71], [0.90, 0.92, 0.94]]
    b = [[0.50, 0.50, 0.50], [0.60, 0.60, 0.60], [0.80, 0.80, 0.80]]
    v = budget_verdict(B, a, b, n_eval=1000)
    e2 = ((1 - 0.92) + (1 - 0.80)) / 1000
    assert v.se == pytest.approx(math.sqrt((0.02 / math.sqrt(3)) ** 2 + e2))
    with pytest.raises(ValueError, match="n_eval"):
        budget_verdict(B, a, b, n_eval=0)
    with pytest.raises(ValueError, match="accuracies"):
        budget_verdict(B, [[3.0, 4.0]] * 3, 1.0, n_eval=100)


def test_sign_flip_between_the_two_largest_budgets_is_not_settled():
    a = [[0.7, 0.71, 0.72], [0.60, 0.61, 0.60], [0.90, 0.91, 0.92]]
    b = [[0.6, 0.61, 0.60], [0.70, 0.71, 0.72], [0.80, 0.81, 0.80]]
    v = budget_verdict(B, a, b)
    assert v.word == UNSETTLED and "changes sign" in v.reason and v.p == 1.0


def test_one_seed_never_settles_a_claim():
    v = budget_verdict(B, [[0.5], [0.6], [0.9]], [[0.1], [0.1], [0.1]])
    assert v.word == UNSETTLED and v.gap() == "+80.0 points (one seed: no interval)"
    assert v.gap(scale=1.0, digits=2, unit="") == "+0.80 (one seed: no interval)"


def test_threshold_claim():
    a = [[0.80, 0.81, 0.82], [0.88, 0.89, 0.885], [0.92, 0.925, 0.93]]
    assert budget_verdict(B, a, 0.90).word == UNSETTLED  # below 0.90 at the second-largest budget
    assert budget_verdict(B, [[0.91, 0.92, 0.93], [0.93, 0.935, 0.94], [0.95, 0.951, 0.952]], 0.90).word == HOLDS
    assert budget_verdict(B, [[0.5, 0.51, 0.5], [0.6, 0.61, 0.6], [0.7, 0.705, 0.71]], 0.90).word == FAILS


def test_budgets_are_sorted_and_inputs_checked():
    a = [[0.8, 0.81, 0.82], [0.5, 0.52, 0.51], [0.70, 0.71, 0.70]]
    b = [[0.7, 0.70, 0.70], [0.55, 0.56, 0.55], [0.60, 0.61, 0.60]]
    assert budget_verdict([4000, 1000, 2000], a, b).word == HOLDS
    with pytest.raises(ValueError, match=">= 3 budgets"):
        budget_verdict([1, 2], a[:2], b[:2])
    with pytest.raises(ValueError, match="claimed='more'"):
        budget_verdict(B, a, b, claimed="more")
    with pytest.raises(ValueError, match="finite"):
        budget_verdict(B, [[0.1, 0.2, 0.1], [float("nan"), 0.3, 0.2], [0.2, 0.2, 0.2]], b)
    with pytest.raises(ValueError, match="alpha"):
        budget_verdict(B, a, b, alpha=1.5)
    assert str(budget_verdict([4000, 1000, 2000], a, b)) == HOLDS  # str() is the word: independent checks read it


@pytest.mark.parametrize("fractions", [(0.5, 1.0), (0.25, 0.5, 0.75), (0.5, 0.5, 1.0), [0.25, 0.5, 1.0],
                                       (0.0, 0.5, 1.0), (True, 0.5, 1.0), (0.25, 0.5, 1.5)])
def test_budget_fractions_are_checked_once_for_every_page(fractions):
    from patchnb.experiments.base import check_budget_fractions

    with pytest.raises(ValueError, match=r"budget_fractions=.* distinct fractions of n_train in \(0, 1\]"):
        check_budget_fractions(fractions, "n_train")
    check_budget_fractions((0.25, 0.5, 1.0), "n_train")  # the default passes


def test_crossing_extrapolates_the_two_largest_budgets_with_their_error():
    # a threshold 0.9: accuracy 0.80 at 1,000 and 0.85 at 4,000 images gains 5 points per 4x on a log
    # axis; 5 more points need another 4x: 16,000 images, 4.0x the largest budget (hand-worked)
    v = budget_verdict([250, 1000, 4000], [[0.7, 0.7, 0.7], [0.79, 0.8, 0.81], [0.84, 0.85, 0.86]], 0.9)
    assert v.word == FAILS and v.crossing() == pytest.approx(16000)
    lo, hi = v.crossing_range()
    assert lo < 16000 < hi
    text = v.crossing_text(available=10000)
    assert text.startswith("the straight line through the two largest budgets (on a log axis) reaches it at "
                           "about 16,000 training images, 4.0x the largest budget here (anywhere from ")
    assert "beyond the 10,000 training images this data has" in text and text.endswith("not a measurement")
    assert "beyond" not in v.crossing_text(available=20000)
    flat = budget_verdict([250, 1000, 4000], [[0.7], [0.85], [0.85]], 0.9)
    assert flat.crossing() is None and "does not move toward" in flat.crossing_text()
    less = budget_verdict([1, 2, 4], [[0.5], [0.6], [0.55]], 0.5, claimed="less")  # 0.1 -> 0.05 per 2x: 0 at 8
    assert less.crossing() == pytest.approx(8) and less.crossing_range() is None  # one seed: no range
    held = budget_verdict([1, 2, 4], [[0.6], [0.7], [0.8]], 0.5)
    assert held.crossing() is None and held.crossing_text() == "the largest budget already has the claimed sign"


def test_glue_names_are_the_same_for_every_claim():
    a = [[0.60, 0.61, 0.62], [0.70, 0.72, 0.71], [0.80, 0.82, 0.84]]
    g = budget_verdict(B, a, [[0.5] * 3, [0.6] * 3, [0.7] * 3]).glue("claim_x")
    assert set(g) == {"claim_x", "claim_x_gap", "claim_x_reach", "claim_x_curve", "claim_x_detectable",
                      "claim_x_test"}
    assert g["claim_x"] == HOLDS and g["claim_x_curve"] == "+11.0, +11.0, +12.0 points at 1,000, 2,000, 4,000 " \
                                                           "training images"
    assert g["claim_x_test"] == "3 seeds, paired t-test at the largest budget at level 0.05 (two-sided)"


def test_mean_sd_is_one_standard_deviation_over_seeds():
    assert V.mean_sd([0.88, 0.90]) == f"89.0 ± {100 * np.std([0.88, 0.90], ddof=1):.1f}"
    assert V.mean_sd([0.88]) == "88.0 (one seed)"


def _v(p, d=1.0):
    return V.Verdict(UNSETTLED, (1.0, 2.0, 4.0), (d, d, d), (0.1, 0.1, 0.1), "greater", se=0.1, df=2, p=p, seeds=3)


def test_holm_by_hand():
    # m = 3, p sorted 0.01, 0.02, 0.04 against 0.05/3, 0.05/2, 0.05/1: all decisive
    out = V.holm({"a": _v(0.02), "b": _v(0.01), "c": _v(0.04)})
    assert [out[k].word for k in "abc"] == [HOLDS] * 3 and out["c"].family == 3
    assert out["b"].level == pytest.approx(0.05 / 3) and out["a"].level == pytest.approx(0.025)
    # 0.01, 0.03 (> 0.025: stops), 0.04: only the first
    out = V.holm({"a": _v(0.03), "b": _v(0.01), "c": _v(0.04)})
    assert [out[k].word for k in "abc"] == [UNSETTLED, HOLDS, UNSETTLED]
    assert "Holm-corrected over 3 claims" in out["b"].glue("b")["b_test"]
    assert V.holm({"a": _v(0.04)})["a"] == _v(0.04)  # one claim: no correction


def test_all_of_by_hand():
    h, f = V._at_level(_v(0.001), ALPHA), V._at_level(_v(0.001, d=-1.0), ALPHA)
    assert V.all_of({"a": h, "b": h}) == HOLDS
    assert V.all_of({"a": h, "b": f}) == FAILS
    assert V.all_of({"a": h, "b": V._at_level(_v(0.3), ALPHA)}) == UNSETTLED


# --- calibration by simulation ---------------------------------------------------------------------------

def _mc_bound(rate, n):  # alpha plus three Monte-Carlo standard errors
    return rate + 3 * math.sqrt(rate * (1 - rate) / n)


def test_the_vectorised_simulation_is_the_rule():
    """The calibration below runs the rule vectorised; on 300 simulated curves it agrees with budget_verdict."""
    rng = np.random.default_rng(1)
    for effect in (0.0, 2.0):
        sims = V._simulated(effect, 3, 0.8, 300, 3, rng)
        fast = V._decisive(sims, ALPHA)
        slow = [budget_verdict(B, [list(x) for x in s], [[0.0] * 3] * 3).word != UNSETTLED for s in sims]
        assert list(fast) == slow


@pytest.mark.parametrize("n_seeds", [2, 3, 5])
@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_no_true_difference_is_called_decisive_at_most_alpha(n_seeds, rho):
    n = 20000
    rate = V.null_decisive_rate(n_seeds, rho, n_sims=n, seed=n_seeds)
    assert rate <= _mc_bound(ALPHA, n), (n_seeds, rho, rate)


def test_power_grows_with_seeds():
    p3, p5 = V.power(3.0, 3), V.power(3.0, 5)
    assert 0.5 < p3 < p5  # a true difference of 3 seed-SDs: decisive most of the time at 3 seeds, more at 5


def test_the_sequential_design_keeps_alpha_and_gains_power():
    n = 20000
    assert V.null_decisive_rate(5, 0.8, n_sims=n, looks=(3, 5)) <= _mc_bound(ALPHA, n)
    assert V.power(3.0, 5, looks=(3, 5)) > V.power(3.0, 3)


def test_decide_adds_seeds_only_while_undecided():
    asked = []
    clear = ([[0.6, 0.61, 0.62, 0.6, 0.6]] * 3, [[0.5, 0.5, 0.5, 0.5, 0.5]] * 3)

    def get(n):
        asked.append(n)
        return [x[:n] for x in clear[0]], [x[:n] for x in clear[1]]

    v = V.decide(B, get, looks=(3, 5))
    assert v.word == HOLDS and asked == [3] and v.level == pytest.approx(ALPHA / 2)
    noisy = ([[0.5, 0.52, 0.49, 0.5, 0.51]] * 3, [[0.5, 0.5, 0.5, 0.5, 0.5]] * 3)
    asked.clear()
    v = V.decide(B, lambda n: (asked.append(n), ([x[:n] for x in noisy[0]], [x[:n] for x in noisy[1]]))[1])
    assert asked == [3, 5] and v.seeds == 5 and v.word == UNSETTLED
    with pytest.raises(ValueError, match="looks"):
        V.decide(B, get, looks=(5, 3))


def test_families_are_corrected():
    """Six claims with no true difference: Holm keeps the chance of any decisive word at most alpha; "every
    method beats random" (all_of) reads "does not hold" at most alpha of the time (the old AND: 56 %)."""
    rng = np.random.default_rng(3)
    n, m = 2000, 6
    any_decisive = fails = 0
    for _ in range(n):
        fam = {str(j): budget_verdict(B, [list(x) for x in V._simulated(0.0, 3, 0.8, 1, 3, rng)[0]], [[0.0] * 3] * 3)
               for j in range(m)}
        any_decisive += any(v.word != UNSETTLED for v in V.holm(fam).values())
        fails += V.all_of(fam) == FAILS
    assert any_decisive / n <= _mc_bound(ALPHA, n) and fails / n <= _mc_bound(ALPHA, n)
