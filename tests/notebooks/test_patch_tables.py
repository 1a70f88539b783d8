"""The patch chapter (Brutzkus et al., ICML 2022) at smoke scale: glued accuracies are percentages
with a spread, and every verdict in the prose agrees with the glued numbers it is computed from. The
recipes' recorded numbers are pinned in tests/experiments/test_patch_*.py."""

import re

import pytest

V = ("holds", "does not hold")


def acc(text):
    m, s = (float(v) for v in re.findall(r"[-+]?\d*\.?\d+", text)[:2])
    assert 0 <= m <= 100 and s >= 0 and "±" in text
    return m


def check(g, claim, a, b):
    assert g[claim] in V
    # verdicts compare unrounded means; allow equality of the rounded strings either way
    if acc(g[a]) != acc(g[b]):
        assert (g[claim] == "holds") == (acc(g[a]) > acc(g[b])), (claim, g[a], g[b])


def test_patch_table1(glued):
    g = glued("patch_table1")
    assert "scale=smoke" in g["data_desc"] and "fashion_mnist" in g["data_desc"] and "seeds" in g["budget_desc"]
    check(g, "claim_beats_cnn", "acc_full_clustered", "acc_cnn")
    check(g, "claim_clustered_full", "acc_full_clustered", "acc_full_random")
    check(g, "claim_clustered_hard", "acc_hard_clustered", "acc_hard_random")
    check(g, "claim_full_hard", "acc_full_clustered", "acc_hard_clustered")
    target = float(g["target_acc"].rstrip("%"))
    assert g["claim_90"] == ("holds" if acc(g["acc_full_clustered"]) >= target else "does not hold")
    assert "tab_table1" in g


def test_patch_table2(glued):
    g = glued("patch_table2")
    check(g, "claim_constrained", "acc_constrained", "acc_simple")
    assert "tab_table2" in g and "batch 32" in g["t2_desc"]


def test_patch_table3(glued):
    g = glued("patch_table3")
    names = ("original", "avgpool", "bottleneck", "both")
    means = {n: acc(g[f"acc_{n}"]) for n in names}
    order = g["t3_order"].split(" > ")
    assert sorted(order) == sorted(["Original", "AvgPool", "Bottleneck", "Both"])
    assert [means[n.lower()] for n in order] == sorted(means.values(), reverse=True)
    assert g["claim_both_best"] == ("holds" if order[0] == "Both" else "does not hold")
    check(g, "claim_pool_helps", "acc_avgpool", "acc_original")
    check(g, "claim_bottleneck_helps", "acc_bottleneck", "acc_original")


def test_patch_table4(glued):
    g = glued("patch_table4")
    depth = int(g["max_depth"])
    assert depth >= 2
    for key in ("full", "hard", "cnn", "cnn_layerwise"):
        accs = [acc(g[f"acc_{key}_d{d}"]) for d in range(1, depth + 1)]
        best = int(g[f"best_depth_{key}"])
        assert 1 <= best <= depth and accs[best - 1] == max(accs)
    check(g, "claim_depth_full", f"acc_full_d{depth}", "acc_full_d1")
    check(g, "claim_depth_hard", f"acc_hard_d{depth}", "acc_hard_d1")
    check(g, "claim_full_vs_cnn", f"acc_full_d{depth}", f"acc_cnn_d{depth}")
    assert "fig_table4" in g and "tab_table4" in g


@pytest.mark.parametrize("key", ["fig6", "fig8", "fig9", "tab_figures"])
def test_patch_figures(glued, key):
    g = glued("patch_figures")
    assert key in g
    ks = [int(v) for v in g["ks"].split(", ")]
    ns = [int(v) for v in g["ns"].split(", ")]
    assert int(g["best_k"]) in ks and int(g["best_n"]) in ns and len(ks) >= 2 and len(ns) >= 2
    assert g["claim_k_interior"] in V and g["claim_n_grows"] in V
    if int(g["best_k"]) in (ks[0], ks[-1]):
        assert g["claim_k_interior"] == "does not hold"
