"""The patch chapter (Brutzkus et al., ICML 2022) at smoke scale: glued accuracies are percentages
with a spread, every verdict is one of the book's three words and agrees with its glued gap (the
difference at the largest budget, decided by patchnb.experiments.verdict.budget_verdict), every figure
the prose references is glued, and the budget curve has three budgets. The recipes' recorded numbers are
pinned in tests/experiments/test_patch_*.py."""

import re

import pytest

from patchnb.experiments.verdict import FAILS, HOLDS, UNSETTLED, VERDICTS


def acc(text):
    m, s = (float(v) for v in re.findall(r"[-+]?\d*\.?\d+", text)[:2])
    assert 0 <= m <= 100 and s >= 0 and "±" in text
    return m


def gap(text):
    """(difference in points, half the width of its confidence interval or None without one) of a ``<claim>_gap``."""
    m = re.fullmatch(r"([-+]\d+\.\d) points (?:\(\d+(?:\.\d+)? % CI ([-+]\d+\.\d) to ([-+]\d+\.\d)\)|"
                     r"\((?:one seed|no spread over seeds): no interval\))", text)
    assert m, text
    return float(m.group(1)), ((float(m.group(3)) - float(m.group(2))) / 2 if m.group(2) else None)


def check(g, claim, a=None, b=None):
    """The verdict is a rule word, its gap has the claimed sign when it holds (the opposite when it
    does not), and the gap is the difference of the glued full-budget accuracies (each rounded to 0.1,
    the gap too: 0.15 at most)."""
    word, (d, band) = g[claim], gap(g[f"{claim}_gap"])
    assert word in VERDICTS
    if word == HOLDS:
        assert d > 0 and band is not None and d > band
    if word == FAILS:
        assert d < 0 and band is not None and -d > band
    if band is None:  # one seed never settles a claim
        assert word == UNSETTLED
    if a is not None:
        assert d == pytest.approx(acc(g[a]) - acc(g[b]), abs=0.16), (claim, g[a], g[b], g[f"{claim}_gap"])


def budgets(g):
    sizes = [int(v.replace(",", "")) for v in g["budget_images"].split(", ")]
    assert len(sizes) == 3 and sizes == sorted(sizes) and "epoch(s) at every budget" in g["budget_schedule"]
    return sizes


def test_patch_table1(glued):
    g = glued("patch_table1")
    assert "scale=smoke" in g["data_desc"] and "fashion_mnist" in g["data_desc"] and "seeds" in g["budget_desc"]
    assert budgets(g) == [64, 128, 256]
    check(g, "claim_beats_cnn", "acc_full_clustered", "acc_cnn")
    check(g, "claim_clustered_full", "acc_full_clustered", "acc_full_random")
    check(g, "claim_clustered_hard", "acc_hard_clustered", "acc_hard_random")
    check(g, "claim_full_hard", "acc_full_clustered", "acc_hard_clustered")
    check(g, "claim_90")
    target = float(g["target_acc"].rstrip("%"))
    assert gap(g["claim_90_gap"])[0] == pytest.approx(acc(g["acc_full_clustered"]) - target, abs=0.16)
    assert {"tab_table1", "fig_table1", "fig_curves_table1", "fig_budget_table1"} <= set(g)


def test_patch_table2(glued):
    g = glued("patch_table2")
    budgets(g)
    check(g, "claim_constrained", "acc_constrained", "acc_simple")
    assert {"tab_table2", "fig_table2", "fig_curves_table2", "fig_budget_table2"} <= set(g)
    assert "batch 32" in g["t2_desc"]
    # the Simple model is one linear layer over N*D*H*W (issue 12): N*D*H*W*10 + 10 parameters, N from t2_desc
    n = int(re.search(r"N=(\d+)", g["t2_desc"]).group(1))
    assert int(g["simple_params"].replace(",", "")) == n * 25 * 24 * 24 * 10 + 10
    assert g["simple_params_paper"] == "150,528,010"


def test_patch_table3(glued):
    g = glued("patch_table3")
    budgets(g)
    names = ("original", "avgpool", "bottleneck", "both")
    means = {n: acc(g[f"acc_{n}"]) for n in names}
    order = g["t3_order"].split(" > ")
    assert sorted(order) == sorted(["Original", "AvgPool", "Bottleneck", "Both"])
    assert [means[n.lower()] for n in order] == sorted(means.values(), reverse=True)
    assert g["t3_rival"] == next(n for n in order if n != "Both")
    check(g, "claim_both_best", "acc_both", f"acc_{g['t3_rival'].lower()}")
    check(g, "claim_pool_helps", "acc_avgpool", "acc_original")
    check(g, "claim_bottleneck_helps", "acc_bottleneck", "acc_original")
    assert {"tab_table3", "fig_table3", "fig_curves_table3", "fig_budget_table3"} <= set(g)


def test_patch_table4(glued):
    g = glued("patch_table4")
    budgets(g)
    depth = int(g["max_depth"])
    assert depth >= 2
    for key in ("full", "hard", "cnn", "cnn_layerwise"):
        accs = [acc(g[f"acc_{key}_d{d}"]) for d in range(1, depth + 1)]
        best = int(g[f"best_depth_{key}"])
        assert 1 <= best <= depth and accs[best - 1] == max(accs)
    check(g, "claim_depth_full", f"acc_full_d{depth}", "acc_full_d1")
    check(g, "claim_depth_hard", f"acc_hard_d{depth}", "acc_hard_d1")
    check(g, "claim_full_vs_cnn", f"acc_full_d{depth}", f"acc_cnn_d{depth}")
    assert {"tab_table4", "fig_table4", "fig_curves_table4", "fig_budget_table4"} <= set(g)


@pytest.mark.parametrize("key", ["fig6", "fig8", "fig9", "tab_figures", "fig_budget_k", "fig_budget_n",
                                 "fig_curves_figures"])
def test_patch_figures(glued, key):
    g = glued("patch_figures")
    assert key in g
    budgets(g)
    ks = [int(v) for v in g["ks"].split(", ")]
    ns = [int(v) for v in g["ns"].split(", ")]
    assert int(g["best_k"]) in ks and int(g["best_n"]) in ns and len(ks) >= 3 and len(ns) >= 2
    interior, end = (int(re.match(r"k=(\d+)", g[n]).group(1)) for n in ("k_interior", "k_end"))
    assert interior in ks[1:-1] and end in (ks[0], ks[-1])
    check(g, "claim_k_interior")
    check(g, "claim_n_grows")
