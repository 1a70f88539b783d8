"""The SSL zoo's cached runs (:mod:`patchnb.experiments.ssl_zoo` is the page): the ``Config`` and ``PRESETS``,
the data, and every row's training and evaluation at one seed and budget (:func:`run_row`, cached).

The import closure of this module is the key of its cached runs, so it holds no page code (verdicts,
figures, tables, words: :mod:`.ssl_zoo_report` and :mod:`.ssl_zoo`); an edit there re-decides and
re-draws the page without re-training (``tests/test_cache_boundary.py``). Every run records the linear
probe's and the kNN's **validation** accuracy beside the test ones (``eval["probe_val_accuracy"]``,
``eval["knn_val_accuracy"]``): the page chooses its "best" encoder on them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from ..cache import cached
from ..checks import check_choice, check_int
from ..data import DATASETS, Splits, load_splits
from ..embedding import PatchEmbedding, build_dictionary
from ..eval.protocol import FeatureMap, evaluate_encoder
from ..models import LocallyLinearNetwork, ResNet18
from ..ssl import read_method_config
from ..ssl.config import build_method
from ..train import Classification, TrainConfig, fit
from .base import ExperimentConfig, check_budget_fractions

#: the self-supervised methods of the zoo (keys of ``patchnb/ssl/configs``)
METHODS = ("simclr", "mocov2", "hcl", "deepcluster", "context_encoder", "detcon")
#: the reference rows: the untrained encoder, the supervised bound, the Phi_full patch network
BASELINES = ("random", "supervised", "phi_full")
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
    #: seed counts of the claims' sequential looks beyond ``seeds``: a claim still undecided with ``seeds``
    #: gets the next seeds up to each count in turn (``()``: one look, the seeds given)
    looks: tuple = ()

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
        check_looks(self.looks)
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

    @property
    def look_counts(self) -> tuple[int, ...]:
        """The seed counts the claims are tested at: ``len(seeds)``, then each of ``looks`` above it (one
        seed: that one look only, it decides nothing)."""
        return look_counts(self.seeds, self.looks)

    def seeds_upto(self, n: int) -> tuple[int, ...]:
        """The first ``n`` seeds of the sequential design: ``seeds``, then the next integers."""
        return seeds_upto(self.seeds, n)

    def budgets(self, splits: Splits) -> list[int]:
        """The budget curve: the encoders' training images at each of ``budget_fractions``, increasing (the
        last is this configuration's, ``encoder_images`` or the whole training split)."""
        full = self.encoder_images or len(splits.train)
        sizes = sorted(max(1, int(round(full * f))) for f in self.budget_fractions)
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"budget_fractions={self.budget_fractions} give {sizes} of {full} training images: not "
                             f"distinct; use a larger n_train or other fractions")
        return sizes


def check_looks(looks) -> None:
    """``looks``: increasing seed counts >= 2 (the sequential design's looks), or ``()``."""
    if not isinstance(looks, tuple) or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in looks) \
            or list(looks) != sorted(set(looks)):
        raise ValueError(f"looks={looks!r} must be increasing seed counts >= 2, e.g. (3, 5), or () for one look")


def look_counts(seeds: tuple, looks: tuple) -> tuple[int, ...]:
    """The seed counts a claim is tested at: ``len(seeds)``, then each of ``looks`` above it."""
    n = len(seeds)
    return (n,) if n < 2 else (n, *(m for m in looks if m > n))


def seeds_upto(seeds: tuple, n: int) -> tuple[int, ...]:
    """``seeds`` extended by the integers after their largest, to ``n`` seeds (the first ``n``)."""
    extra = tuple(range(max(seeds) + 1, max(seeds) + 1 + max(0, n - len(seeds))))
    return (*seeds, *extra)[:n]


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
    "cpu": dict(seeds=(0, 1, 2), looks=(3, 5), dataset="fashion_mnist", n_train=4000, n_val=1000, n_test=2000, width=8, epochs=2,
                batch_size=256, knn_bank_size=2000, n_geometry=1000,
                method_params={"deepcluster": {"n_clusters": 50, "pca_dim": 32}},
                phi_n_centroids=128, phi_k=32, phi_n_patches=20000, phi_epochs=1),
    "paper": dict(seeds=(0, 1, 2), looks=(3, 5), dataset="cifar10", n_train=None, n_val=5000, n_test=None, width=64, epochs=200,
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


