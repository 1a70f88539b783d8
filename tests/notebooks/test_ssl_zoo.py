"""The self-supervised zoo at smoke scale: every method and both baselines have a row, accuracies are
percentages, and the glued words the prose cites (ranking, verdicts of the book's budget rule, gaps) agree
with the glued numbers."""

import re

SSL = ["simclr", "mocov2", "hcl", "deepcluster", "context_encoder", "detcon"]
BASELINES = ["random", "supervised", "phi_full"]
LABELS = {"simclr": "SimCLR", "mocov2": "MoCo v2", "hcl": "HCL", "deepcluster": "DeepCluster",
          "context_encoder": "Context Encoder", "detcon": "DetCon_S", "random": "random encoder",
          "supervised": "supervised (upper bound)", "phi_full": "Phi_full"}


def test_ssl_zoo_notebook(glued):
    g = glued("ssl_zoo")
    assert "scale=smoke" in g["data_desc"] and "fashion_mnist" in g["data_desc"]
    assert "images seen per method" in g["budget_desc"]
    assert g["row_keys"].split(",") == SSL + BASELINES
    for key in ("tab_zoo", "fig_curves", "fig_plane", "fig_confusion", "fig_query", "fig_budget_zoo"):
        assert key in g
    for n in SSL + BASELINES:
        assert LABELS[n] in g["tab_zoo"], n
        for metric in ("probe", "knn"):
            assert 0.0 <= float(g[f"{metric}_{n}"]) <= 100.0

    probe = {n: float(g[f"probe_{n}"]) for n in SSL + BASELINES}
    # ranking: the glued order is by probe accuracy, its head is the best method
    order = g["rank_order"].split(",")
    assert sorted(order) == sorted(SSL)
    assert all(probe[a] >= probe[b] for a, b in zip(order, order[1:]))
    assert g["best_ssl"] == order[0] and probe[order[0]] == max(probe[n] for n in SSL)
    assert g["rank_list"].startswith(g["best_label"]) and f"{probe[order[0]]:.1f}%" in g["rank_list"]
    assert g["probe_best"] == g[f"probe_{order[0]}"] and g["n_ssl"] == str(len(SSL))
    verdicts = ("holds", "does not hold", "not settled at this budget")
    claims = [f"claim_random_{n}" for n in SSL] + ["claim_bound", "claim_phi", "claim_uniformity"]
    for claim in claims:
        assert g[claim] in verdicts, claim
        assert g[f"{claim}_gap"], claim
    # against the random encoder: the methods whose claim holds are counted and listed
    beat = [n for n in SSL if g[f"claim_random_{n}"] == "holds"]
    assert int(g["n_beat_random"]) == len(beat)
    assert (g["beat_list"] == "none") if not beat else all(LABELS[n] in g["beat_list"] for n in beat)
    words = [g[f"claim_random_{n}"] for n in SSL]
    assert g["claim_all_random"] == ("holds" if all(w == "holds" for w in words) else "does not hold"
                                     if "does not hold" in words else "not settled at this budget")
    for n in SSL:  # each method's claim and gap, as the prose lists them
        m = re.search(re.escape(LABELS[n]) + r"[^;]* (holds|does not hold|not settled at this budget) \(([+-]\d+\.\d)",
                      g["random_claims"])
        assert m and m.group(1) == g[f"claim_random_{n}"], n
        assert abs(float(m.group(2)) - (probe[n] - probe["random"])) < 0.11, n
    # distance to the supervised bound: the signed gap of every method matches the numbers
    for n in SSL:
        m = re.search(re.escape(LABELS[n]) + r"[^,]* ([+-]\d+\.\d)", g["supervised_gaps"])
        assert m, n
        assert abs(float(m.group(1)) - (probe[n] - probe["supervised"])) < 0.11, n
    best = g["best_ssl"]
    assert abs(float(g["claim_bound_gap"].split()[0]) - (probe["supervised"] - probe[best])) < 0.11
    assert abs(float(g["claim_phi_gap"].split()[0]) - (probe["phi_full"] - probe[best])) < 0.11
    assert 0.0 <= float(g["phi_trained_acc"]) <= 100.0
    rho = float(g["rho_uniformity"])
    assert -1.0 <= rho <= 1.0 and int(g["n_encoders"]) == len(SSL + BASELINES)
    assert g["budget_images"].count(",") == 2 and int(g["n_seeds"]) >= 1
    assert float(g["wall_clock"]) > 0 and float(g["compute_seconds"]) > 0
