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

Budget: the estimator is not trained, so its budget is the number of patches it sees (``n_points``,
``BUDGET``). Both readings of the paper are decided by the book's rule
(:func:`patchnb.experiments.verdict.budget_verdict`) from the fitted dimensions at the fractions
``budget_fractions`` of ``n_points`` (1/4, 1/2 and all of them) and over ``seeds`` (each seed samples
its own patches and runs its own k-means), paired by seed. Figure 5 and its table are the first seed
at the full budget; the table's dimensions are means over seeds. One patch sample per seed and
budget is a cached run (the seed is in its key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .. import cluster, data, patches, plots
from ..book import pm
from ..cache import cached
from ..checks import check_int
from ..train import resolve_device
from .base import ExperimentConfig, check_budget_fractions
from .data_source import check_dataset
from .result import Result
from .verdict import budget_figure, budget_verdict

DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder")
N_ZERO_CHECK = 100000  # [0, 1]-pixel patches sampled to measure the share of exactly-zero patches


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Figure 5 at ``n_points`` patches per point set, for every seed of ``seeds`` and at every fraction
    of ``budget_fractions`` of ``n_points`` (the budget curve of the page's verdicts)."""

    dataset: str = "fashion_mnist"
    data_root: str | None = None
    train_size: int | None = None  # None: the whole training split
    patch_size: int = 5
    n_points: int = 262144  # patches per point set (2^20 in the paper)
    ks: tuple[int, ...] = tuple(2 ** i for i in range(1, 11))
    n_iter: int = 20
    budget_fractions: tuple = (0.25, 0.5, 1.0)  # fractions of n_points of the budget curve (one of them 1)

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
        fr = self.budget_fractions
        check_budget_fractions(fr, "n_points")
        sizes = [self.points_at(f) for f in fr]
        if len(set(sizes)) != len(sizes) or min(sizes) < 2 * self.ks[-1]:
            raise ValueError(f"budget_fractions={fr} give {sorted(sizes)} points of n_points={self.n_points}: they "
                             f"must be distinct and >= {2 * self.ks[-1]} (twice the largest k); use a larger "
                             f"n_points or other fractions")

    @property
    def seed(self) -> int:
        """The seed of Figure 5 and its legend (the first of ``seeds``)."""
        return self.seeds[0]

    def points_at(self, fraction: float) -> int:
        """Patches per point set at ``fraction`` of the budget."""
        return max(1, int(round(self.n_points * fraction)))

    @property
    def budgets(self) -> list[int]:
        """The budget curve: patches per point set, increasing (the last is ``n_points``)."""
        return sorted(self.points_at(f) for f in self.budget_fractions)

    @property
    def fit_from(self) -> int:
        """The smallest k of the slope fit, ``ks[len(ks) // 2 - 1]``: the fit spans the larger half of ``ks``."""
        return self.ks[len(self.ks) // 2 - 1]


PRESETS = {
    "smoke": dict(seeds=(0, 1), dataset="fashion_mnist", train_size=2000, n_points=8192, ks=(2, 4, 8, 16, 32),
                  n_iter=10),
    "cpu": dict(seeds=(0, 1, 2), dataset="fashion_mnist", train_size=None, n_points=262144,
                ks=tuple(2 ** i for i in range(1, 11)), n_iter=20),
    "paper": dict(seeds=(0, 1, 2), dataset="cifar10", train_size=None, n_points=1048576,
                  ks=tuple(2 ** i for i in range(1, 11)), n_iter=20),
}
Config.PRESETS = PRESETS


def _compute(cfg: Config, n_points: int, seed: int) -> dict:
    """The distortion curve of every point set and what was dropped (tensors and plain values; cached)."""
    p = cfg.patch_size
    device = resolve_device(cfg.device)
    splits = data.load_splits(cfg.dataset, root=cfg.data_root, train_size=cfg.train_size)
    train = splits.norm(splits.train.images)
    raw = splits.train.images.float() / 255
    zero = patches.sample_patches(raw, N_ZERO_CHECK, p, seed=seed).flatten(1).norm(dim=1) == 0
    mean, cov = patches.patch_moments(train, p, progress=True)
    w = patches.Whitening.from_covariance(mean, cov, "pca")
    pts = patches.sample_patches(train, n_points, p, seed=seed)
    sets = {}
    for name, x in patches.figure5_variants(pts, w, seed=seed).items():
        x, dropped = patches.unit_normalize(x)
        backend = "auto" if device.type == "cpu" else "torch"
        curve = cluster.intrinsic_dimension_curve(x.to(device), cfg.ks, n_iter=cfg.n_iter, seed=seed,
                                                  backend=backend, progress=True)
        sets[name] = {"curve": curve, **dropped}
    return {"data_desc": splits.describe(), "norm_mean": list(splits.norm.mean), "norm_std": list(splits.norm.std),
            "zero_share": float(zero.float().mean()), "ambient": int(train.shape[1] * p * p), "sets": sets}


def record(cfg: Config, n_points: int, seed: int) -> dict:
    """One cached run: Figure 5's curves of ``n_points`` patches sampled with ``seed``."""
    key = {**cfg.key("budget_fractions"), "n_points": n_points, "seed": seed}
    return cached("figure5", key, lambda run_dir: _compute(cfg, n_points, seed))


def dimensions(cfg: Config, rec: dict) -> dict[str, float]:
    """The fitted dimension of every point set of a run (slope for ``k >= fit_from``)."""
    return {name: cluster.dimension_from_curve({k: v for k, v in r["curve"].items() if k >= cfg.fit_from})
            for name, r in rec["sets"].items()}


def claims(budgets: list[int], dims: dict[str, list[list[float]]]) -> dict:
    """The paper's two readings decided by the book's rule from ``dims`` (per point set, per budget, per
    seed): ``claim_low``, natural patches lie below the lower of shuffled and gaussian; ``claim_gauss``,
    the gaussian lies above the highest of the other sets (both paired by seed)."""
    others = [n for n in dims if n != "gaussian"]
    per = range(len(budgets))
    low = [[min(s, g) for s, g in zip(dims["shuffled"][i], dims["gaussian"][i])] for i in per]
    high = [[max(v) for v in zip(*(dims[n][i] for n in others))] for i in per]
    return {"claim_low": budget_verdict(budgets, dims["original"], low, claimed="less"),
            "claim_gauss": budget_verdict(budgets, dims["gaussian"], high, claimed="greater")}


def run(cfg: Config) -> Result:
    """Figure 5 (``fig5``, first seed, full budget), the fitted dimensions (``tab_dims``: mean ± std over
    seeds at the full budget), the budget curve of the dimensions (``fig_budget_dims``), the verdicts on
    the paper's reading (``claim_low``, ``claim_gauss`` with ``<claim>_gap``: holds / does not hold /
    not settled at this budget) and the numbers the prose cites."""
    budgets = cfg.budgets
    recs = {n: [record(cfg, n, s) for s in cfg.seeds] for n in budgets}
    rec = recs[cfg.n_points][0]
    sets = rec["sets"]
    per_seed = {n: [dimensions(cfg, r) for r in rs] for n, rs in recs.items()}
    names = list(sets)
    dims_curve = {name: [[d[name] for d in per_seed[n]] for n in budgets] for name in names}
    full = {name: dims_curve[name][-1] for name in names}
    dims = {name: float(np.mean(v)) for name, v in full.items()}
    verdicts = claims(budgets, dims_curve)
    first = per_seed[cfg.n_points][0]
    p = cfg.patch_size
    fig = plots.loglog_curves({f"{name.replace('_', ' + ')} (d ≈ {first[name]:.1f})": r["curve"]
                               for name, r in sets.items()},
                              xlabel="k (number of centroids)",
                              ylabel="mean distance to nearest centroid (unit-norm points)",
                              title=f"{p}x{p} patches of {cfg.dataset}, {cfg.n_points:,} points, seed {cfg.seed}")
    fig_budget = budget_figure(budgets, {name.replace("_", " + "): dims_curve[name] for name in names},
                               "patches per point set", ylabel="fitted intrinsic dimension", scale=1.0,
                               title=f"fitted dimension (k >= {cfg.fit_from}) over {len(cfg.seeds)} seed(s)")
    plt.close(fig)  # shown by the page's glue, not by the inline backend at the end of the cell
    several = len(cfg.seeds) > 1
    table = pd.DataFrame({"intrinsic dimension (fit)": {
                              n: pm(float(np.mean(v)), float(np.std(v, ddof=1)), scale=1.0, digits=1) if several
                              else f"{v[0]:.1f}" for n, v in full.items()},
                          "zero-norm points dropped": {n: r["zero_norm"] for n, r in sets.items()},
                          "low-norm points dropped": {n: r["low_norm"] for n, r in sets.items()}})
    text = {
        "data_desc": f"{rec['data_desc']}; scale={cfg.scale}",
        "n_points": f"{cfg.n_points:,}",
        "zero_share": f"{100 * rec['zero_share']:.1f}%",
        "fit_from": str(cfg.fit_from),
        "norm_desc": ", ".join(f"{m:.3f}/{s:.3f}" for m, s in zip(rec["norm_mean"], rec["norm_std"])),
        **{f"dim_{name}": f"{d:.1f}" for name, d in dims.items()},
        "n_zero_original": f"{sets['original']['zero_norm']:,}",
        "ambient": str(rec["ambient"]),
        "budget_points": ", ".join(f"{n:,}" for n in budgets),
        "n_seeds": str(len(cfg.seeds)), "seed_list": ", ".join(str(s) for s in cfg.seeds),
        "seed_first": str(cfg.seed),
    }
    numbers = {**{f"dim_{name}": d for name, d in dims.items()}, "zero_share": rec["zero_share"],
               **{f"low_norm_{name}": r["low_norm"] for name, r in sets.items()}}
    for claim, v in verdicts.items():
        text.update({claim: v.word, f"{claim}_gap": v.gap(scale=1.0, digits=1, unit=" dimensions")})
        numbers[f"{claim}_diff"] = float(v.diffs[-1])
    return Result(cfg, tables={"tab_dims": table}, figures={"fig5": fig, "fig_budget_dims": fig_budget}, text=text,
                  numbers=numbers, runs={"budgets": budgets, "dims": dims_curve, "first": rec})


__all__ = ["Config", "PRESETS", "claims", "dimensions", "record", "run"]
