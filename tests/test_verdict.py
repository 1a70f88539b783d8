"""The budget-curve verdict rule on made-up curves (values hand-picked so each case is decided by one part
of the rule)."""
import math

import pytest

from patchnb.experiments.verdict import FAILS, HOLDS, UNSETTLED, budget_verdict, difference

B = [1000, 2000, 4000]


def test_paired_difference_and_standard_error_by_hand():
    # differences 0.1, 0.3 -> mean 0.2, sd sqrt(0.02) = 0.1414, se = 0.1
    d, se = difference([0.6, 0.8], [0.5, 0.5], paired=True)
    assert d == pytest.approx(0.2) and se == pytest.approx(0.1)
    d, se = difference([0.6, 0.8], [0.5, 0.7], paired=False)  # sqrt(0.02/2 + 0.02/2) = 0.1414
    assert d == pytest.approx(0.1) and se == pytest.approx(math.sqrt(0.02))
    assert difference([0.9], 0.5, paired=True) == (pytest.approx(0.4), math.inf)


def test_clear_gain_at_the_two_largest_budgets_holds():
    a = [[0.50, 0.52], [0.70, 0.71], [0.80, 0.81]]
    b = [[0.55, 0.56], [0.60, 0.61], [0.70, 0.70]]  # a loses at the smallest budget: only the largest two count
    v = budget_verdict(B, a, b)
    assert v.word == HOLDS and v.diffs[-1] == pytest.approx(0.105)
    assert budget_verdict(B, b, a, claimed="less").word == HOLDS
    assert budget_verdict(B, b, a).word == FAILS


def test_gap_within_two_standard_errors_is_not_settled():
    # differences at the largest budget 0.02 and 0.00: mean 0.01, se 0.01 -> 0.01 < 2 * 0.01
    a = [[0.7, 0.7], [0.72, 0.70], [0.82, 0.80]]
    b = [[0.6, 0.6], [0.70, 0.69], [0.80, 0.80]]
    assert budget_verdict(B, a, b).word == UNSETTLED


def test_sign_flip_between_the_two_largest_budgets_is_not_settled():
    a = [[0.7, 0.71], [0.60, 0.61], [0.90, 0.91]]
    b = [[0.6, 0.61], [0.70, 0.71], [0.80, 0.81]]
    assert budget_verdict(B, a, b).word == UNSETTLED


def test_one_seed_never_settles_a_claim():
    assert budget_verdict(B, [[0.5], [0.6], [0.9]], [[0.1], [0.1], [0.1]]).word == UNSETTLED


def test_threshold_claim():
    a = [[0.80, 0.81], [0.88, 0.89], [0.92, 0.925]]
    assert budget_verdict(B, a, 0.90).word == UNSETTLED  # below 0.90 at the second-largest budget
    assert budget_verdict(B, [[0.91, 0.92], [0.93, 0.935], [0.95, 0.951]], 0.90).word == HOLDS
    assert budget_verdict(B, [[0.5, 0.51], [0.6, 0.61], [0.7, 0.705]], 0.90).word == FAILS


def test_budgets_are_sorted_and_checked():
    a = [[0.8, 0.81], [0.5, 0.52], [0.70, 0.71]]
    b = [[0.7, 0.70], [0.55, 0.56], [0.60, 0.61]]
    assert budget_verdict([4000, 1000, 2000], a, b).word == HOLDS
    with pytest.raises(ValueError, match=">= 3 budgets"):
        budget_verdict([1, 2], a[:2], b[:2])
    with pytest.raises(ValueError, match="claimed='more'"):
        budget_verdict(B, a, b, claimed="more")
    with pytest.raises(ValueError, match="finite"):
        budget_verdict(B, [[0.1, 0.2], [float("nan"), 0.3], [0.2, 0.2]], b)


def test_gap_text_with_and_without_an_error_bar():
    # paired differences 0.10, 0.12 at the largest budget: mean 0.11, se = 0.01 -> "+11.0 ± 2.0 points"
    a = [[0.6, 0.6], [0.7, 0.7], [0.80, 0.82]]
    b = [[0.5, 0.5], [0.6, 0.6], [0.70, 0.70]]
    assert budget_verdict(B, a, b).gap() == "+11.0 ± 2.0 points"
    one = budget_verdict(B, [[0.6], [0.7], [0.8]], [[0.5], [0.6], [0.75]])
    assert one.gap() == "+5.0 points (one seed: no error bar)"
    assert one.gap(scale=1.0, digits=2, unit="") == "+0.05 (one seed: no error bar)"


@pytest.mark.parametrize("fractions", [(0.5, 1.0), (0.25, 0.5, 0.75), (0.5, 0.5, 1.0), [0.25, 0.5, 1.0],
                                       (0.0, 0.5, 1.0), (True, 0.5, 1.0), (0.25, 0.5, 1.5)])
def test_budget_fractions_are_checked_once_for_every_page(fractions):
    from patchnb.experiments.verdict import check_budget_fractions

    with pytest.raises(ValueError, match=r"budget_fractions=.* distinct fractions of n_train in \(0, 1\]"):
        check_budget_fractions(fractions, "n_train")
    check_budget_fractions((0.25, 0.5, 1.0), "n_train")  # the default passes


def test_crossing_extrapolates_the_two_largest_budgets_on_a_log_axis():
    # a threshold 0.9: accuracy 0.80 at 1,000 and 0.85 at 4,000 images gains 5 points per 4x on a log
    # axis; 5 more points need another 4x: 16,000 images, 4.0x the largest budget (hand-worked)
    v = budget_verdict([250, 1000, 4000], [[0.7, 0.7], [0.8, 0.8], [0.85, 0.85]], 0.9)
    assert v.word == FAILS and v.crossing() == pytest.approx(16000)
    assert v.crossing_text() == ("the straight line through the two largest budgets (on a log axis) reaches it at "
                                 "about 16,000 training images, 4.0x the largest budget here (an extrapolation, "
                                 "not a measurement)")
    flat = budget_verdict([250, 1000, 4000], [[0.7], [0.85], [0.85]], 0.9)
    assert flat.crossing() is None and "does not move toward" in flat.crossing_text()
    less = budget_verdict([1, 2, 4], [[0.5], [0.6], [0.55]], 0.5, claimed="less")  # 0.1 -> 0.05 per 2x: 0 at 8
    assert less.crossing() == pytest.approx(8)
    held = budget_verdict([1, 2, 4], [[0.6], [0.7], [0.8]], 0.5)
    assert held.crossing() is None and held.crossing_text() == "the largest budget already has the claimed sign"
