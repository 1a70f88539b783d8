"""Weighted k-nearest-neighbour classifier on frozen features (chunked, bounded memory).

One implementation for both users: the SSL methods' per-epoch validation score
(:func:`patchnb.ssl.knn_accuracy`) and the reported kNN accuracy of :mod:`patchnb.eval`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import check_finite, check_float, check_int, check_labels


@dataclass
class KNNResult:
    """``accuracy`` (None without query labels), ``predictions`` (N,) and the class ``votes`` (N, C)."""

    accuracy: float | None
    predictions: torch.Tensor
    votes: torch.Tensor


@torch.no_grad()
def knn_classify(train_feats: torch.Tensor, train_labels: torch.Tensor, query_feats: torch.Tensor,
                 query_labels: torch.Tensor | None = None, k: int = 20, temperature: float = 0.07,
                 n_classes: int | None = None, chunk: int = 1024, device=None) -> KNNResult:
    r"""Weighted kNN of Wu et al. (CVPR 2018, "Unsupervised Feature Learning via Non-Parametric Instance
    Discrimination", sec. 3.4; they used ``k = 200``), also DINO's ``eval_knn`` (Caron et al. 2021, whose
    ``k = 20`` and ``temperature = 0.07`` are the defaults here): features are l2-normalised,
    each query takes its ``k`` most cosine-similar bank items :math:`N_k` and class ``c`` receives

    .. math:: w_c = \sum_{i \in N_k} \exp(s_i / \tau)\, 1[y_i = c],

    the prediction is :math:`\arg\max_c w_c` (ties: the lowest class index). Queries are processed
    ``chunk`` at a time, so memory is ``O(chunk * len(bank))``. ``k`` is capped at the bank size.
    """
    check_int("k", k, 1)
    check_float("temperature", temperature, 0.0, strict_min=True)
    check_int("chunk", chunk, 1)
    check_int("n_classes", n_classes, 1, allow_none=True)
    if train_feats.ndim != 2 or query_feats.ndim != 2 or train_feats.shape[1] != query_feats.shape[1]:
        raise ValueError(f"train_feats and query_feats must be (N, D) with the same D, got {tuple(train_feats.shape)} "
                         f"and {tuple(query_feats.shape)}")
    if len(train_feats) != len(train_labels) or len(train_feats) == 0:
        raise ValueError(f"train_feats ({len(train_feats)}) and train_labels ({len(train_labels)}) must have the same "
                         f"non-zero length")
    if query_labels is not None and len(query_labels) != len(query_feats):
        raise ValueError(f"query_feats ({len(query_feats)}) and query_labels ({len(query_labels)}) differ in length")
    check_finite("train_feats", train_feats)
    check_finite("query_feats", query_feats)
    train_labels = check_labels("train_labels", train_labels, n_classes)
    if query_labels is not None:
        query_labels = check_labels("query_labels", query_labels)
    dev = torch.device(device) if device is not None else train_feats.device
    bank = F.normalize(train_feats.to(dev).float(), dim=1)
    bank_labels = train_labels.to(dev).long()
    n_classes = n_classes or int(bank_labels.max()) + 1
    k = min(k, len(bank))
    preds, votes = [], []
    for i in range(0, len(query_feats), chunk):
        q = F.normalize(query_feats[i:i + chunk].to(dev).float(), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        v = torch.zeros(len(q), n_classes, device=dev).scatter_add_(1, bank_labels[idx], torch.exp(sim / temperature))
        votes.append(v.cpu())
        preds.append(v.argmax(1).cpu())
    predictions = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    votes_all = torch.cat(votes) if votes else torch.zeros(0, n_classes)
    acc = None
    if query_labels is not None and len(query_labels):
        acc = float((predictions == query_labels.cpu().long()).float().mean())
    return KNNResult(acc, predictions, votes_all)


#: alias of :func:`knn_classify`
knn_classifier = knn_classify
