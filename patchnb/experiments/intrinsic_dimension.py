"""How many dimensions do patches have? Figure 5 of the patch paper.

Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features", ICML 2022, Figure 5: k-means
with growing k on five point sets of the same size and dimension (original patches, PCA-whitened
patches ``x W`` without centring, patches whose own values are shuffled, whitened-then-shuffled
patches, a standard gaussian), after dropping the 1% lowest norms and scaling to unit norm. For points
of intrinsic dimension d the mean distance to the nearest centroid decays like ``k^(-1/d)``, so the
recipe fits ``d = -1 / slope`` of the log-log curve for ``k >= fit_from`` (:func:`patchnb.cluster.
dimension_from_curve`) and checks the paper's reading: natural patches lie lowest, the gaussian highest.

Deviations from the patch paper's original code: its Figure 5 averaged the k-means *indices* returned
by faiss instead of the distances (here: distances); zero-norm points are dropped before the 1% lowest
norms (in [0, 1] pixels more than 1% of Fashion-MNIST patches are exactly zero and unit-normalising them
gives NaN); the patches are taken in the normalised pixel space the networks see; the slope fit is ours
(the paper reads the figure by eye).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import matplotlib.pyplot as plt
import pandas as pd

from .. import cluster, data, patches, plots
from ..cache import cached
from ..checks import check_int
from ..train import resolve_device
from .base import ExperimentConfig, Result
from .data_source import check_dataset

DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder")
N_ZERO_CHECK = 100000  # [0, 1]-pixel patches sampled to measure the share of exactly-zero patches


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """One run of Figure 5 (its seed is ``seeds[0]``; the page is a single run)."""

    dataset: str = "fashion_mnist"
    data_root: str | None = None
    train_size: int | None = None  # None: the whole training split
    patch_size: int = 5
    n_points: int = 262144  # patches per point set (2^20 in the paper)
    ks: tuple[int, ...] = tuple(2 ** i for i in range(1, 11))
    n_iter: int = 20

    BUDGET: ClassVar[str] = "n_points"

    def validate(self) -> None:
        check_dataset(self, DATASETS)
        check_int("train_size", self.train_size, 1, allow_none=True)
        check_int("patch_size", self.patch_size, 1)
        check_int("n_points", self.n_points, 2)
        check_int("n_iter", self.n_iter, 1)
        if not isinstance(self.ks, tuple) or len(self.ks) < 2:
            raise ValueError(f"ks must list at least 2 numbers of centroids (the slope fit needs two), got "
                             f"{self.ks!r}")
        for k in self.ks:
            check_int("ks", k, 1)
        if list(self.ks) != sorted(set(self.ks)):
            raise ValueError(f"ks must be increasing without repeats, got {list(self.ks)}")
        if self.ks[-1] > self.n_points // 2:
            raise ValueError(f"ks: the largest k ({self.ks[-1]}) needs n_points >= {2 * self.ks[-1]}, "
                             f"got n_points={self.n_points}")
        if len(self.seeds) != 1:
            raise ValueError(f"seeds={list(self.seeds)}: Figure 5 is one run; give one seed")

    @property
    def seed(self) -> int:
        return self.seeds[0]

    @property
    def fit_from(self) -> int:
        """The smallest k of the slope fit, ``ks[len(ks) // 2 - 1]``: the fit spans the larger half of ``ks``."""
        return self.ks[len(self.ks) // 2 - 1]


PRESETS = {
    "smoke": dict(dataset="fashion_mnist", train_size=2000, n_points=8192, ks=(2, 4, 8, 16, 32), n_iter=10),
    "cpu": dict(dataset="fashion_mnist", train_size=None, n_points=262144, ks=tuple(2 ** i for i in range(1, 11)),
                n_iter=20),
    "paper": dict(dataset="cifar10", train_size=None, n_points=1048576, ks=tuple(2 ** i for i in range(1, 11)),
                  n_iter=20),
}
Config.PRESETS = PRESETS


def _compute(cfg: Config) -> dict:
    """The distortion curve of every point set and what was dropped (tensors and plain values; cached)."""
    seed, p = cfg.seed, cfg.patch_size
    device = resolve_device(cfg.device)
    splits = data.load_splits(cfg.dataset, root=cfg.data_root, train_size=cfg.train_size)
    train = splits.norm(splits.train.images)
    raw = splits.train.images.float() / 255
    zero = patches.sample_patches(raw, N_ZERO_CHECK, p, seed=seed).flatten(1).norm(dim=1) == 0
    mean, cov = patches.patch_moments(train, p, progress=True)
    w = patches.Whitening.from_covariance(mean, cov, "pca")
    pts = patches.sample_patches(train, cfg.n_points, p, seed=seed)
    sets = {}
    for name, x in patches.figure5_variants(pts, w, seed=seed).items():
        x, dropped = patches.unit_normalize(x)
        backend = "auto" if device.type == "cpu" else "torch"
        curve = cluster.intrinsic_dimension_curve(x.to(device), cfg.ks, n_iter=cfg.n_iter, seed=seed,
                                                  backend=backend, progress=True)
        sets[name] = {"curve": curve, **dropped}
    return {"data_desc": splits.describe(), "norm_mean": list(splits.norm.mean), "norm_std": list(splits.norm.std),
            "zero_share": float(zero.float().mean()), "ambient": int(train.shape[1] * p * p), "sets": sets}


def run(cfg: Config) -> Result:
    """Figure 5 (``fig5``), the fitted dimensions (``tab_dims``), the verdicts on the paper's reading
    (``claim_low``, ``claim_gauss``: "holds" / "does not hold") and the numbers the prose cites."""
    rec = cached("figure5", cfg.key(), lambda run_dir: _compute(cfg))
    sets = rec["sets"]
    dims = {name: cluster.dimension_from_curve({k: v for k, v in r["curve"].items() if k >= cfg.fit_from})
            for name, r in sets.items()}
    natural_lowest = dims["original"] < min(dims["shuffled"], dims["gaussian"])
    gauss_highest = dims["gaussian"] >= max(dims.values()) - 1e-9
    p = cfg.patch_size
    fig = plots.loglog_curves({f"{name.replace('_', ' + ')} (d ≈ {dims[name]:.1f})": r["curve"]
                               for name, r in sets.items()},
                              xlabel="k (number of centroids)",
                              ylabel="mean distance to nearest centroid (unit-norm points)",
                              title=f"{p}x{p} patches of {cfg.dataset}, {cfg.n_points:,} points")
    plt.close(fig)  # shown by the page's glue, not by the inline backend at the end of the cell
    table = pd.DataFrame({"intrinsic dimension (fit)": {n: f"{d:.1f}" for n, d in dims.items()},
                          "zero-norm points dropped": {n: r["zero_norm"] for n, r in sets.items()},
                          "low-norm points dropped": {n: r["low_norm"] for n, r in sets.items()}})
    text = {
        "data_desc": f"{rec['data_desc']}; scale={cfg.scale}",
        "n_points": f"{cfg.n_points:,}",
        "zero_share": f"{100 * rec['zero_share']:.1f}%",
        "fit_from": str(cfg.fit_from),
        "norm_desc": ", ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(rec["norm_mean"], rec["norm_std"])),
        **{f"dim_{name}": f"{d:.1f}" for name, d in dims.items()},
        "claim_low": "holds" if natural_lowest else "does not hold",
        "claim_gauss": "holds" if gauss_highest else "does not hold",
        "n_zero_original": f"{sets['original']['zero_norm']:,}",
        "ambient": str(rec["ambient"]),
    }
    numbers = {**{f"dim_{name}": d for name, d in dims.items()}, "zero_share": rec["zero_share"],
               **{f"low_norm_{name}": r["low_norm"] for name, r in sets.items()}}
    return Result(cfg, tables={"tab_dims": table}, figures={"fig5": fig}, text=text, numbers=numbers, runs=rec)


__all__ = ["Config", "PRESETS", "run"]
