"""The shape-vs-texture chapter at smoke scale: glued numbers exist and lie in their ranges."""

import re


def num(text):
    return float(re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", text.replace(",", ""))[0])


def test_shape_bias_notebook(glued):
    g = glued("shape_bias")
    assert "scale=smoke" in g["data_desc"] and "Fashion-MNIST" in g["data_desc"]
    for key in ("sb_cons_range", "sb_styl_range"):
        lo, hi = (float(v) for v in g[key].rstrip("%").split("–"))
        assert 0 <= lo <= hi <= 100
    assert -100 <= num(g["sb_gain"]) <= 100
    assert int(g["n_excluded"]) == 0  # the cue-conflict generator never repeats the shape class as texture
    assert 0 <= num(g["n_other_share"]) <= 100 and num(g["run_seconds"]) > 0
    assert "fashion_mnist" in g["fm_desc"]
    for key in ("fig_stimuli", "fig_shape_bias", "fig_examples", "tab_shape_bias", "tab_transfer"):
        assert key in g
    for model in ("resnet", "vit"):
        assert model in g["tab_shape_bias"]
    assert "patch" in g["tab_shape_bias"]  # the Phi_full network takes part (smoke preset: resnet, vit, patch)
    n, n_tex = int(g["n_models"]), int(g["n_texture_biased"])
    assert 0 <= n_tex <= n and 0 <= int(g["n_moved"]) <= n
    listed = [] if g["texture_biased"] == "none" else g["texture_biased"].split(", ")
    assert len(listed) == n_tex  # the verdict names exactly the counted models
    # the claims are the book's budget rule's words (smoke has resnet (conv) and vit (attention), one seed)
    verdicts = ("holds", "does not hold", "not settled at this budget")
    for claim in ("claim_attn_shape", "claim_stylized"):
        assert g[claim] in verdicts and " points" in g[f"{claim}_gap"], claim
    assert "fig_budget_shape_bias" in g and g["budget_images"].count(",") == 2 and g["claim_models"] == "resnet, vit"
    assert -100 <= num(g["claim_attn_shape_gap"]) <= 100
