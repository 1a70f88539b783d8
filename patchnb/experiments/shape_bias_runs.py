"""The shape-bias chapter's cached runs (:mod:`patchnb.experiments.shape_bias` is the page): the ``Config`` and
``PRESETS``, the silhouettes, one bias run per model, training set, texture strength, seed and budget
(:func:`bias_record`, :func:`budget_records`) and the transfer scores (:func:`transfer_score`), each cached.

The import closure of this module is the key of its cached runs, so it holds no page code (verdicts,
figures, tables, words: :mod:`.shape_bias`); an edit there re-decides and re-draws the page without
re-training (``tests/test_cache_boundary.py``). Every bias run records its validation accuracy
(``val_accuracy``) beside the test ones; nothing of the page is selected on test.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from tqdm.auto import tqdm

from .. import data
from ..bias.experiment import BIAS_MODELS, bias_run
from ..bias.stimuli import fashion_mnist_masks
from ..bias.transfer import transfer
from ..cache import cached
from ..checks import check_float, check_int
from ..models.vision import MODELS, make_vision_model
from ..train import TrainConfig
from .base import ExperimentConfig, check_budget_fractions

TRAIN_KINDS = ("consistent", "stylized")
CONVOLUTIONAL, ATTENTION = ("resnet", "convnext"), ("vit", "coatnet")
MASK_SEED = 0  # the silhouettes drawn per class: the same for every run
STIMULI_SEED = 5  # the stimuli drawn in fig_stimuli
SMALL_WIDTHS = {"resnet": 8, "convnext": 16, "vit": 32, "coatnet": 8, "patch": 256}  # patch: dictionary size N
PAPER_WIDTHS = {"resnet": 32, "convnext": 64, "vit": 128, "coatnet": 32, "patch": 1024}


@dataclass(frozen=True)
class Config(ExperimentConfig):
    """Models, texture strengths and seeds of the comparison, the size of every stimulus set, the
    training budget and the second task's size (``fmnist`` Fashion-MNIST training images)."""

    models: tuple[str, ...] = BIAS_MODELS
    strengths: tuple[float, ...] = (0.25, 0.5, 1.0)  # texture contrast, 0 = no texture
    noise: float = 0.05  # additive gaussian pixel noise of the stimuli
    masks_train: int | None = 300  # silhouettes per class (None: all)
    masks_test: int | None = 100
    n_train: int = 2000
    n_val: int = 300
    n_test: int = 1000
    n_conflict: int = 1000
    epochs: int = 3
    fmnist: int | None = 5000  # second task: training images (val: a fifth, test: twice); None: all
    widths: dict = field(default_factory=lambda: dict(SMALL_WIDTHS))  # per model; patch: dictionary size N
    image_size: int = 28
    batch_size: int = 64
    lr: float = 2e-3
    budget_fractions: tuple = (0.25, 0.5, 1.0)  # fractions of n_train of the claims' budget curve (one is 1)
    #: seed counts of the claims' sequential looks beyond ``seeds``: a claim still undecided with ``seeds``
    #: gets the next seeds up to each count in turn, only for the claims' models (``()``: one look)
    looks: tuple = ()

    BUDGET: ClassVar[str] = "n_train"

    def validate(self) -> None:
        if not isinstance(self.models, tuple) or not self.models:
            raise ValueError(f"models must be a non-empty list of {list(BIAS_MODELS)}, got {self.models!r}")
        for m in self.models:
            if m not in BIAS_MODELS:
                raise ValueError(f"models: {m!r} is not supported; allowed values: "
                                 f"{', '.join(map(repr, BIAS_MODELS))}")
        if len(set(self.models)) != len(self.models):
            raise ValueError(f"models must not repeat a model, got {list(self.models)}")
        if not isinstance(self.strengths, tuple) or not self.strengths:
            raise ValueError(f"strengths must be a non-empty list of texture strengths in [0, 1], got "
                             f"{self.strengths!r}")
        for s in self.strengths:
            check_float("strengths", s, 0.0, 1.0)
        check_float("noise", self.noise, 0.0)
        for name in ("masks_train", "masks_test", "fmnist"):
            check_int(name, getattr(self, name), 1, allow_none=True)
        for name in ("n_train", "n_val", "n_test", "n_conflict", "epochs", "batch_size"):
            check_int(name, getattr(self, name), 1)
        check_int("image_size", self.image_size, 8)
        check_float("lr", self.lr, 0.0, strict_min=True)
        if not isinstance(self.widths, dict):
            raise ValueError(f"widths must map each model to its width, got {self.widths!r}")
        missing = [m for m in self.models if m not in self.widths]
        if missing:
            raise ValueError(f"widths has no width for model(s) {missing}; it has {sorted(self.widths)}")
        for m in self.models:
            check_int(f"widths[{m!r}]", self.widths[m], 1)
        object.__setattr__(self, "widths", dict(self.widths))  # a copy: presets share their dict
        check_budget_fractions(self.budget_fractions, "n_train")
        check_looks(self.looks)
        self.budgets  # noqa: B018 -- distinct training-set sizes, checked here (the API boundary)

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

    @property
    def budgets(self) -> list[int]:
        """The claims' budget curve: training stimuli per run, increasing (the last is ``n_train``)."""
        sizes = sorted(max(1, int(round(self.n_train * f))) for f in self.budget_fractions)
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"budget_fractions={self.budget_fractions} give n_train {sizes}: not distinct; use a "
                             f"larger n_train or other fractions")
        return sizes

    def train_config(self, seed: int) -> TrainConfig:
        """The optimisation of every run of the chapter (bias training and transfer)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, optimizer="adam", lr=self.lr,
                           schedule="cosine", seed=seed, device=self.device)

    @property
    def transfer_arch(self) -> str | None:
        """The backbone transferred to the second task: the ResNet, else the first vision model."""
        vision = [m for m in self.models if m in MODELS]
        return "resnet" if "resnet" in vision else (vision[0] if vision else None)


PRESETS = {
    "smoke": dict(models=("resnet", "vit", "patch"), strengths=(1.0,), seeds=(0,), masks_train=40, masks_test=20,
                  n_train=320, n_val=100, n_test=200, n_conflict=200, epochs=1, fmnist=600, widths=SMALL_WIDTHS),
    "cpu": dict(models=BIAS_MODELS, strengths=(0.25, 0.5, 1.0), seeds=(0, 1, 2), looks=(3, 5), masks_train=300,
                masks_test=100, n_train=2000, n_val=300, n_test=1000, n_conflict=1000, epochs=3, fmnist=5000,
                widths=SMALL_WIDTHS),
    "paper": dict(models=BIAS_MODELS, strengths=(0.1, 0.25, 0.5, 1.0), seeds=(0, 1, 2, 3, 4), masks_train=None,
                  masks_test=None, n_train=50000, n_val=5000, n_test=10000, n_conflict=10000, epochs=30, fmnist=None,
                  widths=PAPER_WIDTHS),
}
Config.PRESETS = PRESETS


def load_masks(cfg: Config) -> tuple[tuple, tuple]:
    """The training and test silhouettes (masks, labels, class names) of ``cfg``."""
    return (fashion_mnist_masks("train", n_per_class=cfg.masks_train, seed=MASK_SEED),
            fashion_mnist_masks("test", n_per_class=cfg.masks_test, seed=MASK_SEED))


def _run_key(cfg: Config, model: str, kind: str, strength: float, seed: int) -> dict:
    keep = ("noise", "masks_train", "masks_test", "n_train", "n_val", "n_test", "n_conflict", "image_size")
    return {"model": model, "kind": kind, "strength": strength, "seed": seed, "width": cfg.widths[model],
            **{k: getattr(cfg, k) for k in keep}, "train": dataclasses.asdict(cfg.train_config(seed))}


def bias_record(cfg: Config, model: str, kind: str, strength: float, seed: int, masks: tuple) -> dict:
    """One cached run: ``model`` trained on ``kind`` stimuli at texture ``strength`` with ``seed``
    (the record of :func:`patchnb.bias.experiment.bias_run`)."""
    train_masks, test_masks = masks
    return cached("shape_bias", _run_key(cfg, model, kind, strength, seed), lambda run_dir: bias_run(
        model, kind, train_masks, test_masks, texture_strength=strength, noise=cfg.noise, n_train=cfg.n_train,
        n_val=cfg.n_val, n_test=cfg.n_test, n_conflict=cfg.n_conflict, image_size=cfg.image_size,
        width=cfg.widths[model], cfg=cfg.train_config(seed), seed=seed, progress=True))


def _transfer_score(cfg: Config, source: dict, fm: data.Splits, mode: str, seed: int) -> float:
    arch = source["model"]
    backbone = make_vision_model(arch, 1, len(source["classes"]), cfg.image_size, cfg.widths[arch])
    backbone.load_state_dict(source["state"])
    return float(transfer(backbone, fm, cfg.train_config(seed), mode=mode, progress=True)[1].test["score"])


def transfer_score(cfg: Config, masks: tuple, kind: str, strength: float, mode: str, fm: data.Splits) -> float:
    """Fashion-MNIST test accuracy (cached) of ``cfg.transfer_arch`` trained on ``kind`` stimuli at ``strength``
    (the first seed), ``mode`` ``"frozen"`` or ``"finetune"``; ``fm``: the second task's splits."""
    arch, seed = cfg.transfer_arch, cfg.seeds[0]
    key = _run_key(cfg, arch, kind, strength, seed)
    return cached("shape_bias_transfer", {**key, "mode": mode, "fmnist": cfg.fmnist},
                  lambda run_dir: _transfer_score(cfg, bias_record(cfg, arch, kind, strength, seed, masks), fm, mode,
                                                  seed))


def load_fmnist(cfg: Config) -> data.Splits:
    """The second task: ``fmnist`` Fashion-MNIST training images, a fifth as many for validation, twice for test."""
    return data.load_splits("fashion_mnist", train_size=cfg.fmnist, val_size=cfg.fmnist and cfg.fmnist // 5,
                            test_size=cfg.fmnist and 2 * cfg.fmnist)


def claim_models(cfg: Config) -> tuple[list[str], list[str]]:
    """The convolutional and the attention models of ``cfg.models`` (the models the claims compare)."""
    return [m for m in CONVOLUTIONAL if m in cfg.models], [m for m in ATTENTION if m in cfg.models]


def budget_records(cfg: Config, masks: tuple, strength: float, n_seeds: int | None = None
                   ) -> dict[tuple[str, str], list[list[dict]]]:
    """The runs (cached) of the claims' models per ``(model, training set)``, per budget of ``cfg.budgets``,
    for the first ``n_seeds`` seeds of ``cfg.seeds_upto`` (default ``cfg.seeds``); the full budget is the
    table's runs."""
    conv, attn = claim_models(cfg)
    seeds = cfg.seeds_upto(n_seeds or len(cfg.seeds))
    points = [(n, cfg if n == cfg.n_train else cfg.replace(n_train=n)) for n in cfg.budgets]
    grid = [(m, k, i, at, seed) for m in conv + attn for k in TRAIN_KINDS for i, (_, at) in enumerate(points)
            for seed in seeds]
    out: dict[tuple[str, str], list[list[dict]]] = {}
    for m, k, i, at, seed in tqdm(grid, desc="shape-bias budget curve"):
        out.setdefault((m, k), [[] for _ in points])[i].append(bias_record(at, m, k, strength, seed, masks))
    return out


def check_looks(looks) -> None:
    """``looks``: increasing seed counts >= 2 (the sequential design's looks), or ``()``."""
    if not isinstance(looks, tuple) or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in looks) \
            or list(looks) != sorted(set(looks)):
        raise ValueError(f"looks={looks!r} must be increasing seed counts >= 2, e.g. (3, 5), or () for one look")


__all__ = ["ATTENTION", "CONVOLUTIONAL", "PRESETS", "TRAIN_KINDS", "Config", "bias_record", "budget_records",
           "claim_models", "load_fmnist", "load_masks", "transfer_score"]
