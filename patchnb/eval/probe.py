"""Linear probe on frozen features and the classification metrics reported with it.

The probe is the standard evaluation of self-supervised representations (e.g. Chen et al. 2020,
SimCLR, sec. B.6; Kolesnikov et al. 2019): a multinomial logistic regression on frozen features,
its L2 regularisation chosen on a validation split, evaluated once on test. Here:

* features are standardised with the mean / std of the probe's *train* features;
* the head ``W, b`` minimises ``CE(x W^T + b, y) + weight_decay / 2 * ||W||^2`` (bias not
  penalised), full batch, with L-BFGS (strong Wolfe line search): the optimum is unique for
  ``weight_decay > 0`` and the procedure has no randomness, so it is deterministic. The grid is
  walked from the strongest regularisation down, each fit starting from the previous solution (a
  regularisation path: the weaker, slower fits start close to their optimum);
* every value of ``weight_decays`` is tried; the one with the best validation accuracy wins (ties:
  the stronger regularisation), and only that head is scored on test.

Metrics (:func:`classification_metrics`, :func:`confusion_matrix`) are computed by ``sklearn.metrics``
with ``average="macro"``: precision / recall / F1 per class, averaged over the classes present in the
labels or the predictions, 0 where undefined (``zero_division=0``); F1 is the mean of per-class F1 scores.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import check_int, check_labels

#: default grid of L2 strengths searched on validation
WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _label_vectors(y_true, y_pred, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """``y_true``, ``y_pred`` as int64 numpy vectors and the number of classes, checked: same length,
    labels in ``[0, n_classes)`` (``n_classes`` defaults to the largest label + 1)."""
    y_true = torch.as_tensor(y_true).long().flatten().numpy()
    y_pred = torch.as_tensor(y_pred).long().flatten().numpy()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {len(y_true)} and {len(y_pred)}")
    if n_classes is not None:
        if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
            raise ValueError(f"n_classes must be an integer >= 1 or None, got {n_classes!r}")
        n_classes = int(n_classes)
    if len(y_true) == 0:
        return y_true, y_pred, n_classes or 0
    low, top = int(min(y_true.min(), y_pred.min())), int(max(y_true.max(), y_pred.max()))
    n = n_classes if n_classes is not None else top + 1
    if low < 0 or top >= n:
        bad = low if low < 0 else top
        raise ValueError(f"labels must lie in [0, n_classes={n}), got label {bad} in "
                         f"{'y_true' if bad in y_true else 'y_pred'}")
    return y_true, y_pred, n


def confusion_matrix(y_true, y_pred, n_classes: int | None = None) -> torch.Tensor:
    """``(n_classes, n_classes)`` int64 counts from ``sklearn.metrics.confusion_matrix``: rows = true class,
    columns = predicted class, every class ``0 .. n_classes - 1`` has its row and column (also one that
    occurs in neither vector); it sums to the number of samples. ``n_classes`` defaults to the largest
    label + 1; a label outside ``[0, n_classes)`` is a ``ValueError`` (sklearn would silently drop it)."""
    from sklearn import metrics as skm  # imported when used: sklearn (with scipy) costs seconds to import

    y_true, y_pred, n = _label_vectors(y_true, y_pred, n_classes)
    if len(y_true) == 0:  # sklearn refuses empty input; the counts of nothing are zeros
        return torch.zeros(n, n, dtype=torch.long)
    return torch.from_numpy(skm.confusion_matrix(y_true, y_pred, labels=np.arange(n)).astype(np.int64))


def classification_metrics(y_true, y_pred, n_classes: int | None = None) -> dict:
    """Accuracy and macro precision / recall / F1 from ``sklearn.metrics``, per-class values and the
    confusion matrix, all plain floats / ints / lists (the dict is JSON-ready).

    * ``accuracy``: ``accuracy_score``; ``n``: the number of samples.
    * ``precision`` / ``recall`` / ``f1``: ``precision_recall_fscore_support(average="macro",
      zero_division=0)`` over the classes that occur in ``y_true`` or ``y_pred`` (sklearn's default
      ``labels``): a class of the labels that is never predicted has precision 0 (0 / 0 set to 0), not
      NaN, and pulls the macro averages down; a class in neither vector is left out of the averages.
      F1 is the mean of the per-class F1 scores (not the F1 of the mean precision and recall).
    * ``per_class``: ``precision`` / ``recall`` / ``f1`` / ``support`` for every class ``0 ..
      n_classes - 1`` (``average=None``, ``zero_division=0``: 0 where undefined).
    * ``confusion``: :func:`confusion_matrix` as a list of lists.

    Raises ``ValueError`` for vectors of different lengths, no samples, or labels outside
    ``[0, n_classes)``."""
    from sklearn import metrics as skm

    y_true, y_pred, n = _label_vectors(y_true, y_pred, n_classes)
    if len(y_true) == 0:
        raise ValueError("y_true and y_pred hold no samples: there are no metrics to compute")
    precision, recall, f1, _ = skm.precision_recall_fscore_support(y_true, y_pred, average="macro",
                                                                   zero_division=0)
    per_precision, per_recall, per_f1, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(n), average=None, zero_division=0)
    return {"accuracy": float(skm.accuracy_score(y_true, y_pred)), "precision": float(precision),
            "recall": float(recall), "f1": float(f1), "n": len(y_true),
            "per_class": {"precision": per_precision.tolist(), "recall": per_recall.tolist(), "f1": per_f1.tolist(),
                          "support": support.astype(int).tolist()},
            "confusion": confusion_matrix(y_true, y_pred, n).tolist()}


@dataclass
class LinearHead:
    """A trained probe: standardisation + affine map. ``predict(feats)`` gives class indices."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    weight_decay: float

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        return ((feats.float() - self.mean) / self.std) @ self.weight.T + self.bias

    def predict(self, feats: torch.Tensor) -> torch.Tensor:
        return self.logits(feats).argmax(1)


def standardise(train_feats: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std of the probe's train features (std floored at ``eps``)."""
    x = train_feats.double()
    return x.mean(0).float(), x.std(0, unbiased=False).clamp_min(eps).float()


def fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float, max_iter: int = 100,
                 tol: float = 1e-6, init: tuple[torch.Tensor, torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression ``(W (C, D), b (C,))`` on already standardised ``x``, full-batch
    L-BFGS minimising ``mean CE + weight_decay/2 ||W||^2``, from zero or from ``init`` (a warm start)."""
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    x = x.float()
    w = torch.zeros(n_classes, x.shape[1]) if init is None else init[0].clone().float()
    b = torch.zeros(n_classes) if init is None else init[1].clone().float()
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    threads = torch.get_num_threads()
    small = x.numel() * n_classes < 2_000_000  # tiny problems: thread start-up costs more than it saves
    try:
        if small:
            torch.set_num_threads(1)
        with torch.enable_grad():
            opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
        raise FloatingPointError(f"the linear probe diverged (weight_decay={weight_decay}); check the features for "
                                 f"NaN/inf")
    return w.detach(), b.detach()


@dataclass
class ProbeResult:
    """Selected regularisation, validation and (if given) test metrics, the search and the head."""

    weight_decay: float
    val: dict
    test: dict | None
    grid: list[dict] = field(default_factory=list)
    head: LinearHead | None = None
    test_predictions: torch.Tensor | None = None

    def summary(self) -> dict:
        """JSON-ready: selected weight decay, the grid, val and test metrics."""
        return {"weight_decay": self.weight_decay, "grid": self.grid, "val": self.val, "test": self.test}


def _check(name: str, feats: torch.Tensor, labels: torch.Tensor, n_classes: int | None = None) -> None:
    if feats.ndim != 2 or labels.ndim != 1 or len(feats) != len(labels):
        raise ValueError(f"{name}: features must be (N, D) and labels (N,), got {tuple(feats.shape)} and "
                         f"{tuple(labels.shape)}")
    if len(feats) == 0:
        raise ValueError(f"{name}: no samples")
    if not torch.isfinite(feats).all():
        raise ValueError(f"{name}: features contain NaN or inf")
    check_labels(f"{name}_labels", labels, n_classes)


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, val_feats: torch.Tensor,
                 val_labels: torch.Tensor, test_feats: torch.Tensor | None = None,
                 test_labels: torch.Tensor | None = None, weight_decays=WEIGHT_DECAYS, n_classes: int | None = None,
                 max_iter: int = 100) -> ProbeResult:
    """Train a logistic-regression head per ``weight_decays`` value on standardised train features, select on
    validation accuracy (ties: the larger weight decay), and score the selected head once on test when
    ``test_feats`` / ``test_labels`` are given. Deterministic. See the module docstring."""
    check_int("n_classes", n_classes, 1, allow_none=True)
    check_int("max_iter", max_iter, 1)
    _check("train", train_feats, train_labels, n_classes)
    _check("val", val_feats, val_labels, n_classes)
    if (test_feats is None) != (test_labels is None):
        raise ValueError("give both test_feats and test_labels, or neither")
    if test_feats is not None:
        _check("test", test_feats, test_labels, n_classes)
    weight_decays = sorted({float(w) for w in weight_decays}, reverse=True)
    if not weight_decays or any(w < 0 or not math.isfinite(w) for w in weight_decays):
        raise ValueError(f"weight_decays must be a non-empty list of finite values >= 0, got {weight_decays}")
    top = int(max(train_labels.max(), val_labels.max(), test_labels.max() if test_labels is not None else 0)) + 1
    n_classes = n_classes or top
    mean, std = standardise(train_feats)
    x = (train_feats.float() - mean) / std
    y = train_labels.long()
    best, grid = None, []
    w = b = None
    for wd in weight_decays:  # strongest first (ties keep it); each fit warm-starts from the previous one
        w, b = fit_logistic(x, y, n_classes, wd, max_iter, init=None if w is None else (w, b))
        head = LinearHead(mean, std, w, b, wd)
        val = classification_metrics(val_labels, head.predict(val_feats), n_classes)
        grid.append({"weight_decay": wd, "val_accuracy": val["accuracy"],
                     "train_accuracy": float((head.predict(train_feats) == y).float().mean())})
        if best is None or val["accuracy"] > best[1]["accuracy"]:
            best = (head, val)
    head, val = best
    test, pred = None, None
    if test_feats is not None:
        pred = head.predict(test_feats)
        test = classification_metrics(test_labels, pred, n_classes)
    return ProbeResult(head.weight_decay, val, test, sorted(grid, key=lambda r: r["weight_decay"]), head, pred)
