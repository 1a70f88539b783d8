"""THE frozen-encoder evaluation protocol of the book: every encoder of every chapter (a self-supervised
backbone, a random or supervised baseline, a patch network's bottleneck) is scored by the same probes.

:func:`evaluate_encoder` runs the encoder once over the train / val / test splits (eval mode, no
gradients; :func:`patchnb.eval.features.features`) and reports

* the **linear probe** (:func:`patchnb.eval.probe.linear_probe`): multinomial logistic regression on
  standardised features, its L2 strength chosen on validation accuracy, the chosen head scored once on
  test (accuracy, macro precision / recall / F1, confusion matrix) -- the protocol of Chen et al. 2020
  (SimCLR, sec. B.6) and Kolesnikov et al. 2019;
* the **weighted kNN** classifier of Wu et al. (CVPR 2018, sec. 3.4; :func:`patchnb.metrics.knn_classify`)
  with the training features as the bank, on val and test, with DINO's settings (Caron et al. 2021,
  ``eval_knn``: ``k = 20``, temperature ``0.07``). Wu et al. used ``k = 200``; ``k = 20`` is kept because
  the book's banks are small (4,000-60,000 images; 200 neighbours would be 5% of a 4,000-image bank), and
  every page that reports the kNN says so;
* **alignment and uniformity** of Wang & Isola (ICML 2020, arXiv:2005.10242, sec. 4.1;
  :func:`patchnb.eval.geometry.alignment_uniformity`) on up to ``n_geometry`` held-out test images
  (squared distances, distinct pairs, views = random crop after 4-pixel padding + flip).

The result is a plain dict (floats, ints, lists, and tensors only when asked for), so a recipe can
store it with :func:`patchnb.cache.cached`. Deterministic: the same encoder and splits give the same
numbers (the probe is full-batch L-BFGS from zero, the kNN has no randomness, the geometry subset and
views are drawn from a generator seeded with ``seed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..checks import check_float, check_int
from ..data import ImageData, Splits
from ..metrics import knn_classify
from .features import features
from .geometry import alignment_uniformity
from .probe import WEIGHT_DECAYS, linear_probe

#: the kNN settings of the protocol: DINO's ``eval_knn`` (k 20, t 0.07); Wu et al. 2018 used k 200 with t 0.07
KNN_K = 20
KNN_TEMPERATURE = 0.07

SPLITS = ("train", "val", "test")

#: ``features_fn(encoder, data, splits, split_name) -> (features (N, D), labels (N,))``
FeaturesFn = Callable[[nn.Module, ImageData, Splits, str], tuple[torch.Tensor, torch.Tensor]]


class FeatureMap(nn.Module):
    """The frozen feature map a probe sees when it is not ``module.forward``: ``module.<method>(x)``
    (e.g. ``FeatureMap(patch_network, "features")`` for the bottleneck of a locally linear network)."""

    def __init__(self, module: nn.Module, method: str = "forward"):
        super().__init__()
        if not callable(getattr(module, method, None)):
            raise ValueError(f"method={method!r}: {type(module).__name__} has no such method")
        self.module, self.method = module, method

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self.module, self.method)(x)


def _subset(data: ImageData, n: int | None, seed: int) -> ImageData:
    if n is None or n >= len(data):
        return data
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.subset(idx.sort().values)


def evaluate_encoder(encoder: nn.Module, splits: Splits, *, knn_k: int = KNN_K,
                     knn_temperature: float = KNN_TEMPERATURE, n_geometry: int | None = 1000,
                     probe_subset: int | None = None, weight_decays: Sequence[float] = WEIGHT_DECAYS,
                     features_fn: FeaturesFn | None = None, return_test_features: bool = False, seed: int = 0,
                     batch_size: int = 512, device=None) -> dict:
    """Score a frozen ``encoder`` (an ``nn.Module`` mapping normalised images to features) on ``splits``.

    Parameters
    ----------
    knn_k, knn_temperature:
        neighbours and temperature of the weighted kNN (capped at the bank size).
    n_geometry:
        test images for alignment / uniformity (a seeded subset when the test split is larger);
        ``None`` skips the geometry (e.g. when features are not the encoder's plain output).
    probe_subset:
        the number of training images both probes learn from (the probe's fit and the kNN bank; a subset
        seeded with ``seed``); ``None`` uses the whole train split.
    weight_decays:
        the L2 grid the linear probe searches on validation.
    features_fn:
        ``features_fn(encoder, data, splits, split_name)`` replaces :func:`~patchnb.eval.features.features`
        (e.g. EMP-SSL's patch-averaged features); ``split_name`` is ``"train"``, ``"val"`` or ``"test"``.
    return_test_features:
        also return ``"test_features"`` (N, D) and ``"test_labels"`` (tensors).

    Returns a dict of plain values: ``probe_accuracy`` (test), ``probe_val_accuracy``,
    ``probe_weight_decay``, ``probe_precision`` / ``probe_recall`` / ``probe_f1`` (test, macro),
    ``probe_grid`` (the validation search), ``confusion`` (test, rows = true class, a list of lists),
    ``knn_accuracy`` (test), ``knn_val_accuracy``, ``alignment`` / ``uniformity`` / ``n_geometry``
    (``None`` when skipped), ``feature_dim``, ``n_train`` (images the probes learned from) and
    ``seconds`` (wall-clock of the evaluation).
    """
    check_int("knn_k", knn_k, 1)
    check_float("knn_temperature", knn_temperature, 0.0, strict_min=True)
    check_int("n_geometry", n_geometry, 2, allow_none=True)
    check_int("probe_subset", probe_subset, 1, allow_none=True)
    check_int("seed", seed, 0)
    check_int("batch_size", batch_size, 1)
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    weight_decays = list(weight_decays)
    if not weight_decays:
        raise ValueError("weight_decays must list at least one L2 strength for the linear probe, got none")
    for wd in weight_decays:
        check_float("weight_decays", wd, 0.0)

    def feats(data: ImageData, name: str):
        if features_fn is not None:
            return features_fn(encoder, data, splits, name)
        return features(encoder, data, splits, batch_size, device)

    t0 = time.perf_counter()
    train = _subset(splits.train, probe_subset, seed)
    (ftr, ytr), (fva, yva), (fte, yte) = (feats(d, name) for d, name in zip((train, splits.val, splits.test), SPLITS))
    n_classes = len(splits.classes)
    probe = linear_probe(ftr, ytr, fva, yva, fte, yte, weight_decays=weight_decays, n_classes=n_classes)
    knn_test = knn_classify(ftr, ytr, fte, yte, k=knn_k, temperature=knn_temperature, n_classes=n_classes)
    knn_val = knn_classify(ftr, ytr, fva, yva, k=knn_k, temperature=knn_temperature, n_classes=n_classes)
    geometry = {"alignment": None, "uniformity": None, "n": None}
    if n_geometry is not None:
        geometry = alignment_uniformity(encoder, splits.test, splits, n=n_geometry, seed=seed, batch_size=batch_size,
                                        device=device)
    out = {
        "probe_accuracy": float(probe.test["accuracy"]), "probe_val_accuracy": float(probe.val["accuracy"]),
        "probe_weight_decay": float(probe.weight_decay), "probe_precision": float(probe.test["precision"]),
        "probe_recall": float(probe.test["recall"]), "probe_f1": float(probe.test["f1"]),
        "probe_grid": [dict(r) for r in probe.grid], "confusion": probe.test["confusion"],
        "knn_accuracy": float(knn_test.accuracy), "knn_val_accuracy": float(knn_val.accuracy),
        "alignment": geometry["alignment"], "uniformity": geometry["uniformity"], "n_geometry": geometry["n"],
        "feature_dim": int(ftr.shape[1]), "n_train": int(len(ftr)), "seconds": time.perf_counter() - t0,
    }
    if return_test_features:
        out["test_features"], out["test_labels"] = fte, yte
    return out
