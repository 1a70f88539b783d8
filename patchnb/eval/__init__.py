"""Evaluation of frozen representations: features (+ disk cache), the backbone loader, linear probe,
weighted kNN (:mod:`patchnb.metrics`, re-exported), alignment / uniformity, rotation test, diagnostic
figures, saved projections and the checkpoint sweep.

Offline evaluation of a saved checkpoint (features computed once, then read from the cache)::

    from patchnb.data import load_splits
    from patchnb.eval import cached_features, knn_classify, linear_probe
    from patchnb.ssl import ResNet18

    s = load_splits("fashion_mnist")
    ck = "runs/simclr/last.pt"                      # any file load_backbone accepts
    tr, va, te = (cached_features(ck, lambda: ResNet18(1, 16), d, s) for d in (s.train, s.val, s.test))
    knn = knn_classify(*tr, *te)                    # k = 20, temperature 0.07
    probe = linear_probe(*tr, *va, *te)             # L2 chosen on validation, one test evaluation
    print(knn.accuracy, probe.test["accuracy"], probe.test["f1"])

Every checkpoint of a run folder: :func:`sweep_checkpoints` or ``patchnb sweep-checkpoints RUN_DIR``.
"""

from ..metrics import KNNResult, knn_classifier, knn_classify
from .features import BackboneError, cached_features, features, load_backbone, save_backbone
from .figures import confusion_figure, kernel_figure, query_figure
from .geometry import alignment_uniformity, rotation_test
from .probe import ProbeResult, classification_metrics, confusion_matrix, linear_probe
from .projections import load_projections, load_projector, save_book_projector, save_projections, save_projector
from .protocol import FeatureMap, evaluate_encoder
from .sweep import SweepError, SweepResult, find_checkpoints, sweep_checkpoints

__all__ = [
    "alignment_uniformity", "BackboneError", "cached_features", "classification_metrics", "confusion_figure",
    "confusion_matrix", "evaluate_encoder", "FeatureMap", "features", "find_checkpoints",
    "kernel_figure", "knn_classifier", "knn_classify", "KNNResult", "linear_probe", "load_backbone",
    "load_projections", "ProbeResult", "query_figure", "rotation_test", "save_backbone",
    "save_projections", "sweep_checkpoints", "SweepError", "SweepResult",
    "load_projector", "save_book_projector", "save_projector",
]
