"""The shared set-up of the chapter "Learning with patch-based features" (Brutzkus et al., ICML 2022).

Every notebook of the chapter (Tables 1-4, Figures 6, 8, 9) trains the same kind of run at the same
budget; :class:`PatchStudy` holds that budget per scale, the data splits, the cached runs over seeds and
the summary of a variant as a table row, so the notebooks state only what their artifact varies.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, fields

import numpy as np
import pandas as pd

from . import book, data, train
from .cli_train import ExperimentConfig, run_experiment

SEEDS = {"smoke": [0], "cpu": [0, 1], "paper": [0, 1, 2, 3, 4]}
DATASETS = {"smoke": "fashion_mnist", "cpu": "fashion_mnist", "paper": "cifar10"}
# Sizes per scale. ``paper`` is the original main.py's defaults on the whole of CIFAR-10.
BUDGETS = {
    "smoke": dict(train_size=256, val_size=200, test_size=500, epochs=1, n_centroids=32, k=8, n_patches=4096,
                  kmeans_iters=5, augment=False, milestones=[100, 150]),
    "cpu": dict(train_size=8000, val_size=2000, test_size=None, epochs=2, n_centroids=256, k=64, n_patches=65536,
                kmeans_iters=10, augment=False, milestones=[100, 150]),
    "paper": dict(train_size=None, val_size=None, test_size=None, epochs=200, n_centroids=1024, k=256,
                  n_patches=262144, kmeans_iters=20, augment=True, milestones=[100, 150]),
}


class PatchStudy:
    """Budget, data and cached runs of one notebook of the patch chapter.

    ``scale`` picks the sizes of :data:`BUDGETS`; ``budget`` overrides any of them (e.g.
    ``{"epochs": 3}``) or sets any other field of :class:`~patchnb.cli_train.ExperimentConfig`;
    ``dataset``/``seeds`` default to the scale's. Runs are cached by their full configuration
    (:func:`patchnb.book.cached`), so notebooks sharing a variant train it once.
    """

    def __init__(self, scale: str, dataset: str | None = None, seeds: list[int] | None = None,
                 device: str = "cpu", budget: dict | None = None):
        book.check_params(scale=scale, device=device)
        self.scale = scale
        self.seeds = list(seeds or SEEDS[scale])
        book.check_params(seeds=self.seeds)
        unknown = set(budget or {}) - {f.name for f in fields(ExperimentConfig)}
        if unknown:
            raise ValueError(f"budget keys {sorted(unknown)} are not options of a run; use sizes such as "
                             f"{sorted(BUDGETS[scale])} or any field of patchnb.cli_train.ExperimentConfig")
        self.budget = {**copy.deepcopy(BUDGETS[scale]), **(budget or {})}
        self.dataset = dataset or DATASETS[scale]
        self.device = device
        b = self.budget
        self.splits = data.load_splits(self.dataset, train_size=b["train_size"], val_size=b["val_size"],
                                       test_size=b["test_size"])

    def config(self, seed: int, **overrides) -> ExperimentConfig:
        """The run's configuration: the budget, then ``overrides`` (any :class:`ExperimentConfig` field)."""
        base = {**self.budget, "k": [self.budget["k"]]}
        return ExperimentConfig(dataset=self.dataset, seed=seed, device=self.device, **{**base, **overrides})

    def run(self, seed: int, **overrides) -> dict:
        """One training run, cached by its full configuration (rebuilds and dead kernels lose nothing)."""
        cfg = self.config(seed, **overrides)
        return book.cached("patch_run", asdict(cfg), lambda d: run_experiment(cfg, self.splits, d, progress=False))

    def runs(self, **overrides) -> list[dict]:
        """The same variant once per seed."""
        return [self.run(s, **overrides) for s in self.seeds]

    def describe(self) -> str:
        """One sentence of the data and budget, for the page."""
        c = self.config(self.seeds[0])
        return (f"{self.splits.describe()}; scale={self.scale}; {c.epochs} epoch(s), batch {c.batch_size}, SGD lr "
                f"{c.lr:g} momentum {c.momentum:g} (unless stated), N={c.n_centroids}, k={c.k[0]}, "
                f"{c.n_patches:,} patches for k-means, augmentation {'on' if c.augment else 'off'}, seeds {self.seeds}")


def summarise(label: str, outs: list[dict], depth: int = 1) -> dict:
    """A table row for one variant: test accuracy of the validation-selected model (mean ± std over the
    runs in ``outs``) beside the final-epoch and selected validation accuracy, seeds and wall-clock.
    Keys starting with ``_`` hold the raw mean/std for comparisons and are hidden by :func:`table`."""
    rows = [o["results"][depth - 1] for o in outs]
    t, v, f = ([r[key] for r in rows] for key in ("test_acc", "val_acc", "final_val_acc"))
    mean, std = train.mean_std(t)
    return {"variant": label, "test acc. (%)": book.pm(mean, std),
            "final-epoch val acc. (%)": book.pm(*train.mean_std(f)),
            "selected val acc. (%)": book.pm(*train.mean_std(v)),
            "seeds": ", ".join(str(o["config"]["seed"]) for o in outs),
            "wall-clock / run (s)": f"{np.mean([o['seconds'] for o in outs]):.0f}",
            "_mean": mean, "_std": std}


def table(rows: list[dict]) -> pd.DataFrame:
    """The rows of :func:`summarise` as a DataFrame indexed by variant, without the ``_`` columns."""
    return pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]).set_index("variant")


def verdict(a: dict, b: dict) -> str:
    """``"holds"`` when row ``a``'s mean test accuracy is above row ``b``'s, else ``"does not hold"``."""
    return "holds" if a["_mean"] > b["_mean"] else "does not hold"
