"""The zoo of self-supervised representations (the chapter "A zoo of self-supervised representations").

What it reproduces: patchwork's ``patchwork.feature`` (jg10545/patchwork, TensorFlow): a zoo of
self-supervised trainers -- SimCLR (Chen et al., ICML 2020, arXiv:2002.05709), MoCo v2 with queue
(He et al., CVPR 2020, arXiv:1911.05722; Chen et al. 2020, arXiv:2003.04297) with the EqCo margin
(Zhu et al. 2021, arXiv:2010.01929) and MoCHi hard negatives (Kalantidis et al., NeurIPS 2020,
arXiv:2010.01028), HCL (Robinson et al., ICLR 2021, arXiv:2010.04592), DeepCluster (Caron et al.,
ECCV 2018, arXiv:1807.05520), Context Encoder (Pathak et al., CVPR 2016, arXiv:1604.07379) and DetCon_S
(Henaff et al., ICCV 2021, arXiv:2103.10957) -- compared as frozen encoders.

What the recipe does: every method trains the same narrow CIFAR-style ResNet-18 (``width``) with its
hyper-parameters from ``patchnb/ssl/configs/<method>.yaml`` for the same ``epochs`` at the same
``batch_size`` (so every method sees the same images); every encoder, plus three reference rows, is
then scored by the one protocol :func:`patchnb.eval.protocol.evaluate_encoder` (linear probe with its
L2 strength chosen on validation and scored once on test, weighted kNN k = 20 / t = 0.07,
alignment / uniformity of Wang & Isola 2020 on ``n_geometry`` test images). The reference rows: the
**random** encoder (same architecture, untrained), the **supervised** bound (same backbone + a linear
layer, cross-entropy, same epochs and batch) and the **Phi_full** patch network of Brutzkus et al.
(ICML 2022; ``build_dictionary`` + ``LocallyLinearNetwork``, trained supervised for ``phi_epochs``),
whose frozen bottleneck is probed.

Deviations from patchwork, named: PyTorch and one training loop (:func:`patchnb.train.fit`) instead of
one TensorFlow trainer per method; the probe is an L2-regularised logistic regression (patchwork: a
linear SVM) on a held-out validation split; uniformity uses squared distances over distinct pairs
and the EqCo margin and MoCHi mixing are applied (the defects of the original listed in the seeds'
README are not copied); one ``batch_size`` replaces every YAML ``train.batch_size`` (an equal budget);
``method_params`` override YAML ``params`` where the smoke/cpu data are too small for them (a queue or
a cluster count larger than the training set).

Output besides the page: with ``projections`` (default), the test embeddings of the best
self-supervised encoder (first seed) as a TensorBoard projector folder with a sprite of the test images,
``book/generated/projections/ssl_zoo/`` and its zip (:func:`patchnb.eval.projections.save_book_projector`;
the path is relative to the working directory, the repository root under ``patchnb book``).

Budget: ``BUDGET = "encoder_images"``, the training images the encoders learn from: the first
``encoder_images`` images of the training split (``None``: all of it) train the six methods, the
supervised bound and the Phi_full row (its dictionary too), with the same epochs and schedule (so
fewer steps); the probes and kNN always read the whole training split, so the evaluation protocol is
the same at every budget (sweeping ``n_train`` would also change what the probes learn from; sweeping
``epochs`` would need four epochs at cpu scale, twice the cost). The random encoder is untrained: one
row per seed serves every budget.

Verdicts: every claim of the page -- each method beats the random encoder, the supervised network is
above the best self-supervised encoder (an upper bound), the Phi_full features probe better than the
best self-supervised encoder, and more uniform encoders probe better (Spearman rho of uniformity and
probe accuracy across the encoders below 0) -- is decided by the book's rule
(:func:`patchnb.experiments.verdict.budget_verdict`) on linear-probe test accuracy at the fractions
``budget_fractions`` of the encoders' training images (1/4, 1/2, all) over ``seeds``, paired by seed
(:func:`patchnb.experiments.ssl_zoo_report.claims`). The ranking and the kNN winner are descriptions
of the full budget's means, not verdicts.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from tqdm.auto import tqdm

from ..cache import cached
from ..checks import check_choice, check_int
from ..data import DATASETS, Splits, load_splits
from ..embedding import PatchEmbedding, build_dictionary
from ..eval import FeatureMap, evaluate_encoder, save_book_projector
from ..models import LocallyLinearNetwork, ResNet18
from ..ssl import read_method_config
from ..ssl.config import build_method
from ..train import Classification, TrainConfig, fit
from .base import ExperimentConfig, check_budget_fractions
from .result import Result
from .ssl_zoo_report import BASELINES, best_test_features, figures, summary_table, texts

#: the self-supervised methods of the zoo (keys of ``patchnb/ssl/configs``)
METHODS = ("simclr", "mocov2", "hcl", "deepcluster", "context_encoder", "detcon")
#: optimisation of the two supervised rows (no YAML: they are not self-supervised methods)
SUPERVISED_TRAIN = dict(optimizer="adam", lr=1e-3, weight_decay=1e-6, schedule="cosine")
PHI_FULL_TRAIN = dict(optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="cosine")


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """The zoo's parameters (see the module docstring); ``Config.preset(scale)`` reads :data:`PRESETS`."""

    methods: tuple[str, ...] = METHODS           # which self-supervised rows to train
    dataset: str = "fashion_mnist"
    n_train: int | None = 4000                   # training images (None: the whole train split)
    n_val: int | None = 1000
    n_test: int | None = 2000
    width: int = 8                               # ResNet-18 width: features are 8 * width
    epochs: int = 2                              # training epochs of every method and the supervised bound
    batch_size: int = 256                        # replaces every method's YAML train.batch_size
    knn_bank_size: int = 2000                    # bank of the per-epoch kNN monitor (a method parameter)
    n_geometry: int = 1000                       # test images for alignment / uniformity
    method_params: dict = field(default_factory=dict)  # {method: {param: value}}: overrides of YAML params
    phi_n_centroids: int = 128                   # the Phi_full row's dictionary size
    phi_k: int = 32                              # nearest centroids per patch
    phi_n_patches: int = 20000                   # patches sampled for k-means
    phi_epochs: int = 1
    phi_patch_size: int = 5                      # patches of the patch network (the paper's 5x5)
    projections: bool = True                     # write book/generated/projections/ssl_zoo/ (+ .zip)
    encoder_images: int | None = None            # first training images the encoders learn from (None: all)
    budget_fractions: tuple = (0.25, 0.5, 1.0)   # fractions of the encoders' images of the budget curve

    BUDGET: ClassVar[str] = "encoder_images"

    def validate(self) -> None:
        if not isinstance(self.methods, tuple) or not self.methods:
            raise ValueError(f"methods must be a non-empty list of {list(METHODS)}, got {self.methods!r}")
        for m in self.methods:
            check_choice("methods", m, METHODS)
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must not repeat a method, got {list(self.methods)}")
        check_choice("dataset", self.dataset, DATASETS)
        for name in ("n_train", "n_val", "n_test"):
            check_int(name, getattr(self, name), 1, allow_none=True)
        for name, low in (("width", 1), ("epochs", 1), ("batch_size", 2), ("knn_bank_size", 1), ("n_geometry", 2),
                          ("phi_n_centroids", 1), ("phi_k", 1), ("phi_n_patches", 1), ("phi_epochs", 1),
                          ("phi_patch_size", 1)):
            check_int(name, getattr(self, name), low)
        if not isinstance(self.projections, bool):
            raise ValueError(f"projections must be True or False, got {self.projections!r}")
        check_int("encoder_images", self.encoder_images, 1, allow_none=True)
        if self.encoder_images is not None and self.n_train is not None and self.encoder_images > self.n_train:
            raise ValueError(f"encoder_images={self.encoder_images} must be <= n_train={self.n_train} (the encoders "
                             f"learn from the first images of the training split)")
        check_budget_fractions(self.budget_fractions, "the encoders' training images")
        if self.phi_k > self.phi_n_centroids:
            raise ValueError(f"phi_k={self.phi_k} must be <= phi_n_centroids={self.phi_n_centroids}")
        if not isinstance(self.method_params, dict):
            raise ValueError(f"method_params must be a dict {{method: {{param: value}}}}, got {self.method_params!r}")
        for m, params in self.method_params.items():
            check_choice("method_params", m, METHODS)
            if not isinstance(params, dict):
                raise ValueError(f"method_params[{m!r}] must be a dict of parameters, got {params!r}")
            try:
                build_method(read_method_config(m), **params)
            except (TypeError, ValueError) as e:
                raise ValueError(f"method_params[{m!r}]={params!r} is not valid for {m}: {e}") from e

    def train_config(self, row: str, seed: int) -> TrainConfig:
        """THE TrainConfig of a row: a method's YAML ``train`` section (or the supervised rows'
        settings) with ``batch_size`` replaced, ``epochs`` (``phi_epochs`` for Phi_full), ``seed``, ``device``."""
        check_choice("row", row, (*METHODS, "supervised", "phi_full"))
        if row in METHODS:
            base, epochs = read_method_config(row)["train"], self.epochs
        else:
            base, epochs = (SUPERVISED_TRAIN, self.epochs) if row == "supervised" else (PHI_FULL_TRAIN, self.phi_epochs)
        return TrainConfig(**{**base, "batch_size": self.batch_size}, epochs=epochs, seed=seed, device=self.device)

    def method_overrides(self, method: str) -> dict:
        """The parameters that replace the YAML ``params`` of ``method``."""
        return {"knn_bank_size": self.knn_bank_size, **self.method_params.get(method, {})}

    def data_key(self) -> dict:
        return {"dataset": self.dataset, "n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test}

    def images_seen(self, n_train: int) -> int:
        """Images one method sees: full batches of the training split, ``epochs`` times."""
        return self.epochs * (n_train // self.batch_size) * self.batch_size

    def budgets(self, splits: Splits) -> list[int]:
        """The budget curve: the encoders' training images at each of ``budget_fractions``, increasing (the
        last is this configuration's, ``encoder_images`` or the whole training split)."""
        full = self.encoder_images or len(splits.train)
        sizes = sorted(max(1, int(round(full * f))) for f in self.budget_fractions)
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"budget_fractions={self.budget_fractions} give {sizes} of {full} training images: not "
                             f"distinct; use a larger n_train or other fractions")
        return sizes


def encoder_splits(splits: Splits, n: int) -> Splits:
    """``splits`` whose training split is its first ``n`` images (the encoders' budget); validation,
    test and the normalisation (of the whole training split) are unchanged."""
    if n >= len(splits.train):
        return splits
    return dataclasses.replace(splits, train=splits.train.subset(torch.arange(n)))


def _budget_key(splits: Splits, n: int) -> dict:
    """The cache-key part of the encoders' budget: empty at the whole training split (the keys of the
    runs made before the budget curve)."""
    return {} if n >= len(splits.train) else {"encoder_images": n}


# batch_size replaces every YAML train.batch_size (256 in every shipped config); method_params replace YAML
# params where the data are too small for them (a MoCo queue or a cluster count above the training set)
PRESETS = {
    "smoke": dict(seeds=(0,), dataset="fashion_mnist", n_train=128, n_val=64, n_test=128, width=4, epochs=1,
                  batch_size=64, knn_bank_size=128, n_geometry=64,
                  method_params={"deepcluster": {"n_clusters": 5, "pca_dim": 8},
                                 "mocov2": {"queue_size": 512, "mochi_n_hard": 64, "mochi_s": 32, "mochi_s_prime": 16}},
                  phi_n_centroids=16, phi_k=4, phi_n_patches=1000, phi_epochs=1),
    "cpu": dict(seeds=(0, 1), dataset="fashion_mnist", n_train=4000, n_val=1000, n_test=2000, width=8, epochs=2,
                batch_size=256, knn_bank_size=2000, n_geometry=1000,
                method_params={"deepcluster": {"n_clusters": 50, "pca_dim": 32}},
                phi_n_centroids=128, phi_k=32, phi_n_patches=20000, phi_epochs=1),
    "paper": dict(seeds=(0, 1, 2), dataset="cifar10", n_train=None, n_val=5000, n_test=None, width=64, epochs=200,
                  batch_size=512, knn_bank_size=5000, n_geometry=5000, method_params={"mocov2": {"momentum": 0.999}},
                  phi_n_centroids=1024, phi_k=256, phi_n_patches=262144, phi_epochs=200),
}
Config.PRESETS = PRESETS


def load_data(cfg: Config) -> Splits:
    return load_splits(cfg.dataset, train_size=cfg.n_train, val_size=cfg.n_val, test_size=cfg.n_test)


def evaluate(cfg: Config, encoder: nn.Module, splits: Splits) -> dict:
    """The protocol every row is scored with."""
    return evaluate_encoder(encoder, splits, n_geometry=cfg.n_geometry)


def _trained(res, **extra) -> dict:
    return {"history": res.history, "train_seconds": res.seconds, "images_per_second": res.images_per_second,
            **extra}


def run_ssl(cfg: Config, method: str, seed: int, splits: Splits, n: int | None = None) -> dict:
    """One self-supervised method at one seed (cached): training record, backbone weights, evaluation.
    ``n``: the encoder learns from the first ``n`` training images (default: all); the evaluation reads
    the whole of ``splits``."""
    n = len(splits.train) if n is None else n
    file_cfg = read_method_config(method)
    params = cfg.method_overrides(method)
    key = dict(row=method, file=file_cfg, params=params, seed=seed, width=cfg.width, epochs=cfg.epochs,
               batch_size=cfg.batch_size, n_geometry=cfg.n_geometry, **cfg.data_key(), **_budget_key(splits, n))
    full, splits = splits, encoder_splits(splits, n)

    def compute(run_dir):
        m = build_method(file_cfg, **params)
        kw = {"image_size": tuple(splits.shape[-2:])} if method == "context_encoder" else {}
        torch.manual_seed(seed)
        model = m.make_model(splits.shape[0], width=cfg.width, **kw)
        res = fit(model, splits, cfg.train_config(method, seed), m, run_dir=run_dir, name=f"ssl_zoo-{method}",
                  progress=True)
        state = {k: v.cpu() for k, v in model.backbone.state_dict().items()}
        return _trained(res, state=state, eval=evaluate(cfg, model.backbone, full))

    return cached("ssl_zoo", key, compute)


def run_random(cfg: Config, seed: int, splits: Splits) -> dict:
    """The untrained encoder (BatchNorm at its initial statistics)."""
    key = dict(row="random", seed=seed, width=cfg.width, n_geometry=cfg.n_geometry, **cfg.data_key())

    def compute(run_dir):
        torch.manual_seed(seed)
        net = ResNet18(splits.shape[0], cfg.width)
        return {"history": [], "train_seconds": 0.0, "state": net.state_dict(), "eval": evaluate(cfg, net, splits)}

    return cached("ssl_zoo", key, compute)


def run_supervised(cfg: Config, seed: int, splits: Splits, n: int | None = None) -> dict:
    """The same backbone + a linear layer, cross-entropy, the methods' epochs and batch size, on the first
    ``n`` training images (default: all)."""
    n = len(splits.train) if n is None else n
    key = dict(row="supervised", seed=seed, train=SUPERVISED_TRAIN, width=cfg.width, epochs=cfg.epochs,
               batch_size=cfg.batch_size, n_geometry=cfg.n_geometry, **cfg.data_key(), **_budget_key(splits, n))
    full, splits = splits, encoder_splits(splits, n)

    def compute(run_dir):
        torch.manual_seed(seed)
        backbone = ResNet18(splits.shape[0], cfg.width)
        model = nn.Sequential(backbone, nn.Linear(backbone.out_dim, len(splits.classes)))
        res = fit(model, splits, cfg.train_config("supervised", seed), Classification(), run_dir=run_dir,
                  name="ssl_zoo-supervised", progress=True)
        return _trained(res, state=backbone.state_dict(), trained_test_acc=res.test["score"],
                        eval=evaluate(cfg, backbone, full))

    return cached("ssl_zoo", key, compute)


def run_phi_full(cfg: Config, seed: int, splits: Splits, n: int | None = None) -> dict:
    """The Phi_full patch network (Brutzkus et al. 2022), trained supervised (dictionary and network on the
    first ``n`` training images, default all); its bottleneck is probed."""
    n = len(splits.train) if n is None else n
    key = dict(row="phi_full", seed=seed, train=PHI_FULL_TRAIN, n_centroids=cfg.phi_n_centroids, k=cfg.phi_k,
               n_patches=cfg.phi_n_patches, patch_size=cfg.phi_patch_size, epochs=cfg.phi_epochs,
               batch_size=cfg.batch_size, n_geometry=cfg.n_geometry, **cfg.data_key(), **_budget_key(splits, n))
    full, splits = splits, encoder_splits(splits, n)

    def compute(run_dir):
        torch.manual_seed(seed)
        x = splits.norm(splits.train.images, "cpu")
        d = build_dictionary(x, cfg.phi_patch_size, cfg.phi_n_patches, cfg.phi_n_centroids, seed=seed)
        emb = PatchEmbedding.from_dictionary(d, k=cfg.phi_k, mode="full")
        net = LocallyLinearNetwork(emb, splits.shape, len(splits.classes))
        res = fit(net, splits, cfg.train_config("phi_full", seed), Classification(), run_dir=run_dir,
                  name="ssl_zoo-phi_full", progress=True)
        bottleneck = FeatureMap(net, "features")
        return _trained(res, trained_test_acc=res.test["score"], eval=evaluate(cfg, bottleneck, full))

    return cached("ssl_zoo", key, compute)


def run_row(cfg: Config, row: str, seed: int, splits: Splits, n: int | None = None) -> dict:
    """One row at one seed, its encoder trained on the first ``n`` training images (the random row is
    untrained: the same at every ``n``)."""
    if row in METHODS:
        return run_ssl(cfg, row, seed, splits, n)
    if row == "random":
        return run_random(cfg, seed, splits)
    return {"supervised": run_supervised, "phi_full": run_phi_full}[row](cfg, seed, splits, n)


def run(cfg: Config) -> Result:
    """Every row at every seed and budget (cached), then the table (full budget), figures, words, verdicts
    and numbers of the page."""
    t0 = time.perf_counter()
    splits = load_data(cfg)
    order = (*cfg.methods, *BASELINES)
    budgets = cfg.budgets(splits)
    curve: dict[int, dict[str, list[dict]]] = {n: {} for n in budgets}
    points = [(n, s, r) for n in reversed(budgets) for s in cfg.seeds for r in order]
    for n, seed, row in tqdm(points, desc="ssl_zoo rows x budgets"):
        curve[n].setdefault(row, []).append(run_row(cfg, row, seed, splits, n))
    runs = curve[budgets[-1]]
    result = Result(cfg, runs=runs)
    result.tables["tab_zoo"] = summary_table(cfg, runs)
    result.text, result.numbers = texts(cfg, runs, splits, curve)
    best = result.text["best_ssl"]
    test_feats = best_test_features(cfg, runs, splits, best)
    result.figures = figures(cfg, runs, splits, best, test_feats, curve)
    if cfg.projections:  # the best self-supervised encoder's test embeddings, for the TensorBoard projector
        result.text["projection_dir"] = str(save_book_projector(
            "ssl_zoo", {best: test_feats}, splits.test.labels, splits.test.classes, images=splits.test.images,
            description=f"Test embeddings of {best} (seed {cfg.seeds[0]}), the best self-supervised encoder of the "
                        f"page ssl_zoo: {splits.describe()}; scale={cfg.scale}."))
    result.text["wall_clock"] = f"{time.perf_counter() - t0:.1f}"
    return result
