"""The self-supervised zoo at smoke scale: every method and both baselines have a row, accuracies are
percentages, and the verdict sentences agree with the glued numbers."""

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
    assert g["best_label"] in g["rank_text"] and f"{probe[order[0]]:.1f}%" in g["rank_text"]
    # against the random encoder
    beat = [n for n in SSL if probe[n] > probe["random"]]
    assert int(g["n_beat_random"]) == len(beat)
    text = g["random_text"]
    if not beat:
        assert text.startswith("No self-supervised method beats") and "strong baseline" in text
    elif len(beat) == len(SSL):
        assert text.startswith("Every self-supervised method beats")
    else:
        assert text.startswith(f"{len(beat)} of {len(SSL)}")
    assert f"{probe['random']:.1f}%" in text
    # distance to the supervised bound: the direction word of every method matches the numbers
    assert f"{probe['supervised']:.1f}%" in g["gap_text"]
    for n in SSL:
        d = probe["supervised"] - probe[n]
        m = re.search(re.escape(LABELS[n]) + r"[^;]* is (\d+\.\d) points (below|above)", g["gap_text"])
        assert m, n
        assert abs(float(m.group(1)) - abs(d)) < 0.11 and m.group(2) == ("below" if d > 0 else "above")
    assert ("above" if probe["phi_full"] > probe[g["best_ssl"]] else "not above") in g["phi_text"]
    assert -1.0 <= float(g["rho_uniformity"]) <= 1.0
    assert float(g["wall_clock"]) > 0 and float(g["compute_seconds"]) > 0
