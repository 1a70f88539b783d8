"""Weighted kNN accuracy of frozen features (Wu et al. 2018), the validation score of the SSL methods."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_accuracy(train_features: torch.Tensor, train_labels: torch.Tensor, features: torch.Tensor,
                 labels: torch.Tensor, k: int = 20, temperature: float = 0.07, n_classes: int | None = None,
                 chunk: int = 1024) -> float:
    r"""Accuracy of the weighted kNN classifier of Wu et al. (CVPR 2018, "Unsupervised Feature
    Learning via Non-Parametric Instance Discrimination", sec. 3.4): features are l2-normalised,
    each query takes its ``k`` most cosine-similar bank items, and class ``c`` gets the vote
    :math:`\sum_{i \in N_k} e^{s_i/\tau} 1[y_i = c]`. Chunked over queries."""
    if k < 1 or temperature <= 0:
        raise ValueError(f"k must be >= 1 and temperature > 0, got k={k}, temperature={temperature}")
    if len(train_features) != len(train_labels) or len(features) != len(labels):
        raise ValueError("features and labels must have the same length")
    bank = F.normalize(train_features.float(), dim=1)
    n_classes = n_classes or int(max(train_labels.max(), labels.max())) + 1
    k = min(k, len(bank))
    correct = 0
    for i in range(0, len(features), chunk):
        q = F.normalize(features[i:i + chunk].float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(len(q), n_classes).scatter_add_(1, train_labels[idx], torch.exp(sim / temperature))
        correct += int((votes.argmax(1) == labels[i:i + chunk]).sum())
    return correct / max(len(features), 1)
