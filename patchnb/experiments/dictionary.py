"""The patch dictionary chapter: patch covariance, PCA/ZCA whitening, the k-means dictionary, faiss
against scikit-learn, and the paper's Algorithm 1 against k-means.

Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features", ICML 2022: Sec. 5 (the
dictionary: k-means on whitened patches), Algorithm 1 ("Clustering": greedy farthest-point
selection) and App. C.4 (whitening, Figure 7). The recipe

1. streams the mean and covariance of *all* ``patch_size`` patches of the training split
   (:func:`patchnb.patches.patch_moments`) and builds the PCA, ZCA and identity whitenings;
2. measures how well PCA whitening decorrelates ``n_held`` held-out patches;
3. samples ``n_patches`` patches (norms below 0.01 dropped, as the paper's code does), whitens them
   (``whitening``) and runs k-means with ``n_centroids`` centroids; a second k-means on ZCA-whitened
   patches gives centroids that can be drawn as images;
4. times faiss against scikit-learn on the first ``compare_points`` whitened patches (k = ``compare_k``);
5. compares k-means, Algorithm 1 and random patches by the mean distance from the held-out whitened
   patches to their nearest dictionary element.

Deviations from the patch paper's original code: the dictionary is estimated in the normalised pixel
space the network sees (the original code used [0, 1] pixels for the dictionary and [-1, 1] for the
network); the covariance is that of every patch of the training split, not of a sample. Algorithm 1
appears in the paper but not in its code, which uses k-means only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from .. import cluster, data, patches, plots
from ..cache import cached
from ..checks import check_choice, check_int
from ..train import resolve_device
from .base import ExperimentConfig
from .data_source import check_dataset
from .result import Result

DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder")
N_SHOWN = 16  # patches drawn before and after whitening (Figure 7)
MAX_DRAWN_CENTROIDS = 64  # ZCA centroids drawn as images
ALGORITHM1 = "farthest point (Algorithm 1)"
KMEANS = "k-means (the paper's code)"


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """One run of the chapter (its seed is ``seeds[0]``; the page is a single run)."""

    dataset: str = "fashion_mnist"
    data_root: str | None = None  # the ImageFolder root, for dataset "imagefolder"
    train_size: int | None = None  # None: the whole training split
    patch_size: int = 5
    whitening: str = "pca"
    n_patches: int = 262144
    n_centroids: int = 1024
    n_iter: int = 20  # Lloyd iterations of every k-means
    n_held: int = 20000  # held-out patches for the whitening check and the Algorithm 1 comparison
    compare_points: int = 65536
    compare_k: int = 256
    # precomputed states of the explorer, drawn on the page (the HTML has no live kernel)
    explore_sizes: tuple[int, ...] = (3, 5, 7)
    explore_kinds: tuple[str, ...] = ("none", "zca")
    explore_n: int = 16

    BUDGET: ClassVar[str] = "n_patches"

    def validate(self) -> None:
        check_dataset(self, DATASETS)
        check_int("train_size", self.train_size, 1, allow_none=True)
        check_int("patch_size", self.patch_size, 1)
        check_choice("whitening", self.whitening, patches.WHITENINGS)
        check_int("n_patches", self.n_patches, 1)
        check_int("n_centroids", self.n_centroids, 1)
        if self.n_centroids > self.n_patches:
            raise ValueError(f"n_centroids={self.n_centroids} must not exceed n_patches={self.n_patches}")
        check_int("n_iter", self.n_iter, 1)
        check_int("n_held", self.n_held, 2)
        check_int("compare_points", self.compare_points, 1)
        check_int("compare_k", self.compare_k, 1)
        if self.compare_k > min(self.compare_points, self.n_patches):
            raise ValueError(f"compare_k={self.compare_k} must not exceed compare_points={self.compare_points} "
                             f"(nor n_patches={self.n_patches})")
        if not self.explore_sizes or not self.explore_kinds:
            raise ValueError("explore_sizes and explore_kinds must each list at least one value")
        for size in self.explore_sizes:
            check_int("explore_sizes", size, 1)
        for kind in self.explore_kinds:
            check_choice("explore_kinds", kind, patches.WHITENINGS)
        check_int("explore_n", self.explore_n, 1)
        if len(self.seeds) != 1:
            raise ValueError(f"seeds={list(self.seeds)}: the dictionary page is one run; give one seed")

    @property
    def seed(self) -> int:
        return self.seeds[0]


PRESETS = {
    "smoke": dict(dataset="fashion_mnist", train_size=2000, n_patches=8192, n_centroids=64, compare_points=4096,
                  compare_k=32, n_iter=10),
    "cpu": dict(dataset="fashion_mnist", train_size=None, n_patches=262144, n_centroids=1024, compare_points=65536,
                compare_k=256, n_iter=20),
    "paper": dict(dataset="cifar10", train_size=None, n_patches=262144, n_centroids=1024, compare_points=262144,
                  compare_k=1024, n_iter=20),
}
Config.PRESETS = PRESETS


def load_train(cfg: Config) -> tuple[data.Splits, torch.Tensor]:
    """The splits of ``cfg`` and the training images in the normalisation the network sees."""
    splits = data.load_splits(cfg.dataset, root=cfg.data_root, train_size=cfg.train_size)
    return splits, splits.norm(splits.train.images)


def whitenings(train: torch.Tensor, patch_size: int, progress: bool = True) -> dict[str, patches.Whitening]:
    """PCA, ZCA and identity whitening from the moments of every patch of ``train``."""
    mean, cov = patches.patch_moments(train, patch_size, progress=progress)
    return {kind: patches.Whitening.from_covariance(mean, cov, kind) for kind in ("pca", "zca", "none")}


def _compute(cfg: Config) -> dict:
    """Every raw record of the page (tensors and plain values; cached)."""
    seed, p = cfg.seed, cfg.patch_size
    device = resolve_device(cfg.device)
    torch.manual_seed(seed)
    splits, train = load_train(cfg)
    w = whitenings(train, p)
    pca, zca, white = w["pca"], w["zca"], w[cfg.whitening]

    sample = patches.dictionary_patches(train, N_SHOWN, p, seed=seed + 1)
    held = patches.dictionary_patches(train, cfg.n_held, p, seed=seed + 2)
    cov_w = torch.cov(pca(held).T)
    offdiag = float((cov_w - torch.diag(torch.diag(cov_w))).abs().max())

    pts = patches.dictionary_patches(train, cfg.n_patches, p, seed=seed)
    x_dict = white(pts)
    km = cluster.kmeans(x_dict, cfg.n_centroids, n_iter=cfg.n_iter, seed=seed, device=device)
    sizes = torch.bincount(km.assignments, minlength=cfg.n_centroids)
    km_zca = cluster.kmeans(zca(pts), min(cfg.n_centroids, MAX_DRAWN_CENTROIDS), n_iter=cfg.n_iter, seed=seed,
                            device=device)
    zca_sizes = torch.bincount(km_zca.assignments, minlength=len(km_zca.centroids))

    x_cmp = white(pts[:cfg.compare_points])
    backends = []
    for backend in ("faiss", "sklearn"):  # a comparison of two CPU libraries
        r = cluster.kmeans(x_cmp, cfg.compare_k, n_iter=cfg.n_iter, seed=seed, backend=backend)
        backends.append({"backend": backend, "seconds": r.seconds, "inertia": r.inertia,
                         "mean distance": float(r.distances.mean())})

    held_w = white(held)
    fp = cluster.farthest_point(x_dict, cfg.n_centroids)
    rand = torch.randperm(len(x_dict), generator=torch.Generator().manual_seed(seed))[:cfg.n_centroids]
    dicts = {KMEANS: km.centroids, ALGORITHM1: x_dict[fp], "random patches": x_dict[rand]}
    quantization = {name: float(cluster.nearest(held_w, v)[1].mean()) for name, v in dicts.items()}

    explore = {f"{size}-{kind}": explore_centroids(train, size, kind, cfg.explore_n, seed=seed)
               for size in cfg.explore_sizes for kind in cfg.explore_kinds}

    return {"explore": explore,
            "data_desc": splits.describe(), "norm_mean": list(splits.norm.mean), "norm_std": list(splits.norm.std),
            "n_all": len(train) * (train.shape[2] - p + 1) * (train.shape[3] - p + 1),
            "eigenvalues": pca.eigenvalues.flip(0).clone(),  # largest first
            "sample": sample, "sample_zca": zca(sample).view_as(sample),
            "white_diag": [float(torch.diag(cov_w).min()), float(torch.diag(cov_w).max())],
            "white_offdiag": offdiag,
            "kmeans_seconds": km.seconds, "cluster_sizes": sizes,
            "zca_centroids": km_zca.centroids[zca_sizes.argsort(descending=True)].view(-1, *sample.shape[1:]),
            "backends": backends, "quantization": quantization}


def run(cfg: Config) -> Result:
    """The chapter's figures (spectrum, whitened patches, centroids), tables (backends, Algorithm 1)
    and the numbers its prose cites."""
    rec = cached("dictionary", cfg.key(), lambda run_dir: _compute(cfg))
    lam = rec["eigenvalues"]
    share = (lam / lam.sum()).numpy()
    n90 = int(np.searchsorted(np.cumsum(share), 0.9) + 1)
    sizes = rec["cluster_sizes"]
    largest = float(sizes.max()) / cfg.n_patches
    backends = pd.DataFrame(rec["backends"]).set_index("backend")
    speedup = backends.loc["sklearn", "seconds"] / backends.loc["faiss", "seconds"]
    inertia_ratio = backends.loc["faiss", "inertia"] / backends.loc["sklearn", "inertia"]
    qerr = rec["quantization"]
    fp_ratio = qerr[ALGORITHM1] / qerr[KMEANS]
    p = cfg.patch_size

    shown = pd.DataFrame({"seconds": backends["seconds"].map("{:.2f}".format),
                          "inertia": backends["inertia"].map("{:.4g}".format),
                          "mean distance": backends["mean distance"].map("{:.4f}".format)})
    quant = pd.DataFrame({"mean distance to nearest element": {k: f"{v:.3f}" for k, v in qerr.items()}})
    figures = {
        "fig_spectrum": plots.spectrum(lam, f"Spectrum of the {p}x{p} patch covariance"),
        "fig_whitened_patches": plots.patch_rows({"patches": rec["sample"], "ZCA-whitened": rec["sample_zca"]},
                                                 title=f"{N_SHOWN} random patches, before and after ZCA whitening"),
        "fig_centroids": plots.image_grid(rec["zca_centroids"], ncols=16,
                                          title=f"{len(rec['zca_centroids'])} k-means centroids of ZCA-whitened "
                                                f"patches, largest clusters first"),
    }
    figures["fig_explore"] = plots.explore_grid(rec["explore"], cfg.explore_sizes, cfg.explore_kinds)
    for fig in figures.values():  # shown by the page's glue, not by the inline backend
        plt.close(fig)
    text = {
        "data_desc": f"{rec['data_desc']}; scale={cfg.scale}",
        "norm_desc": ", ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(rec["norm_mean"], rec["norm_std"])),
        "n_patches": f"{cfg.n_patches:,}", "n_centroids": f"{cfg.n_centroids:,}",
        "patch_desc": f"{p}x{p} ({rec['n_all']:,} in all)",
        "top1_share": f"{100 * share[0]:.1f}%", "n90": str(n90), "dim": str(len(lam)),
        "cond": f"{float(lam[0] / lam[-1]):.3g}",
        "white_diag": "{:.2f}–{:.2f}".format(*rec["white_diag"]), "white_offdiag": f"{rec['white_offdiag']:.3f}",
        "kmeans_iters": str(cfg.n_iter), "kmeans_seconds": f"{rec['kmeans_seconds']:.1f} s",
        "largest_cluster": f"{100 * largest:.1f}%", "empty_clusters": str(int((sizes == 0).sum())),
        "faiss_speedup": f"{speedup:.1f}x", "inertia_ratio": f"{inertia_ratio:.3f}",
        "cmp_desc": f"{cfg.compare_points:,} whitened patches, k = {cfg.compare_k}, {cfg.n_iter} Lloyd iterations",
        "fp_ratio": f"{fp_ratio:.2f}",
        "fp_cover": "better" if fp_ratio < 1 else "worse",  # Algorithm 1 covers held-out patches ... than k-means
    }
    numbers = {"top1_share": float(share[0]), "n90": n90, "condition_number": float(lam[0] / lam[-1]),
               "white_diag_min": rec["white_diag"][0], "white_diag_max": rec["white_diag"][1],
               "white_offdiag": rec["white_offdiag"], "largest_cluster": largest,
               "empty_clusters": int((sizes == 0).sum()), "faiss_speedup": float(speedup),
               "inertia_ratio": float(inertia_ratio), "fp_ratio": fp_ratio,
               **{f"inertia_{b}": float(backends.loc[b, "inertia"]) for b in backends.index},
               **{f"quantization_{k}": v for k, v in qerr.items()}}
    return Result(cfg, tables={"tab_backends": shown, "tab_algorithm1": quant}, figures=figures, text=text,
                  numbers=numbers, runs=rec)


# ----------------------------------------------------------------------------- the explorer


def explore_centroids(train: torch.Tensor, size: int, kind: str, n: int, seed: int = 0, n_moments: int = 2000,
                      n_sampled: int = 20000, n_iter: int = 10) -> torch.Tensor:
    """A small dictionary for one setting of the explorer: ``n`` k-means centroids of ``size x size``
    patches whitened with ``kind`` (moments of the first ``n_moments`` images), as (n, C, size, size)."""
    check_choice("kind", kind, patches.WHITENINGS)
    if not 1 <= size <= min(train.shape[2:]):
        raise ValueError(f"size={size} must be between 1 and the image side {min(train.shape[2:])}")
    mean, cov = patches.patch_moments(train[:n_moments], size, progress=False)
    w = patches.Whitening.from_covariance(mean, cov, kind)
    pts = patches.dictionary_patches(train, n_sampled, size, seed=seed)
    r = cluster.kmeans(w(pts), n, n_iter=n_iter, seed=seed)
    return r.centroids.view(n, train.shape[1], size, size).clone()


def explore_figure(train: torch.Tensor, size: int, kind: str, n: int, seed: int = 0, **sizes):
    """The explorer's figure for one setting (:func:`explore_centroids` drawn as images; ``sizes``:
    its ``n_moments``, ``n_sampled``, ``n_iter``)."""
    return plots.image_grid(explore_centroids(train, size, kind, n, seed=seed, **sizes), ncols=16,
                            title=f"{n} centroids, {size}x{size}, {kind} whitening")


def explorer(cfg: Config, train: torch.Tensor | None = None):
    """An ipywidgets control that rebuilds a small dictionary for another patch size, whitening or
    dictionary size. Sliders act on release (``continuous_update=False``), so a drag runs k-means once.
    ``train`` (normalised training images) defaults to those of ``cfg``."""
    from ipywidgets import Dropdown, IntSlider, interactive

    if train is None:
        train = load_train(cfg)[1]
    top = min(9, *train.shape[2:])

    def show(size, kind, n):
        explore_figure(train, size, kind, n, seed=cfg.seed)
        plt.show()

    return interactive(show, size=IntSlider(min(cfg.patch_size, top), 2, top, continuous_update=False),
                       kind=Dropdown(options=["zca", "pca", "none"]),
                       n=Dropdown(options=[16, 32, 64, 128], value=64))


__all__ = ["Config", "PRESETS", "explore_centroids", "explore_figure", "explorer", "load_train", "run", "whitenings"]
