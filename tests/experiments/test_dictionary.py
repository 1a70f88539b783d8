"""The patch-dictionary chapter (Brutzkus et al., ICML 2022, Sec. 5, Algorithm 1, App. C.4) at smoke
scale: the recorded covariance, whitening, k-means and Algorithm 1 numbers (seed 0), validation of the
configuration, and the explorer widget."""

import pytest
import torch

from patchnb.experiments import dictionary

from ..conftest import needs_fmnist
from ..pins import KMEANS_REL, SHARE, trained

# recorded from run(Config.preset("smoke")) on an Intel host with AMX. exact: the data's covariance and its
# whitening (float64 moments of the same patches; agree to 1e-5 relative across hosts), the integer counts
EXACT = {"top1_share": 0.66966, "n90": 5, "condition_number": 1106.03, "white_diag_min": 0.93569,
         "white_diag_max": 1.03076, "white_offdiag": 0.042127, "empty_clusters": 0,
         "quantization_farthest point (Algorithm 1)": 4.45486, "quantization_random patches": 3.41009}
# trained: float32 k-means (faiss and sklearn) over 16,384 patches; their assignments differ between hosts
# (measured: inertia 0.7 %, the largest cluster 0.0144, the quantisation error 0.1 %): bands, tests/pins.py
KMEANS = {"inertia_ratio": 0.999396, "fp_ratio": 1.52310, "inertia_faiss": 66901.34, "inertia_sklearn": 66941.75,
          "quantization_k-means (the paper's code)": 2.92486}
LARGEST_CLUSTER = 0.270996


@needs_fmnist
@pytest.mark.slow
@pytest.mark.pinned
def test_dictionary_smoke_numbers():
    result = dictionary.run(dictionary.Config.preset("smoke"))
    n, t = result.numbers, result.text
    assert {k: n[k] for k in EXACT} == pytest.approx(EXACT, rel=1e-4, abs=1e-4)  # exact (float64 moments)
    assert {k: n[k] for k in KMEANS} == trained(KMEANS, KMEANS_REL, rel=True)  # trained
    assert n["largest_cluster"] == trained(LARGEST_CLUSTER, SHARE)  # trained
    assert (t["top1_share"], t["n90"], t["dim"], t["cond"]) == ("67.0%", "5", "25", "1.11e+03")  # exact
    assert (t["white_diag"], t["white_offdiag"]) == ("0.94–1.03", "0.042")  # exact
    # the words follow the numbers of this run
    assert t["largest_cluster"] == f"{100 * n['largest_cluster']:.1f}%" and t["fp_ratio"] == f"{n['fp_ratio']:.2f}"
    assert t["fp_cover"] == ("better" if n["fp_ratio"] < 1 else "worse")
    assert t["patch_desc"] == "5x5 (1,152,000 in all)" and t["data_desc"].endswith("; scale=smoke")
    assert list(result.tables["tab_backends"].index) == ["faiss", "sklearn"]
    assert set(result.figures) == {"fig_spectrum", "fig_whitened_patches", "fig_centroids", "fig_explore"}


@pytest.mark.parametrize("field, value", [("patch_size", 0), ("whitening", "svd"), ("n_patches", 0),
                                          ("n_centroids", 2.5), ("dataset", "mnist"), ("compare_k", 10 ** 6),
                                          ("n_iter", 0), ("train_size", -1)])
def test_dictionary_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        dictionary.Config.preset("smoke", **{field: value})


def test_dictionary_config_presets_and_budget():
    cpu = dictionary.Config.preset("cpu")
    assert (cpu.n_patches, cpu.n_centroids, cpu.compare_points, cpu.compare_k, cpu.n_iter) == (262144, 1024, 65536,
                                                                                               256, 20)
    assert dictionary.Config.preset("paper").dataset == "cifar10"
    assert dictionary.Config.preset("smoke").at_budget(0.5).n_patches == 4096
    with pytest.raises(ValueError, match="one seed"):
        dictionary.Config.preset("smoke", seeds=[0, 1])
    with pytest.raises(ValueError, match="n_centroids=64 must not exceed n_patches=32"):
        dictionary.Config.preset("smoke", n_patches=32, compare_k=8)


def test_explorer_acts_on_release(monkeypatch):
    """The widget rebuilds a dictionary once per released slider (continuous_update=False)."""
    pytest.importorskip("ipywidgets")
    from ipywidgets import IntSlider

    g = torch.Generator().manual_seed(0)
    train = torch.randn(64, 1, 12, 12, generator=g)
    calls = []
    real = dictionary.explore_figure
    monkeypatch.setattr(dictionary, "explore_figure", lambda *a, **k: calls.append(a) or real(*a, **k))
    w = dictionary.explorer(dictionary.Config.preset("smoke"), train=train)
    sliders = [c for c in w.children if isinstance(c, IntSlider)]
    assert sliders and all(not s.continuous_update for s in sliders)
    assert sliders[0].max == 9 and sliders[0].value == 5
    n0 = len(calls)
    sliders[0].value = 3  # one release of the slider: one k-means
    assert len(calls) == n0 + 1 and calls[-1][1:3] == (3, "zca")


def test_explore_figure_draws_n_centroids():
    train = torch.randn(40, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    fig = dictionary.explore_figure(train, 3, "pca", 16, n_sampled=500, n_moments=40)
    assert len([a for a in fig.axes if a.images]) == 16
    with pytest.raises(ValueError, match="kind"):
        dictionary.explore_figure(train, 3, "svd", 16)


def test_page_shows_precomputed_explorer_states():
    """The HTML has no kernel: the explorer's section shows a grid of precomputed states instead."""
    train = torch.randn(40, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    states = {f"{s}-{k}": dictionary.explore_centroids(train, s, k, 4, n_sampled=300, n_moments=40)
              for s in (2, 3) for k in ("none", "zca")}
    assert states["3-zca"].shape == (4, 1, 3, 3)
    from patchnb import plots

    fig = plots.explore_grid(states, (2, 3), ("none", "zca"))
    assert len([a for a in fig.axes if a.images]) == 16
    with pytest.raises(ValueError, match="size=11"):
        dictionary.explore_centroids(train, 11, "zca", 4)
    with pytest.raises(ValueError, match="explore_kinds"):
        dictionary.Config.preset("smoke", explore_kinds=("svd",))
