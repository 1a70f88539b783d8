"""Weighted kNN accuracy of frozen features (Wu et al. 2018), the validation score of the SSL methods."""

from __future__ import annotations

import torch

from ..metrics.knn import knn_classify


def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, features: torch.Tensor,
                 labels: torch.Tensor, k: int = 20, temperature: float = 0.07, n_classes: int | None = None,
                 chunk: int = 1024) -> float:
    """Accuracy of the weighted kNN classifier of Wu et al. (CVPR 2018, sec. 3.4) with ``k``
    neighbours (default 20 as DINO's ``eval_knn``; Wu et al. used 200) and temperature ``temperature``:
    :func:`patchnb.metrics.knn_classify`, the one
    implementation, as a float (0 for an empty query set)."""
    result = knn_classify(train_features, train_labels, features, labels, k=k, temperature=temperature,
                          n_classes=n_classes, chunk=chunk)
    return float(result.accuracy) if result.accuracy is not None else 0.0
