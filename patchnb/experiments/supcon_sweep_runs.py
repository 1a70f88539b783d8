"""The SupCon chapter's cached runs (:mod:`patchnb.experiments.supcon_sweep` is the page): the ``Config`` and
``PRESETS``, the data, and one seed's SupCon pre-training with its checkpoint sweep (the head's L2 strength
and the checkpoint chosen on validation, one test evaluation) and the cross-entropy baseline (its epoch
chosen on validation), cached (:func:`run_sweep`, :func:`budget_runs`).

The import closure of this module is the key of its cached runs, so it holds no page code (verdict, figures,
tables, words: :mod:`.supcon_sweep`); an edit there re-decides and re-draws the page without re-training
(``tests/test_cache_boundary.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..cache import cached
from ..checks import check_float, check_int
from ..data import Splits, load_splits
from ..eval.probe import classification_metrics
from ..eval.sweep import sweep_checkpoints
from ..models import ResNet18
from ..ssl import pretrain_with_checkpoints, read_method_config
from ..ssl.config import build_method
from ..train import Classification, TrainConfig, features, fit
from .base import ExperimentConfig, check_budget_fractions
from .data_source import check_data_source

METHOD = "supcon"  # the YAML config of the pre-training (patchnb/ssl/configs/supcon.yaml)
METRICS = ("accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The chapter's parameters (see the module docstring); ``Config.preset(scale)`` reads :data:`PRESETS`."""

    dataset: str = "fashion_mnist"
    data_root: str | None = None                 # the ImageFolder root, for dataset "imagefolder"
    image_size: int | None = None                # resize ImageFolder images to this square size
    mean: tuple[float, ...] | None = None        # per-channel normalisation; None: computed on train
    std: tuple[float, ...] | None = None
    n_train: int | None = 2000
    n_val: int | None = 500
    n_test: int | None = 1000
    width: int = 16                              # ResNet-18 width: features are 8 * width
    epochs: int = 10                             # pre-training epochs (and the cross-entropy baseline's)
    every: int = 2                               # a checkpoint every this many epochs
    batch_size: int | None = None                # None: the YAML's train.batch_size
    lr: float | None = None                      # None: the YAML's train.lr
    eval_batch_size: int = 512                   # batch of the feature extraction in the sweep
    #: the claim's budget curve: fractions of epochs, each its own run per seed (1: the page's runs)
    budget_fractions: tuple = (0.25, 0.5, 1.0)
    #: seed counts of the claim's sequential looks beyond ``seeds``: undecided with ``seeds``, the claim gets
    #: the next seeds up to each count in turn (``()``: one look, the seeds given)
    looks: tuple = ()

    BUDGET: ClassVar[str] = "epochs"

    def validate(self) -> None:
        check_data_source(self)
        check_int("image_size", self.image_size, 1, allow_none=True)
        for name in ("width", "epochs", "every", "eval_batch_size"):
            check_int(name, getattr(self, name), 1)
        if self.every > self.epochs:
            raise ValueError(f"every={self.every} must be <= epochs={self.epochs}, or no checkpoint is written")
        check_int("batch_size", self.batch_size, 2, allow_none=True)
        if self.lr is not None:
            check_float("lr", self.lr, 0.0, strict_min=True)
        check_budget_fractions(self.budget_fractions, "epochs")
        check_looks(self.looks)

    @property
    def look_counts(self) -> tuple[int, ...]:
        """The seed counts the claim is tested at: ``len(seeds)``, then each of ``looks`` above it (one
        seed: that one look only, it decides nothing)."""
        n = len(self.seeds)
        return (n,) if n < 2 else (n, *(m for m in self.looks if m > n))

    def seeds_upto(self, n: int) -> tuple[int, ...]:
        """The first ``n`` seeds of the sequential design: ``seeds``, then the next integers."""
        top = max(self.seeds)
        return (*self.seeds, *range(top + 1, top + 1 + max(0, n - len(self.seeds))))[:n]

    def budget_configs(self) -> list[tuple[int, Config]]:
        """The points of the claim's budget curve, increasing: ``(epochs, configuration)`` per fraction of
        ``budget_fractions``; the fraction 1 is this configuration itself (its runs are the page's), the
        others scale ``epochs``, with ``every`` lowered to the largest divisor of their epochs not above it (so
        every run's last epoch is a checkpoint of its sweep). Raises ``ValueError`` if two fractions give the
        same number of epochs."""
        epochs = [max(1, int(round(self.epochs * f))) for f in sorted(self.budget_fractions)]
        if len(set(epochs)) != len(epochs):
            raise ValueError(f"budget_fractions={self.budget_fractions} give epochs {epochs} of "
                             f"epochs={self.epochs}: not distinct; use more epochs or other fractions")
        points = []
        for f in sorted(self.budget_fractions):
            e = max(1, int(round(self.epochs * f)))
            every = max(d for d in range(1, min(self.every, e) + 1) if e % d == 0)
            at = self if f == 1 else self.replace(epochs=e, every=every)
            points.append((at.epochs, at))
        return points

    def train_config(self, seed: int) -> TrainConfig:
        """THE TrainConfig of the page (SupCon and the cross-entropy baseline): the YAML ``train`` section,
        ``batch_size`` and ``lr`` replaced where given, the warm-up capped at ``epochs // 10``."""
        base = dict(read_method_config(METHOD)["train"])
        base.update({k: v for k, v in (("batch_size", self.batch_size), ("lr", self.lr)) if v is not None})
        base["warmup_epochs"] = min(base.get("warmup_epochs", 0), self.epochs // 10)
        return TrainConfig(**base, epochs=self.epochs, seed=seed, device=self.device)


PRESETS = {
    # smoke: 3 epochs (budgets 1, 2, 3), 2 seeds; cpu: budgets 2, 5, 10 epochs, 3 seeds, then 5 while undecided
    "smoke": dict(seeds=(0, 1), dataset="fashion_mnist", n_train=256, n_val=128, n_test=256, width=4, epochs=3,
                  every=1, batch_size=64, lr=0.05, eval_batch_size=512),
    "cpu": dict(seeds=(0, 1, 2), looks=(3, 5), dataset="fashion_mnist", n_train=2000, n_val=500, n_test=1000, width=16, epochs=10,
                every=2, batch_size=128, lr=0.05, eval_batch_size=512),
    # batch 256 and lr 0.125 are the YAML's
    "paper": dict(seeds=(0, 1, 2), looks=(3, 5), dataset="cifar10", n_train=None, n_val=None, n_test=None, width=64, epochs=1000,
                  every=50, batch_size=None, lr=None, eval_batch_size=1024),
}
for _values in PRESETS.values():
    _values.update(budget_fractions=(0.25, 0.5, 1.0))
Config.PRESETS = PRESETS


def load_data(cfg: Config) -> Splits:
    return load_splits(cfg.dataset, root=cfg.data_root, train_size=cfg.n_train, val_size=cfg.n_val,
                       test_size=cfg.n_test, image_size=cfg.image_size, mean=cfg.mean, std=cfg.std)


def run_sweep(cfg: Config, seed: int, splits: Splits) -> dict:
    """SupCon pre-training with checkpoints, the sweep over them and the cross-entropy baseline (cached)."""
    file_cfg = read_method_config(METHOD)
    key = dict(cfg.key("device", "budget_fractions", "looks"), file=file_cfg, seed=seed)

    def compute(run_dir):
        train = cfg.train_config(seed)
        torch.manual_seed(seed)
        method = build_method(file_cfg)
        model = method.make_model(splits.shape[0], cfg.width)
        res, _ = pretrain_with_checkpoints(model, splits, train, method, run_dir / "supcon", every=cfg.every,
                                           name="supcon", progress=True)
        sweep = sweep_checkpoints(run_dir / "supcon" / "checkpoints",
                                  functools.partial(ResNet18, splits.shape[0], cfg.width), splits,
                                  batch_size=cfg.eval_batch_size)
        torch.manual_seed(seed)  # the same backbone + a linear layer, trained end to end with cross-entropy
        backbone = ResNet18(splits.shape[0], cfg.width)
        ce = nn.Sequential(backbone, nn.Linear(backbone.out_dim, len(splits.classes)))
        ce_res = fit(ce, splits, train, Classification(), run_dir=run_dir / "ce", name="cross-entropy", progress=True)
        ce_test = classification_metrics(splits.test.labels, features(ce, splits.test, splits, 1000)[0].argmax(1),
                                         len(splits.classes))
        return {"history": res.history, "supcon_seconds": res.seconds, "rows": sweep.rows, "best": sweep.best,
                "best_epoch": sweep.best_epoch, "val": sweep.val, "test": sweep.test, "ce_test": ce_test,
                "ce_best_epoch": ce_res.best_epoch + 1, "ce_seconds": ce_res.seconds, "ce_history": ce_res.history}

    return cached("supcon_sweep", key, compute)


def budget_runs(cfg: Config, splits: Splits, n_seeds: int | None = None) -> tuple[list[int], list[list[dict]]]:
    """:func:`run_sweep` at every point of ``cfg.budget_configs()`` for the first ``n_seeds`` seeds of
    ``cfg.seeds_upto`` (default: ``cfg.seeds``, in order): ``(epochs per budget, per budget the runs per seed)``."""
    seeds = cfg.seeds_upto(n_seeds or len(cfg.seeds))
    budgets, runs = [], []
    for epochs, at in cfg.budget_configs():
        budgets.append(epochs)
        runs.append([run_sweep(at, seed, splits) for seed in seeds])
    return budgets, runs


def check_looks(looks) -> None:
    """``looks``: increasing seed counts >= 2 (the sequential design's looks), or ``()``."""
    if not isinstance(looks, tuple) or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in looks) \
            or list(looks) != sorted(set(looks)):
        raise ValueError(f"looks={looks!r} must be increasing seed counts >= 2, e.g. (3, 5), or () for one look")


__all__ = ["METHOD", "METRICS", "PRESETS", "Config", "budget_runs", "load_data", "run_sweep"]
