"""The patch-dictionary and intrinsic-dimension chapters at smoke scale: the glued numbers exist and are
sane, and the explorer widget stays inert in batch mode."""

import json
import re

from patchnb.build import state_dir

from ..conftest import ROOT


def num(text):
    return float(re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", text.replace(",", ""))[0])


def test_dictionary_notebook(glued):
    g = glued("dictionary")
    assert "scale=smoke" in g["data_desc"] and "fashion_mnist" in g["data_desc"]
    assert 0 < num(g["top1_share"]) <= 100 and 1 <= int(g["n90"]) <= int(g["dim"]) == 25
    # PCA-whitened held-out patches have (near) unit variance
    lo, hi = (float(v) for v in g["white_diag"].split("–"))
    assert 0.8 < lo <= hi < 1.2 and num(g["white_offdiag"]) < 0.2
    assert num(g["faiss_speedup"]) > 0 and 0.5 < num(g["inertia_ratio"]) < 2
    assert num(g["fp_ratio"]) > 0 and g["fp_cover"] == ("better" if num(g["fp_ratio"]) < 1 else "worse")
    for key in ("fig_spectrum", "fig_whitened_patches", "fig_centroids", "tab_backends", "tab_algorithm1"):
        assert key in g
    executed = json.loads((state_dir(ROOT) / "smoke" / "dictionary.ipynb").read_text())
    explorer = [c for c in executed["cells"] if "exp.explorer" in "".join(c["source"])]
    assert len(explorer) == 1 and not explorer[0]["outputs"]  # batch mode: no widget built


def test_intrinsic_dimension_notebook(glued):
    g = glued("intrinsic_dimension")
    assert "scale=smoke" in g["data_desc"]
    dims = {k: num(g[f"dim_{k}"]) for k in ("original", "whitened", "shuffled", "whitened_shuffled", "gaussian")}
    assert all(d > 0 for d in dims.values())
    verdicts = ("holds", "does not hold", "not settled at this budget")
    assert g["claim_low"] in verdicts and g["claim_gauss"] in verdicts
    # the book's rule: a claim that holds has the claimed sign at the full budget (means over seeds)
    if g["claim_gauss"] == "holds":
        assert dims["gaussian"] >= max(dims.values()) - 0.05 and g["claim_gauss_gap"].startswith("+")
    if g["claim_low"] == "holds":
        assert g["claim_low_gap"].startswith("-")
    assert "fig_budget_dims" in g and g["budget_points"].count(",") >= 2
    assert 10 < num(g["zero_share"]) < 25  # the background share of Fashion-MNIST in [0, 1] pixels
