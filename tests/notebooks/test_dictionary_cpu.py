"""The patch-dictionary notebook executed whole at cpu scale (the whole Fashion-MNIST training split,
262,144 patches, N = 1,024, the explorer's 3x3 / 5x5 / 7x7 settings), through the same cached execution
as `patchnb book`: the numerics that depend on the cpu preset's data sizes, which the smoke-scale pages
never reach. About a minute on two cores."""

import re

import pytest

from patchnb.book import read_glued
from patchnb.build import execute_cached, state_dir

from ..conftest import ROOT, needs_fmnist


def num(text):
    return float(re.findall(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", text.replace(",", ""))[0])


@needs_fmnist
@pytest.mark.slow
def test_dictionary_notebook_at_cpu_scale():
    execute_cached("dictionary", "cpu", ROOT)
    g = read_glued(state_dir(ROOT) / "cpu" / "dictionary.ipynb")
    assert "scale=cpu" in g["data_desc"] and "54000 train" in g["data_desc"]
    assert g["n_patches"] == "262,144" and g["n_centroids"] == "1,024" and int(g["dim"]) == 25
    assert g["patch_desc"] == "5x5 (31,104,000 in all)"  # every patch of the 54,000 training images
    lo, hi = (float(v) for v in g["white_diag"].split("–"))
    assert 0.8 < lo <= hi < 1.2 and num(g["white_offdiag"]) < 0.2
    assert 0 < num(g["top1_share"]) <= 100 and num(g["faiss_speedup"]) > 0
    for key in ("fig_spectrum", "fig_whitened_patches", "fig_centroids", "fig_explore", "tab_backends",
                "tab_algorithm1"):
        assert key in g
