"""One run of the patch network of Brutzkus et al., "Efficient Learning of CNNs using Patch Based
Features" (ICML 2022), and what the chapter's five pages share.

What it reproduces: one run of the original ``main.py`` (AlonNT/patch-based-learning): the
unsupervised stage (a k-means dictionary of whitened patches, or Table 1's random patches: gaussian
patches whitened by their own covariance and clustered, as the original), the locally linear network
with the Phi_full / Phi_hard embedding (Sec. 5) and its head (AvgPool -> BatchNorm -> 1x1 bottleneck ->
linear), Table 2's Simple model (one linear layer over the whole embedding), the vanilla
one-hidden-layer CNN, the layerwise deep version and the VGG-like CNN of Table 4. :class:`RunConfig` is
one such run (the options of ``patchnb train``), :func:`run_network` trains it with
:func:`patchnb.train.fit`.

What the pages share (:class:`ChapterConfig`): the budget of every run (data sizes, epochs, SGD, N, k,
patches for k-means; :data:`BUDGETS` per scale), the data splits, a variant's runs over seeds
(:func:`run_variants`, cached by their full :class:`RunConfig`, so pages asking for the same run train
it once: Table 3's *Both* and the Figures' default point are Table 1's Phi_full runs), a variant's
summary row (:func:`summarise`) and the budgets of a page's budget curve
(:meth:`ChapterConfig.budget_configs`, ``budget_fractions``: the claims are decided by
:mod:`.budget` from runs at those budgets, with the book's rule
:func:`patchnb.experiments.verdict.budget_verdict`).

Deviations from the original, named: the model is selected on a validation split held out of the
training set and tested once (the original reports the best test accuracy over epochs, a selection on
the test set); the dictionary is estimated on patches normalised as the model sees them (the original
estimates it on [0, 1] pixels while the model sees [-1, 1]); the smoke scale trains on a Fashion-MNIST
subset for one epoch; the cpu scale (:data:`BUDGETS`) trains Table 1 on the whole Fashion-MNIST training
split less the validation split (54,000 images, 6,000 for validation) for **one** epoch with a cosine
decay of the learning rate to 0 (the original: 200 epochs of CIFAR-10, 10x drops at epochs 100 and 150),
N = 256, k = 64 (the original: 1024, 256), no augmentation (the original: crop + flip); Tables 3 and the
Figures train on a quarter of it (13,500 images, Table 1's quarter-budget runs), Table 2 and Table 4 on
smaller subsets (their pages say which). ``paper`` is the original's defaults on the whole of CIFAR-10.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ...book import pm
from ...cache import cached
from ...checks import check_choice, check_float, check_int
from ...data import Splits, load_splits
from ...embedding import cache_embeddings
from ...models import VGGLike, train_layerwise
from ...models.patch import DICTIONARIES, NETWORK_MODES, seeded_init, table4_layers
from ...train import Classification, TrainConfig, fit, mean_std
from ..base import ExperimentConfig, check_budget_fractions

MODELS = ("patch", "vgg")
#: ``simple`` is Table 2's Simple model as the original (one linear layer over the whole embedding),
#: ``simple_factorised`` this package's earlier variant (a 1x1 conv N*D -> N first; not the original's)
EMBEDDINGS = (*NETWORK_MODES, "conv")
WHITENINGS = ("pca", "zca", "none")
PER_LAYER = ("k", "kernel_size", "avg_pool", "batch_norm", "padding")
#: datasets the pages can load without a folder (``imagefolder`` needs ``patchnb train --data-root``)
PAGE_DATASETS = ("fashion_mnist", "cifar10", "cifar100", "synthetic")
#: learning-rate schedules of a patch run (:data:`patchnb.optim.SCHEDULES` names)
SCHEDULES = ("multistep", "cosine")


# ----------------------------------------------------------------------------- one run


@dataclass
class RunConfig:
    """One run of the patch paper's experiments (defaults: the paper's, CIFAR-10). Per-layer fields
    (:data:`PER_LAYER`) are lists with one entry, broadcast, or one per layer; ``None`` is the paper's
    default for the depth (:func:`~patchnb.models.patch.table4_layers`: Table 4's for depth > 1; padding 0)."""

    model: str = "patch"
    embedding: str = "full"
    dictionary: str = "kmeans"
    whitening: str = "pca"
    n_centroids: int = 1024
    n_patches: int = 262144
    k: list[int] | None = None
    kernel_size: list[int] | None = None
    depth: int = 1
    avg_pool: list[bool] | None = None
    pool_size: int = 4
    pool_stride: int = 4
    batch_norm: list[bool] | None = None
    bottleneck: bool = True
    bottleneck_dim: int = 32
    relu_after_bottleneck: bool = False
    width: int = 1024
    padding: list[int] | None = None
    mlp_hidden_layers: int = 1
    kmeans_iters: int = 20
    dataset: str = "cifar10"
    data_root: str | None = None
    train_size: int | None = None
    val_size: int | None = None
    test_size: int | None = None
    augment: bool = True
    epochs: int = 200
    batch_size: int = 64
    lr: float = 0.003
    momentum: float = 0.9
    milestones: list[int] = field(default_factory=lambda: [100, 150])
    #: ``multistep`` (the original's: 10x drops at ``milestones``) or ``cosine`` (decay to 0 over the run,
    #: per step; the cpu scale's, whose runs end long before the original's first milestone)
    schedule: str = "multistep"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODELS)
        check_choice("embedding", self.embedding, EMBEDDINGS)
        check_choice("dictionary", self.dictionary, DICTIONARIES)
        check_choice("whitening", self.whitening, WHITENINGS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.depth < 1:
            raise ValueError(f"depth={self.depth} must be >= 1")
        for name in PER_LAYER:
            v = getattr(self, name)
            if v is not None and len(v) not in (1, self.depth):
                raise ValueError(f"{name} has {len(v)} entries but depth={self.depth}; give one or one per layer")
        if self.model == "vgg" and self.embedding != "full":
            raise ValueError("embedding applies to --model patch only; the VGG baseline is a plain CNN")
        if self.depth > 1 and self.model == "patch" and self.dictionary != "kmeans" and self.embedding == "conv":
            raise ValueError(f"dictionary={self.dictionary!r} has no meaning with embedding='conv'")
        if self.model == "patch" and self.embedding == "simple":
            on = [f"--{name.replace('_', '-')}" for name, value in
                  (("avg_pool", any(self.layers("avg_pool"))), ("batch_norm", any(self.layers("batch_norm"))),
                   ("bottleneck", self.bottleneck), ("relu_after_bottleneck", self.relu_after_bottleneck)) if value]
            if on or self.depth != 1:
                raise ValueError(f"embedding='simple' (Table 2's Simple model: one linear layer over the whole "
                                 f"embedding, as the original's --full_embedding) runs at depth 1 without pooling, "
                                 f"BatchNorm or bottleneck; set {' '.join(f'{o} false' for o in on) or 'depth 1'} "
                                 f"(got depth={self.depth}) or use embedding='simple_factorised'")

    def layers(self, name: str) -> list:
        """The per-layer list of ``name``: given (broadcast if one entry) or the paper's default."""
        v = getattr(self, name)
        if v is None:
            return [0] * self.depth if name == "padding" else table4_layers(name, self.depth)
        return list(v) * self.depth if len(v) == 1 and self.depth > 1 else list(v)

    def train_config(self) -> TrainConfig:
        """The run's optimisation: SGD with momentum, step decay at ``milestones`` or cosine decay
        (``schedule``; the one place a patch run's :class:`~patchnb.train.TrainConfig` is built)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, momentum=self.momentum,
                           schedule=self.schedule, milestones=tuple(self.milestones), seed=self.seed,
                           device=self.device)

    def load_data(self) -> Splits:
        return load_splits(self.dataset, root=self.data_root, train_size=self.train_size, val_size=self.val_size,
                           test_size=self.test_size)


def _summary(result, depth: int) -> dict:
    return {"depth": depth, "test_acc": result.test["score"], "val_acc": result.val["score"],
            "final_val_acc": result.final_val.get("score"), "best_epoch": result.best_epoch,
            "seconds": result.seconds, "images_per_second": result.images_per_second,
            "history": [{k: v for k, v in row.items() if isinstance(v, (int, float))} for row in result.history]}


def run_network(cfg: RunConfig, splits: Splits | None = None, run_dir: str | Path | None = None,
                progress: bool = True) -> dict:
    """Build the dictionary and model of ``cfg`` and train it with :func:`patchnb.train.fit` (one fit per
    layer for the layerwise patch model). Returns ``{"config", "results": [per-depth dict with test_acc
    (validation-selected model), val_acc, final_val_acc, best_epoch, seconds, images_per_second,
    history], "first_conv" (the learnable first-layer kernels or None), "dictionary" (layer 1's, or
    None), "seconds" (wall-clock including the dictionary)}``: tensors and plain values only (cacheable)."""
    t0 = time.perf_counter()
    splits = splits or cfg.load_data()
    shape, n_classes = splits.shape, len(splits.classes)
    tcfg = cfg.train_config()
    method = Classification(pad=4 if cfg.augment else 0, flip=cfg.augment)
    run_dir = Path(run_dir) if run_dir else None
    extra = {"experiment": asdict(cfg)}
    out = {"config": asdict(cfg), "results": [], "first_conv": None, "dictionary": None}

    def train(model, depth):
        sub = run_dir / f"depth{depth}" if run_dir and cfg.depth > 1 else run_dir
        if not cfg.augment:  # every epoch sees the same images: Phi_hard / the Phi_full mask once per image (exact)
            cache_embeddings(model)
        res = fit(model, splits, tcfg, method, run_dir=sub, name=f"{cfg.model}-{cfg.embedding}-d{depth}",
                  extra_config=extra, progress=progress)
        out["results"].append(_summary(res, depth))
        return res

    kernel_sizes, use_bn, pool = cfg.layers("kernel_size"), cfg.layers("batch_norm"), cfg.layers("avg_pool")
    if cfg.model == "vgg":
        with seeded_init(cfg.seed):
            model = VGGLike(shape, n_classes, cfg.depth, cfg.width, kernel_sizes, cfg.layers("padding"), use_bn,
                            pool[0], cfg.pool_size, cfg.pool_stride, cfg.bottleneck_dim, cfg.relu_after_bottleneck,
                            cfg.mlp_hidden_layers)
        train(model, cfg.depth)
        out["first_conv"] = model.features[0].weight.detach().clone()
    else:
        images = splits.norm(splits.train.images)
        head = dict(use_bottleneck=cfg.bottleneck, bottleneck=cfg.bottleneck_dim,
                    relu_after_bottleneck=cfg.relu_after_bottleneck)
        vanilla = cfg.embedding == "conv"
        mode = "full" if vanilla else cfg.embedding
        counter = iter(range(1, cfg.depth + 1))
        layers = train_layerwise(images, lambda m: train(m, next(counter)), n_classes, cfg.depth, kernel_sizes,
                                 cfg.layers("k"), cfg.n_centroids, cfg.n_patches, mode, pool, use_bn, cfg.pool_size,
                                 cfg.pool_stride, cfg.whitening, cfg.seed, vanilla, cfg.kmeans_iters,
                                 dictionary=cfg.dictionary, **head)
        first = layers[0][0]
        conv = first.conv if vanilla else getattr(first.embedding, "conv", None)
        out["first_conv"] = conv.weight.detach().clone() if conv is not None else None
        if not vanilla:
            emb = first.embedding
            out["dictionary"] = {"kernel": emb.kernel.clone(), "bias": emb.bias.clone()}
    out["seconds"] = time.perf_counter() - t0
    return out


def cached_run(cfg: RunConfig, splits: Splits | None = None) -> dict:
    """:func:`run_network` once per full configuration (:func:`patchnb.cache.cached`, keyed by
    ``asdict(cfg)`` and this module's import closure): every page asking for the same run shares it."""
    return cached("patch_run", asdict(cfg), lambda run_dir: run_network(cfg, splits, run_dir, progress=True))


# ----------------------------------------------------------------------------- the chapter's budget

#: The budget of every run of the chapter per scale; ``paper`` is the original ``main.py``'s defaults
#: on the whole of CIFAR-10 (200 epochs, N = 1024, k = 256, 262,144 patches, augmentation).
BUDGETS = {
    "smoke": dict(seeds=(0,), dataset="fashion_mnist", train_size=256, val_size=200, test_size=500, epochs=1,
                  schedule="multistep",
                  n_centroids=32, k=8, n_patches=4096, kmeans_iters=5, augment=False,
                  budget_fractions=(0.25, 0.5, 1.0)),
    "cpu": dict(seeds=(0, 1), dataset="fashion_mnist", train_size=None, val_size=None, test_size=None, epochs=1,
                schedule="cosine", n_centroids=256, k=64, n_patches=65536, kmeans_iters=10, augment=False,
                budget_fractions=(0.0625, 0.25, 1.0)),
    "paper": dict(seeds=(0, 1, 2, 3, 4), dataset="cifar10", train_size=None, val_size=None, test_size=None,
                  epochs=200, schedule="multistep", n_centroids=1024, k=256, n_patches=262144, kmeans_iters=20,
                  augment=True,
                  budget_fractions=(0.25, 0.5, 1.0)),
}


def presets(**own: dict) -> dict:
    """A page's ``PRESETS``: :data:`BUDGETS`, then the page's own values per scale (``smoke={...}``)."""
    unknown = sorted(set(own) - set(BUDGETS))
    if unknown:
        raise ValueError(f"presets() got unknown scales {unknown}; scales are {sorted(BUDGETS)}")
    return {scale: {**budget, **own.get(scale, {})} for scale, budget in BUDGETS.items()}


@dataclass(frozen=True)
class ChapterConfig(ExperimentConfig):
    """The budget every run of a page shares (defaults: the cpu scale). A page's ``Config`` adds what it
    varies; :meth:`run_config` turns the budget plus a variant's overrides into a :class:`RunConfig`."""

    dataset: str = "fashion_mnist"
    train_size: int | None = None          # training images (None: the whole train split minus validation)
    val_size: int | None = None            # validation images, held out of the train split (None: all 10%)
    test_size: int | None = None           # test images (None: the whole test split)
    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.003                      # SGD learning rate (the original's default)
    momentum: float = 0.9
    milestones: tuple[int, ...] = (100, 150)  # epochs at which the learning rate drops 10x (the original's)
    schedule: str = "cosine"               # "multistep" (the original's, at milestones) or "cosine" (to 0, per step)
    n_centroids: int = 256                 # dictionary size N
    k: int = 64                            # neighbours kept per position
    n_patches: int = 65536                 # patches sampled for k-means
    kmeans_iters: int = 10
    augment: bool = False                  # random crop (pad 4) + horizontal flip
    #: the budget curve of every claim: fractions of ``train_size`` (1 = the page's tables), each its own run
    budget_fractions: tuple = (0.0625, 0.25, 1.0)

    BUDGET: ClassVar[str] = "train_size"

    def validate(self) -> None:
        check_choice("dataset", self.dataset, PAGE_DATASETS)
        for name in ("train_size", "val_size", "test_size"):
            check_int(name, getattr(self, name), 1, allow_none=True)
        for name in ("epochs", "batch_size", "n_centroids", "k", "n_patches", "kmeans_iters"):
            check_int(name, getattr(self, name), 1)
        if self.k > self.n_centroids:
            raise ValueError(f"k={self.k} must be <= n_centroids={self.n_centroids} (the dictionary size)")
        check_float("lr", self.lr, 0, strict_min=True)
        check_float("momentum", self.momentum, 0, 1)
        if not isinstance(self.milestones, tuple):
            raise ValueError(f"milestones must be a list of epochs, got {self.milestones!r}")
        for m in self.milestones:
            check_int("milestones", m, 1)
        check_choice("schedule", self.schedule, SCHEDULES)
        if not isinstance(self.augment, bool):
            raise ValueError(f"augment must be true or false, got {self.augment!r}")
        check_budget_fractions(self.budget_fractions, "train_size")

    def run_config(self, seed: int, **overrides) -> RunConfig:
        """The run of this budget with ``seed``, then ``overrides`` (any :class:`RunConfig` field)."""
        base = dict(dataset=self.dataset, train_size=self.train_size, val_size=self.val_size,
                    test_size=self.test_size, epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                    momentum=self.momentum, milestones=list(self.milestones), schedule=self.schedule,
                    n_centroids=self.n_centroids,
                    k=[self.k], n_patches=self.n_patches, kmeans_iters=self.kmeans_iters, augment=self.augment,
                    seed=seed, device=self.device)
        return RunConfig(**{**base, **overrides})

    def load_data(self) -> Splits:
        """The train / val / test splits every run of the page trains and scores on."""
        return load_splits(self.dataset, train_size=self.train_size, val_size=self.val_size,
                           test_size=self.test_size)

    def budget_configs(self, splits: Splits) -> list[tuple[int, ChapterConfig]]:
        """The points of the page's budget curve, increasing: ``(training images, configuration)`` per
        fraction of ``budget_fractions``. The fraction 1 is this configuration itself (so its runs are
        the page's table runs, same cache key); the others scale the number of training images the page
        actually has (``len(splits.train)``, which also resolves ``train_size=None``, all of the split).
        Every point trains with the page's schedule (epochs, learning rate, milestones)."""
        full = len(splits.train)
        resolved = self.replace(train_size=full)
        points = [(full, self) if f == 1 else (resolved.at_budget(f).train_size, resolved.at_budget(f))
                  for f in sorted(self.budget_fractions)]
        sizes = [n for n, _ in points]
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"budget_fractions={self.budget_fractions} give training sizes {sizes} of "
                             f"{full} images: not distinct; use a larger train_size or other fractions")
        return points


def run_variants(cfg: ChapterConfig, variants: dict[str, dict], splits: Splits,
                 seeds: tuple[int, ...] | None = None, desc: str = "patch runs") -> dict[str, list[dict]]:
    """Each variant (its :class:`RunConfig` overrides) once per seed (``cfg.seeds`` unless given),
    cached (:func:`cached_run`): ``{variant: [run record per seed]}``."""
    seeds = cfg.seeds if seeds is None else tuple(seeds)
    out: dict[str, list[dict]] = {name: [] for name in variants}
    for name, seed in tqdm([(n, s) for n in variants for s in seeds], desc=desc):
        out[name].append(cached_run(cfg.run_config(seed, **variants[name]), splits))
    return out


def page_text(cfg: ChapterConfig, splits: Splits) -> dict[str, str]:
    """``data_desc`` (the data, cited by the book's introduction) and ``budget_desc`` (data and budget
    in one sentence) of a page."""
    data = f"{splits.describe()}; scale={cfg.scale}"
    decay = "cosine decay to 0" if cfg.schedule == "cosine" else f"10x drops at epochs {list(cfg.milestones)}"
    budget = (f"{data}; {cfg.epochs} epoch(s), batch {cfg.batch_size}, SGD lr {cfg.lr:g} momentum "
              f"{cfg.momentum:g} (unless stated), {decay}, N={cfg.n_centroids}, k={cfg.k}, {cfg.n_patches:,} "
              f"patches for k-means, augmentation {'on' if cfg.augment else 'off'}, seeds {list(cfg.seeds)}")
    return {"data_desc": data, "budget_desc": budget}


# ----------------------------------------------------------------------------- rows


def summarise(label: str, outs: list[dict], depth: int = 1) -> dict:
    """A table row for one variant: test accuracy of the validation-selected model (mean ± std over the
    runs in ``outs``, at layer ``depth`` of a layerwise run) beside the final-epoch and selected
    validation accuracy, seeds and wall-clock. Keys starting with ``_`` hold the raw values (``_accs``
    per seed, ``_mean``, ``_std``, ``_seconds``) and are hidden by :func:`table`."""
    rows = [o["results"][depth - 1] for o in outs]
    t, v, f = ([r[key] for r in rows] for key in ("test_acc", "val_acc", "final_val_acc"))
    mean, std = mean_std(t)
    seconds = float(np.mean([o["seconds"] for o in outs]))
    return {"variant": label, "test acc. (%)": pm(mean, std), "final-epoch val acc. (%)": pm(*mean_std(f)),
            "selected val acc. (%)": pm(*mean_std(v)), "seeds": ", ".join(str(o["config"]["seed"]) for o in outs),
            "wall-clock / run (s)": f"{seconds:.0f}", "_accs": [float(a) for a in t], "_mean": mean, "_std": std,
            "_seconds": seconds}


def table(rows: list[dict]) -> pd.DataFrame:
    """The rows of :func:`summarise` as a DataFrame indexed by variant, without the ``_`` columns."""
    return pd.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]).set_index("variant")
