"""Evaluation of frozen representations: features (+ disk cache), the backbone loader, linear probe,
weighted kNN, alignment / uniformity, rotation test, diagnostic figures, saved projections and the
checkpoint sweep."""

from .features import BackboneError, cached_features, features, load_backbone, save_backbone
from .geometry import (
    alignment_uniformity,
    confusion_figure,
    kernel_figure,
    load_projections,
    query_figure,
    rotation_test,
    save_projections,
)
from .knn import KNNResult, knn_classifier, knn_classify
from .probe import ProbeResult, classification_metrics, confusion_matrix, linear_probe
from .sweep import SweepError, SweepResult, find_checkpoints, sweep_checkpoints

__all__ = [
    "BackboneError", "KNNResult", "ProbeResult", "SweepError", "SweepResult", "alignment_uniformity",
    "cached_features", "classification_metrics", "confusion_figure", "confusion_matrix", "features",
    "find_checkpoints", "kernel_figure", "knn_classifier", "knn_classify", "linear_probe", "load_backbone",
    "load_projections", "query_figure", "rotation_test", "save_backbone", "save_projections", "sweep_checkpoints",
]
