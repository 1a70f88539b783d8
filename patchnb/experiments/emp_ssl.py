"""Self-supervised learning in one epoch: EMP-SSL against SimCLR at equal wall-clock and a random encoder
(the chapter "Learning in one epoch: EMP-SSL").

What it reproduces: Tong, Chen, LeCun, Ma, "EMP-SSL: Towards Self-Supervised Learning in One Training
Epoch" (arXiv:2304.03977; the authors' code tsb0601/EMP-SSL, also ported by kachayev/ssl-in-one-epoch):
many fixed-size random crops (patches, a quarter of the image each) per image, the loss ``-200 x invariance
- mean total coding rate`` (eps 0.2), the code's LARS; the claim that the encoder is useful after a single
epoch, measured by a linear probe and a kNN classifier on *patch-averaged* embeddings (the mean over
``eval_patches`` crops per image of the layer the code evaluates: the output of the ``pre_feature`` block
``Linear-BN-ReLU`` after the ResNet, :class:`patchnb.ssl.emp.EMPEncoder`, not the ResNet's features).

What the recipe does: EMP-SSL with its settings from ``patchnb/ssl/configs/emp_ssl.yaml`` through the
shared loop, the encoder (ResNet + ``pre_feature``) saved after every epoch
(:func:`patchnb.ssl.pretrain_with_checkpoints`); the checkpoints of ``epochs`` are scored by the one
protocol :func:`patchnb.eval.protocol.evaluate_encoder` (L2 strength of the probe chosen on validation,
each probe scored once on test; weighted kNN k = 20, t = 0.07) with EMP-SSL's patch-averaged features
(:func:`patchnb.ssl.patch_averaged_features`, seeded: ``seed`` + 0 / 1 / 2 for train / val / test), plus
the uniformity (Wang & Isola 2020) and the von Mises-Fisher concentration of the l2-normalised test
embeddings. The last checkpoint is also scored on whole images. The settings (checked against the code,
see the YAML's header) are: crops of area 0.25, ratio 1; flip, jitter (0.4, 0.4, 0.4, 0.2) p 0.8,
grayscale 0.2, blur 0.1, solarize 0.1; ``pre_feature`` 4096-d and projection 4096-4096-1024 at the paper
scale; SGD with Nesterov momentum 0.9, weight decay 1e-4, lr 0.3 with a cosine schedule, inside
solo-learn's LARS wrapper (eta 0.005, clipping, biases and norm parameters excluded; ``optimizer:
lars_solo``). SimCLR (``patchnb/ssl/configs/simclr.yaml``) trains the same ResNet on the same images for
the same *training wall-clock* (its number of epochs is calibrated from the time of its own steps unless
``simclr_epochs`` is given; the checkpoint nearest in seconds to each EMP-SSL epoch is scored on whole
images, its standard protocol); a randomly initialised encoder is the floor (both ways).
The test embeddings of the random encoder and of the last EMP-SSL checkpoint are saved as CSV files in
the run's folder (patchwork's and the port's ``--save_proj``) and, with ``projections`` (default), as a
TensorBoard projector folder with a sprite of the test images, ``book/generated/projections/emp_ssl/``
and its zip (:func:`patchnb.eval.projections.save_book_projector`; relative to the working directory,
the repository root under ``patchnb book``).

Deviations from the original, named: a narrow CIFAR-style ResNet-18 (``width``; 64 is the standard one)
on Fashion-MNIST at the small scales, and at those scales a narrower ``pre_feature`` / projection
(``hidden_dim`` / ``out_dim`` 8x and 2x the ResNet's features, as 4096 and 1024 are for its 512: 256 / 64 at
smoke, 1024 / 256 at cpu); the probe is an L2-regularised logistic regression fitted by
L-BFGS (the port trains a linear layer for 100 epochs); the per-epoch numbers are snapshots of one run
with a cosine schedule over its last epoch count, not separate runs of 1, 2, ... epochs; ``n_patches``
and ``batch_size`` replace the YAML's (200 patches, batch 100) at the small scales. SimCLR's optimisation
is the recipe's (SGD lr ``simclr_lr``, momentum, weight decay, EMP-SSL's batch size and schedule), not
the YAML's Adam at batch 256; it is scored on its ResNet features (its standard protocol). The random
encoder is EMP-SSL's untrained network (ResNet + ``pre_feature``), scored on the same layer. The code's
augmentation details that :class:`patchnb.ssl.Augment` does differently: a narrower blur kernel, a fixed
jitter order, normalisation with the dataset's mean / std (the code's 0.5 / 0.5); the code evaluates with 128
patches per image (the recipe: ``eval_patches``).

Budget: ``BUDGET = "n_train"`` (the images of an epoch; the claim is about one pass over the data). The
page's claims are decided by the book's rule (:func:`patchnb.experiments.verdict.budget_verdict`) from
*one-epoch* runs (:func:`run_one_epoch`) at ``budget_fractions`` of the training images (1/4, 1/2 and all
of them by default) over every seed of ``seeds``, paired by seed: each budget point is EMP-SSL trained for
exactly one epoch over that many images (its own cosine schedule over that one epoch, so fewer steps at
the smaller budgets), the random encoder, and SimCLR for the same training seconds, all probed on that
budget's images. ``claim_random``: EMP-SSL's linear-probe accuracy after that one epoch beats the random
encoder's; ``claim_simclr``: it beats SimCLR's at equal wall-clock. The page's table, curves and sphere
view are one longer run (``epochs``, the first seed), whose epoch-1 row is a snapshot of a cosine schedule
over ``max(epochs)`` epochs, not a one-epoch run (a deviation named above).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..cache import cached
from ..checks import check_choice, check_float, check_int
from ..data import Splits, load_splits
from ..eval import evaluate_encoder, load_backbone, save_book_projector, save_projections
from ..losses import uniformity
from ..metrics import vmf_concentration
from ..models import ResNet18
from ..ssl import checkpoint_meta, patch_averaged_features, pretrain_with_checkpoints, read_method_config
from ..ssl.config import build_method
from ..ssl.emp import EMPEncoder
from ..train import TrainConfig, resolve_device
from .base import ExperimentConfig, check_budget_fractions
from .data_source import check_data_source
from .emp_ssl_report import (
    CLAIMS,
    BudgetCurve,
    budget_plot,
    budget_text,
    curves_figure,
    decide,
    pct,
    results_table,
    sphere_figure,
)
from .result import Result

METHOD, BASELINE = "emp_ssl", "simclr"  # the YAML configs (patchnb/ssl/configs/<name>.yaml)
PROBE_WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1)  # the L2 grid of the chapter's probes
SPLIT_SEED = {"train": 0, "val": 1, "test": 2}  # offsets of the patch-averaging seeds per split
N_UNIFORMITY = 2000  # test embeddings the uniformity is computed on
MAX_SIMCLR_EPOCHS = 100
#: the page's claims (glue name -> the variant EMP-SSL's one-epoch linear probe is claimed to beat)


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
    "cpu": dict(seeds=(0, 1), dataset="fashion_mnist", n_train=1000, n_val=500, n_test=1000, epochs=(1, 2, 3),
                n_patches=20, eval_patches=8, width=16, batch_size=50, hidden_dim=1024, out_dim=256),
    # 200 patches, batch 100 and the 4096 / 1024 head are the YAML's (the paper's CIFAR-10 recipe)
    "paper": dict(seeds=(0, 1, 2), dataset="cifar10", n_train=None, n_val=None, n_test=None, epochs=(1, 2, 5, 10),
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
    key = dict(cfg.key("device", "projections", "budget_fractions"),
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
    key = dict(cfg.key("device", "projections", "budget_fractions"),
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


def budget_curve(cfg: Config, n_full: int) -> BudgetCurve:
    """:func:`run_one_epoch` at every point of ``cfg.budget_configs(n_full)`` for every seed."""
    budgets, runs = [], []
    for n, at in cfg.budget_configs(n_full):
        splits = load_data(at)
        budgets.append(n)
        runs.append([run_one_epoch(at, seed, splits) for seed in tqdm(cfg.seeds, desc=f"one epoch, {n:,} images")])
    return BudgetCurve(budgets, runs)


def run(cfg: Config) -> Result:
    """The page's run (cached; the first seed), the claims' one-epoch runs along the budget curve (cached;
    every seed), then the curves, the table, the sphere view, the budget figure and the words and numbers of
    the page. Text ``claim_random`` / ``claim_simclr`` (the verdicts), ``<claim>_gap``, ``<claim>_curve``,
    ``budget_images``, ``budget_seeds``; figure ``fig_budget``; numbers ``<claim>_diff``."""
    splits = load_data(cfg)
    seed = cfg.seeds[0]
    out = run_pretraining(cfg, seed, splits)
    curve = budget_curve(cfg, len(splits.train))
    verdicts = decide(curve)
    train = cfg.train_config(seed)
    emp, sim = pd.DataFrame(out["emp"]), pd.DataFrame(out["simclr"])
    e1, s1, el, ew, rnd = out["emp"][0], out["simclr"][0], out["emp"][-1], out["emp_whole"], out["random"]
    emp_method = cfg.methods()[0]
    n_patches = emp_method.n_patches
    result = Result(cfg, runs={**out, "budgets": dict(zip(curve.budgets, curve.runs))})
    result.tables = {"tab_results": results_table(out, cfg)}
    result.figures = {"fig_curves": curves_figure(emp, sim, rnd), "fig_sphere": sphere_figure(rnd, el),
                      "fig_budget": budget_plot(cfg, curve)}
    for fig in result.figures.values():
        plt.close(fig)
    result.text = {
        "data_desc": f"{splits.describe()}; scale={cfg.scale}",
        "setup": f"ResNet-18 of width {cfg.width} ({8 * cfg.width}-d features), then the {emp_method.hidden_dim}-d "
                 f"pre_feature layer and a {emp_method.hidden_dim}-{emp_method.hidden_dim}-{emp_method.out_dim} "
                 f"projection; batch {train.batch_size} images x {n_patches} patches of area "
                 f"{emp_method.patch_scale[0]:g}; SGD-Nesterov in EMP-SSL's LARS wrapper, lr {train.lr:g} with a "
                 f"cosine schedule over {train.epochs} epochs; evaluation averages the {emp_method.hidden_dim}-d "
                 f"pre_feature layer over {cfg.eval_patches} patches per image",
        "emp_ips": f"{out['emp_ips']:.1f} images/s ({out['emp_ips'] * n_patches:.0f} patches/s)",
        "n_train": f"{len(splits.train):,}", "n_patches_t": str(n_patches),
        "emp_epoch_s": f"{e1['seconds']:.0f} s", "emp_full_epoch": f"{60000 / out['emp_ips'] / 60:.0f} min",
        "sim_epochs": str(out["sim_epochs"]),
        "emp1_lin": pct(e1["linear"]), "emp1_knn": pct(e1["knn"]), "sim1_lin": pct(s1["linear"]),
        "sim1_knn": pct(s1["knn"]), "rand_lin": pct(rnd["linear"]), "rand_knn": pct(rnd["knn"]),
        "gain_random": f"{100 * (e1['linear'] - rnd['linear']):+.1f}",
        **budget_text(cfg, curve, verdicts),
        "last_lin_patch": pct(el["linear"]), "last_lin_whole": pct(ew["linear"]),
        "last_knn_patch": pct(el["knn"]), "last_knn_whole": pct(ew["knn"]),
        "unif_emp": f"{el['uniformity']:.2f}", "unif_rand": f"{rnd['uniformity']:.2f}",
        "spread_verdict": "spread out" if el["uniformity"] < rnd["uniformity"] else "did not spread out",
        "kappa_emp": f"{el['kappa']:.1f}", "kappa_class_emp": f"{el['kappa_class']:.1f}",
        "kappa_rand": f"{rnd['kappa']:.1f}", "kappa_class_rand": f"{rnd['kappa_class']:.1f}",
    }
    if cfg.projections:  # the patch-averaged test embeddings of the random encoder and the last checkpoint
        result.text["projection_dir"] = str(save_book_projector(
            "emp_ssl", {"random_encoder": rnd["test_features"], f"emp_ssl_epoch{el['epoch']}": el["test_features"]},
            el["test_labels"], splits.test.classes, images=splits.test.images,
            description=f"Patch-averaged test embeddings of the random encoder and of EMP-SSL after {el['epoch']} "
                        f"epoch(s), page emp_ssl: {splits.describe()}; scale={cfg.scale}."))
    result.numbers = {
        **{f"emp{r['epoch']}_{k}": float(r[k]) for r in out["emp"] for k in ("linear", "knn", "uniformity")},
        **{f"simclr{r['emp_epoch']}_{k}": float(r[k]) for r in out["simclr"] for k in ("linear", "knn")},
        **{f"random_{k}": float(rnd[k]) for k in ("linear", "knn", "uniformity", "kappa")},
        **{f"random_whole_{k}": float(out["random_whole"][k]) for k in ("linear", "knn")},
        **{f"emp_whole_{k}": float(ew[k]) for k in ("linear", "knn")},
        "sim_epochs": float(out["sim_epochs"]), "emp_images_per_second": float(out["emp_ips"]),
        **{f"{claim}_diff": float(v.diffs[-1]) for claim, v in verdicts.items()},
        **{f"budget_{name}_linear": float(np.mean(curve.accs(name)[-1])) for name in ("emp", "random", "simclr")},
    }
    return result


__all__ = ["CLAIMS", "BudgetCurve", "Config", "PRESETS", "budget_curve", "decide", "load_data", "run",
           "run_one_epoch", "run_pretraining", "score", "simclr_epochs_for"]
