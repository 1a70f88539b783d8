"""The self-supervised zoo at smoke scale: every method and both baselines have a row, accuracies are
percentages, and the glued words the prose cites (ranking, verdicts, gaps) agree with the glued numbers."""

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
    for key in ("tab_zoo", "fig_curves", "fig_plane", "fig_confusion", "fig_query"):
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
    # against the random encoder
    beat = [n for n in SSL if probe[n] > probe["random"]]
    assert int(g["n_beat_random"]) == len(beat)
    assert g["random_verdict"] == ("are" if len(beat) == len(SSL) else "are not")
    assert (g["beat_list"] == "none") if not beat else all(LABELS[n] in g["beat_list"] for n in beat)
    # distance to the supervised bound: the signed gap of every method matches the numbers
    for name, gaps, ref in (("supervised", g["supervised_gaps"], probe["supervised"]),
                            ("random", g["random_gaps"], probe["random"])):
        for n in SSL:
            m = re.search(re.escape(LABELS[n]) + r"[^,]* ([+-]\d+\.\d)", gaps)
            assert m, (name, n)
            assert abs(float(m.group(1)) - (probe[n] - ref)) < 0.11, (name, n)
    above = [n for n in SSL if probe[n] > probe["supervised"]]
    assert int(g["n_above_supervised"]) == len(above)
    assert g["bound_verdict"] == ("is not yet" if above else "is")
    assert g["phi_verdict"] == ("above" if probe["phi_full"] > probe[g["best_ssl"]] else "not above")
    assert 0.0 <= float(g["phi_trained_acc"]) <= 100.0
    rho = float(g["rho_uniformity"])
    assert -1.0 <= rho <= 1.0 and int(g["n_encoders"]) == len(SSL + BASELINES)
    clear = float(g["rho_clear"])
    assert g["rho_verdict"] == ("a negative" if rho < -clear else "a positive" if rho > clear else "no clear")
    assert float(g["wall_clock"]) > 0 and float(g["compute_seconds"]) > 0
