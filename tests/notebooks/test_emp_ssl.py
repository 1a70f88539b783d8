"""The EMP-SSL chapter at smoke scale: curves vs SimCLR and a random encoder, patch-averaged evaluation
(the numbers themselves are pinned in tests/experiments/test_emp_ssl.py)."""

import re


def num(text):
    return float(re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", text.replace(",", ""))[0])


def test_emp_ssl_notebook(glued):
    g = glued("emp_ssl")
    assert "scale=smoke" in g["data_desc"] and "fashion_mnist" in g["data_desc"]
    for key in ("emp1_lin", "emp1_knn", "sim1_lin", "sim1_knn", "rand_lin", "rand_knn"):
        assert 0 <= num(g[key]) <= 100
    assert g["claim_random"] in ("holds", "does not hold") and g["vs_simclr"] in ("better than", "not better than")
    assert (g["claim_random"] == "holds") == (num(g["emp1_lin"]) > num(g["rand_lin"])
                                              and num(g["emp1_knn"]) > num(g["rand_knn"]))
    assert (g["vs_simclr"] == "better than") == (num(g["emp1_lin"]) > num(g["sim1_lin"]))
    assert num(g["emp_ips"]) > 0 and int(g["sim_epochs"]) >= 1 and int(g["n_patches_t"]) >= 2
    assert num(g["unif_emp"]) <= 0 and num(g["unif_rand"]) <= 0  # log of a mean of exp(-t d^2) <= 0
    for key in ("last_lin_patch", "last_lin_whole", "last_knn_patch", "last_knn_whole"):
        assert 0 <= num(g[key]) <= 100 and g[key].endswith("%")
    assert g["spread_verdict"] in ("spread out", "did not spread out")
    assert (g["spread_verdict"] == "spread out") == (num(g["unif_emp"]) < num(g["unif_rand"]))
    for key in ("fig_curves", "tab_results", "fig_sphere"):
        assert key in g
