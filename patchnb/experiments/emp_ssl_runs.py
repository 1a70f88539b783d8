"""EMP-SSL's cached runs (:mod:`patchnb.experiments.emp_ssl` is the page): the ``Config`` and ``PRESETS``,
the data, the scoring protocol, the page's long run (:func:`run_pretraining`) and the claims' one-epoch runs
(:func:`run_one_epoch`, :func:`budget_curve`), each cached.

The import closure of this module is the key of its cached runs, so it holds no page code (verdicts,
figures, tables, words: :mod:`.emp_ssl_report` and :mod:`.emp_ssl`); an edit there re-decides and re-draws
the page without re-training (``tests/test_cache_boundary.py``). Every score records the probes'
validation accuracy (``linear_val``, ``knn_val``) beside the test ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..cache import cached
from ..checks import check_choice, check_float, check_int
from ..data import Splits, load_splits
from ..eval.features import load_backbone
from ..eval.projections import save_projections
from ..eval.protocol import evaluate_encoder
from ..losses import uniformity
from ..metrics import vmf_concentration
from ..models import ResNet18
from ..ssl import checkpoint_meta, patch_averaged_features, pretrain_with_checkpoints, read_method_config
from ..ssl.config import build_method
from ..ssl.emp import EMPEncoder
from ..train import TrainConfig, resolve_device
from .base import ExperimentConfig, check_budget_fractions
from .data_source import check_data_source

METHOD, BASELINE = "emp_ssl", "simclr"  # the YAML configs (patchnb/ssl/configs/<name>.yaml)
PROBE_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)  # the L2 grid of the chapter's probes
SPLIT_SEED = {"train": 0, "val": 1, "test": 2}  # offsets of the patch-averaging seeds per split
N_UNIFORMITY = 2000  # test embeddings the uniformity is computed on
MAX_SIMCLR_EPOCHS = 100


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The chapter's parameters (see the module docstring); ``Config.preset(scale)`` reads :data:`PRESETS`."""

    dataset: str = "fashion_mnist"
    data_root: str | None = None                 # the ImageFolder root, for dataset "imagefolder"
    mean: tuple[float, ...] | None = None        # per-channel normalisation; None: computed on train
    std: tuple[float, ...] | None = None
    n_train: int | None = 1000
    n_val: int | None = 500
    n_test: int | None = 1000
    epochs: tuple[int, ...] = (1, 2, 3)          # EMP-SSL epochs evaluated; the run trains max(epochs)
    n_patches: int | None = 20                   # patches per image in training; None: the YAML's
    hidden_dim: int | None = 1024                # pre_feature (evaluated) / projection hidden width; None: YAML's
    out_dim: int | None = 256                    # projection output; None: the YAML's (1024)
    eval_patches: int = 8                        # patches averaged per image in evaluation
    width: int = 16                              # ResNet-18 width: features are 8 * width
    batch_size: int | None = 50                  # images per step (both methods); None: the YAML's
    simclr_lr: float = 0.06
    simclr_momentum: float = 0.9
    simclr_weight_decay: float = 5e-4
    simclr_epochs: int | None = None             # None: calibrated to EMP-SSL's training seconds
    eval_batch_size: int = 512                   # images per batch of the feature extraction
    projections: bool = True                     # write book/generated/projections/emp_ssl/ (+ .zip)
    #: the claims' budget curve: fractions of n_train, each a one-epoch run per seed (1: all the images)
    budget_fractions: tuple = (0.25, 0.5, 1.0)
    #: seed counts of the claims' sequential looks beyond ``seeds``: a claim still undecided with ``seeds``
    #: gets the next seeds up to each count in turn (``()``: one look, the seeds given)
    looks: tuple = ()

    BUDGET: ClassVar[str] = "n_train"

    def validate(self) -> None:
        for s in self.seeds:
            check_int("seeds", s, 0)
        check_data_source(self)
        if not isinstance(self.epochs, tuple) or not self.epochs:
            raise ValueError(f"epochs must be a non-empty increasing list of epoch counts >= 1, got {self.epochs!r}")
        for e in self.epochs:
            check_int("epochs", e, 1)
        if list(self.epochs) != sorted(set(self.epochs)):
            raise ValueError(f"epochs must be an increasing list of epoch counts >= 1, got {list(self.epochs)}")
        check_int("n_patches", self.n_patches, 2, allow_none=True)
        check_int("hidden_dim", self.hidden_dim, 1, allow_none=True)
        check_int("out_dim", self.out_dim, 1, allow_none=True)
        check_int("eval_patches", self.eval_patches, 2)
        check_int("width", self.width, 1)
        check_int("batch_size", self.batch_size, 2, allow_none=True)
        check_float("simclr_lr", self.simclr_lr, 0.0, strict_min=True)
        check_float("simclr_momentum", self.simclr_momentum, 0.0, 0.999)
        check_float("simclr_weight_decay", self.simclr_weight_decay, 0.0)
        check_int("simclr_epochs", self.simclr_epochs, 1, allow_none=True)
        check_int("eval_batch_size", self.eval_batch_size, 1)
        if not isinstance(self.projections, bool):
            raise ValueError(f"projections must be True or False, got {self.projections!r}")
        check_budget_fractions(self.budget_fractions, "n_train")
        check_looks(self.looks)

    @property
    def look_counts(self) -> tuple[int, ...]:
        """The seed counts the claims are tested at: ``len(seeds)``, then each of ``looks`` above it (one
        seed: that one look only, it decides nothing)."""
        n = len(self.seeds)
        return (n,) if n < 2 else (n, *(m for m in self.looks if m > n))

    def seeds_upto(self, n: int) -> tuple[int, ...]:
        """The first ``n`` seeds of the sequential design: ``seeds``, then the next integers."""
        top = max(self.seeds)
        return (*self.seeds, *range(top + 1, top + 1 + max(0, n - len(self.seeds))))[:n]

    def train_config(self, seed: int, method: str = METHOD, epochs: int | None = None) -> TrainConfig:
        """THE TrainConfig of the page. EMP-SSL: the YAML ``train`` section, ``batch_size`` replaced where
        given, ``max(epochs)`` epochs. SimCLR (``method="simclr"``): the same, with the recipe's SGD
        (``simclr_lr``, ``simclr_momentum``, ``simclr_weight_decay``) for ``epochs`` epochs."""
        check_choice("method", method, (METHOD, BASELINE))
        base = dict(read_method_config(METHOD)["train"])
        if self.batch_size is not None:
            base["batch_size"] = self.batch_size
        if method == BASELINE:
            base.update(optimizer="sgd", lr=self.simclr_lr, momentum=self.simclr_momentum,
                        weight_decay=self.simclr_weight_decay)
        return TrainConfig(**base, epochs=epochs or max(self.epochs), seed=seed, device=self.device)

    def methods(self):
        """``(EMP-SSL, SimCLR)`` built from their YAML files (EMP-SSL's ``n_patches``, ``hidden_dim`` and
        ``out_dim`` replaced where given)."""
        over = {k: getattr(self, k) for k in ("n_patches", "hidden_dim", "out_dim") if getattr(self, k)}
        emp = build_method(read_method_config(METHOD), **over)
        return emp, build_method(read_method_config(BASELINE), knn_bank_size=emp.knn_bank_size)

    def encoder(self, in_channels: int) -> EMPEncoder:
        """EMP-SSL's (untrained) encoder at this config: ResNet-18 of ``width`` + ``pre_feature`` of the
        method's ``hidden_dim``; its output is the evaluated layer."""
        return EMPEncoder(in_channels, self.width, self.methods()[0].hidden_dim)

    def budget_configs(self, n_full: int) -> list[tuple[int, Config]]:
        """The points of the claims' budget curve, increasing: ``(training images, one-epoch config)`` per
        fraction of ``budget_fractions`` of ``n_full`` (the page's training images, which resolves
        ``n_train=None``); each config trains EMP-SSL for one epoch (``epochs=(1,)``)."""
        resolved = self.replace(n_train=n_full, epochs=(1,))
        points = [(c.n_train, c) for c in (resolved.at_budget(f) for f in sorted(self.budget_fractions))]
        sizes = [n for n, _ in points]
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"budget_fractions={self.budget_fractions} give training sizes {sizes} of {n_full} "
                             f"images: not distinct; use a larger n_train or other fractions")
        return points


PRESETS = {
    # smoke / cpu: narrower pre_feature and projection than the paper's 4096 / 1024, scaled with the ResNet's
    # features as the paper's are with its 512 (hidden 8x, output 2x): width 4 -> 32-d, width 16 -> 128-d
    "smoke": dict(seeds=(0, 1), dataset="fashion_mnist", n_train=192, n_val=96, n_test=192, epochs=(1, 2),
                  n_patches=4, eval_patches=4, width=4, batch_size=32, hidden_dim=256, out_dim=64),
    "cpu": dict(seeds=(0, 1, 2), looks=(3, 5), dataset="fashion_mnist", n_train=1000, n_val=500, n_test=1000, epochs=(1, 2, 3),
                n_patches=20, eval_patches=8, width=16, batch_size=50, hidden_dim=1024, out_dim=256),
    # 200 patches, batch 100 and the 4096 / 1024 head are the YAML's (the paper's CIFAR-10 recipe)
    "paper": dict(seeds=(0, 1, 2), looks=(3, 5), dataset="cifar10", n_train=None, n_val=None, n_test=None, epochs=(1, 2, 5, 10),
                  n_patches=None, eval_patches=200, width=64, batch_size=None, hidden_dim=None, out_dim=None),
}
for _values in PRESETS.values():  # the same SimCLR optimisation and evaluation batch at every scale
    _values.update(simclr_lr=0.06, simclr_momentum=0.9, simclr_weight_decay=5e-4, simclr_epochs=None,
                   eval_batch_size=512, budget_fractions=(0.25, 0.5, 1.0))
Config.PRESETS = PRESETS


def load_data(cfg: Config) -> Splits:
    return load_splits(cfg.dataset, root=cfg.data_root, train_size=cfg.n_train, val_size=cfg.n_val,
                       test_size=cfg.n_test, mean=cfg.mean, std=cfg.std)


def score(encoder: nn.Module, splits: Splits, cfg: Config, seed: int, patches: int | None,
          keep_features: bool = False) -> dict:
    """The protocol's scores of one frozen encoder, on ``patches``-averaged features (``None``: whole
    images; the crops and their augmentation are EMP-SSL's, from its YAML), plus the uniformity and vMF
    concentration of its l2-normalised test embeddings."""
    features_fn = None
    if patches is not None:
        emp = cfg.methods()[0]
        features_fn = lambda enc, data, s, split: patch_averaged_features(  # noqa: E731
            enc, data, s, patches, seed + SPLIT_SEED[split], augment=emp.augment, scale=emp.patch_scale,
            batch_size=max(1, cfg.eval_batch_size // patches))
    r = evaluate_encoder(encoder, splits, n_geometry=None, weight_decays=PROBE_WEIGHT_DECAYS, features_fn=features_fn,
                         return_test_features=True, seed=seed, batch_size=cfg.eval_batch_size)
    z = F.normalize(r["test_features"].double(), dim=1)
    out = {"linear": r["probe_accuracy"], "linear_val": r["probe_val_accuracy"], "knn": r["knn_accuracy"],
           "knn_val": r["knn_val_accuracy"], "precision": r["probe_precision"], "recall": r["probe_recall"],
           "f1": r["probe_f1"], "weight_decay": r["probe_weight_decay"], "confusion": r["confusion"],
           "uniformity": float(uniformity(z[:N_UNIFORMITY])), "kappa": vmf_concentration(z)["kappa"],
           "kappa_class": vmf_concentration(z, r["test_labels"])["kappa"], "seconds_eval": r["seconds"]}
    if keep_features:
        out["test_features"], out["test_labels"] = r["test_features"], r["test_labels"]
    return out


def simclr_epochs_for(cfg: Config, simclr, splits: Splits, seconds: float, seed: int) -> int:
    """SimCLR epochs that take ``seconds`` of training: the time of two of its steps (after one warm-up
    step) times the steps of an epoch, rounded, in [1, 100]."""
    batch = cfg.train_config(seed, BASELINE, 1).batch_size
    model = simclr.make_model(splits.shape[0], cfg.width)
    g = torch.Generator().manual_seed(seed)
    x, y = splits.train.images[:batch], splits.train.labels[:batch]
    simclr.step(model, x, y, splits, g)[0].backward()
    t0 = time.perf_counter()
    for _ in range(2):
        simclr.step(model, x, y, splits, g)[0].backward()
    step_s = (time.perf_counter() - t0) / 2
    return int(min(MAX_SIMCLR_EPOCHS, max(1, round(seconds / (step_s * (len(splits.train) // batch))))))


def train_simclr(cfg: Config, simclr, splits: Splits, seconds: float, seed: int, run_dir) -> tuple[int, list, list]:
    """SimCLR, the baseline, trained in ``run_dir / "simclr"`` for ``cfg.simclr_epochs`` epochs or, if None, for
    as many as fit in EMP-SSL's ``seconds`` (:func:`simclr_epochs_for`). Returns ``(epochs, checkpoint paths,
    their metadata)``."""
    sim_epochs = cfg.simclr_epochs or simclr_epochs_for(cfg, simclr, splits, seconds, seed)
    torch.manual_seed(seed)
    _, paths = pretrain_with_checkpoints(simclr.make_model(splits.shape[0], cfg.width), splits,
                                         cfg.train_config(seed, BASELINE, sim_epochs), simclr, run_dir / "simclr",
                                         name="simclr")
    return sim_epochs, paths, [checkpoint_meta(p) for p in paths]


def run_pretraining(cfg: Config, seed: int, splits: Splits) -> dict:
    """EMP-SSL with checkpoints, the random encoder, SimCLR at equal wall-clock, each scored (cached)."""
    key = dict(cfg.key("device", "projections", "budget_fractions", "looks"),
               files={m: read_method_config(m) for m in (METHOD, BASELINE)}, seed=seed)

    def compute(run_dir):
        dev = resolve_device(cfg.device)
        encoder_at = lambda path: load_backbone(path, cfg.encoder(splits.shape[0])).to(dev)  # noqa: E731
        backbone_at = lambda path: load_backbone(path, ResNet18(splits.shape[0], cfg.width)).to(dev)  # noqa: E731
        out = {"emp": [], "simclr": []}
        emp, simclr = cfg.methods()
        torch.manual_seed(seed)
        res, paths = pretrain_with_checkpoints(emp.make_model(splits.shape[0], cfg.width), splits,
                                               cfg.train_config(seed), emp, run_dir / "emp", name="emp_ssl")
        out["emp_ips"] = res.images_per_second
        chosen = [p for p in paths if checkpoint_meta(p)["epoch"] in cfg.epochs]
        for i, p in enumerate(tqdm(chosen, desc="scoring EMP-SSL checkpoints")):
            meta = checkpoint_meta(p)
            out["emp"].append({"epoch": meta["epoch"], "seconds": meta["train_seconds"],
                               **score(encoder_at(p), splits, cfg, seed, cfg.eval_patches, i == len(chosen) - 1)})
        out["emp_whole"] = score(encoder_at(paths[-1]), splits, cfg, seed, None)
        torch.manual_seed(seed)
        rand = cfg.encoder(splits.shape[0]).to(dev)  # EMP-SSL's network untrained, scored on the same layer
        out["random"] = score(rand, splits, cfg, seed, cfg.eval_patches, keep_features=True)
        out["random_whole"] = score(rand, splits, cfg, seed, None)
        budget = out["emp"][-1]["seconds"]
        sim_epochs, sim_paths, metas = train_simclr(cfg, simclr, splits, budget, seed, run_dir)
        for row in tqdm(out["emp"], desc="scoring SimCLR checkpoints"):
            i = int(np.argmin([abs(m["train_seconds"] - row["seconds"]) for m in metas]))
            out["simclr"].append({"emp_epoch": row["epoch"], "epoch": metas[i]["epoch"],
                                  "seconds": metas[i]["train_seconds"],
                                  **score(backbone_at(sim_paths[i]), splits, cfg, seed, None)})
        out["sim_epochs"] = sim_epochs
        folder = run_dir / "projections"
        out["projections"] = [str(save_projections(folder / f"{name}.csv", r["test_features"], r["test_labels"],
                                                   "test", splits.classes))
                              for name, r in (("random_encoder", out["random"]), ("EMP-SSL", out["emp"][-1]))]
        return out

    return cached("emp_ssl", key, compute)


def run_one_epoch(cfg: Config, seed: int, splits: Splits) -> dict:
    """One point of the claims' budget curve (cached): EMP-SSL trained for one epoch over ``splits.train``
    (``cfg`` is a :meth:`Config.budget_configs` config: ``epochs=(1,)``, its cosine schedule over that
    epoch), scored on patch-averaged features; the random encoder (EMP-SSL's untrained network) on the same
    features; SimCLR trained for the same seconds (``simclr_epochs`` epochs where given) and its checkpoint
    nearest in seconds scored on whole images. Returns ``{"emp", "random", "simclr"}`` (scores without
    features), ``seconds``, ``sim_epochs``, ``n_train``."""
    key = dict(cfg.key("device", "projections", "budget_fractions", "looks"),
               files={m: read_method_config(m) for m in (METHOD, BASELINE)}, seed=seed)

    def compute(run_dir):
        dev = resolve_device(cfg.device)
        emp, simclr = cfg.methods()
        torch.manual_seed(seed)
        _, paths = pretrain_with_checkpoints(emp.make_model(splits.shape[0], cfg.width), splits,
                                             cfg.train_config(seed, epochs=1), emp, run_dir / "emp", name="emp_ssl")
        seconds = checkpoint_meta(paths[-1])["train_seconds"]
        out = {"n_train": len(splits.train), "seconds": seconds,
               "emp": score(load_backbone(paths[-1], cfg.encoder(splits.shape[0])).to(dev), splits, cfg, seed,
                            cfg.eval_patches)}
        torch.manual_seed(seed)
        out["random"] = score(cfg.encoder(splits.shape[0]).to(dev), splits, cfg, seed, cfg.eval_patches)
        sim_epochs, sim_paths, metas = train_simclr(cfg, simclr, splits, seconds, seed, run_dir)
        i = int(np.argmin([abs(m["train_seconds"] - seconds) for m in metas]))
        backbone = load_backbone(sim_paths[i], ResNet18(splits.shape[0], cfg.width)).to(dev)
        out["simclr"] = {"epoch": metas[i]["epoch"], "seconds": metas[i]["train_seconds"],
                         **score(backbone, splits, cfg, seed, None)}
        out["sim_epochs"] = sim_epochs
        for name in ("emp", "random", "simclr"):
            out[name].pop("confusion", None)
        return out

    return cached("emp_ssl_one_epoch", key, compute)


@dataclass
class BudgetCurve:
    """The claims' runs: ``budgets`` (training images, increasing) and per budget the one-epoch run of
    each seed (:func:`run_one_epoch`, seeds in ``cfg.seeds_upto`` order: paired)."""

    budgets: list[int]
    runs: list[list[dict]]

    def accs(self, variant: str, metric: str = "linear") -> list[list[float]]:
        """Per budget, ``metric`` of ``variant`` (``emp``, ``random``, ``simclr``) per seed."""
        return [[float(r[variant][metric]) for r in at] for at in self.runs]


def budget_curve(cfg: Config, n_full: int, n_seeds: int | None = None) -> BudgetCurve:
    """:func:`run_one_epoch` at every point of ``cfg.budget_configs(n_full)`` for the first ``n_seeds`` seeds of
    ``cfg.seeds_upto`` (default: ``cfg.seeds``)."""
    seeds = cfg.seeds_upto(n_seeds or len(cfg.seeds))
    budgets, runs = [], []
    for n, at in cfg.budget_configs(n_full):
        splits = load_data(at)
        budgets.append(n)
        runs.append([run_one_epoch(at, seed, splits) for seed in tqdm(seeds, desc=f"one epoch, {n:,} images")])
    return BudgetCurve(budgets, runs)


def check_looks(looks) -> None:
    """``looks``: increasing seed counts >= 2 (the sequential design's looks), or ``()``."""
    if not isinstance(looks, tuple) or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in looks) \
            or list(looks) != sorted(set(looks)):
        raise ValueError(f"looks={looks!r} must be increasing seed counts >= 2, e.g. (3, 5), or () for one look")


__all__ = ["BASELINE", "METHOD", "PRESETS", "BudgetCurve", "Config", "budget_curve", "load_data", "run_one_epoch",
           "run_pretraining", "score", "simclr_epochs_for", "train_simclr"]
