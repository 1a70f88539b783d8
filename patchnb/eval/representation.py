"""One encoder's frozen representation scored the way the EMP-SSL chapter reports it: linear probe,
weighted kNN, uniformity and von Mises-Fisher concentration, on whole images or on EMP-SSL's
patch-averaged features (Tong et al. 2023, sec. 3.3)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch.nn.functional as F
from torch import nn

from ..losses import uniformity
from ..metrics import knn_classify, vmf_concentration
from ..ssl.augment import Augment
from ..ssl.emp import patch_averaged_features
from .features import features
from .probe import linear_probe


def evaluate_representation(encoder: nn.Module, splits, n_patches: int | None = None, seed: int = 0,
                            k: int = 20, temperature: float = 0.07,
                            weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1),
                            augment: Augment | None = None, batch_size: int = 512, device=None) -> dict:
    """Linear probe (regularisation chosen on validation, scored once on test), weighted kNN (``k``,
    ``temperature``; train split as the bank) and uniformity / vMF concentration of the l2-normalised test
    embeddings, for whole-image features (``n_patches=None``) or EMP-SSL's patch-averaged features.
    Returns the metrics and the test features (``"test_features"``, ``"test_labels"``)."""

    def feats(d, s):
        if n_patches is None:
            return features(encoder, d, splits, batch_size, device)
        return patch_averaged_features(encoder, d, splits, n_patches, seed + s, augment,
                                       batch_size=max(1, batch_size // n_patches), device=device)

    t0 = time.perf_counter()
    (ftr, ytr), (fva, yva), (fte, yte) = feats(splits.train, 0), feats(splits.val, 1), feats(splits.test, 2)
    seconds_features = time.perf_counter() - t0
    nc = len(splits.classes)
    probe = linear_probe(ftr, ytr, fva, yva, fte, yte, weight_decays=weight_decays, n_classes=nc)
    knn = knn_classify(ftr, ytr, fte, yte, k=k, temperature=temperature, n_classes=nc)
    knn_val = knn_classify(ftr, ytr, fva, yva, k=k, temperature=temperature, n_classes=nc)
    z = F.normalize(fte.double(), dim=1)
    sub = z[:2000]
    return {"linear": probe.test["accuracy"], "linear_val": probe.val["accuracy"], "knn": knn.accuracy,
            "knn_val": knn_val.accuracy, "precision": probe.test["precision"], "recall": probe.test["recall"],
            "f1": probe.test["f1"], "confusion": probe.test["confusion"], "weight_decay": probe.weight_decay,
            "uniformity": float(uniformity(sub)), "kappa": vmf_concentration(z)["kappa"],
            "kappa_class": vmf_concentration(z, yte)["kappa"], "seconds_features": seconds_features,
            "test_features": fte, "test_labels": yte}
