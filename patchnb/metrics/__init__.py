"""Metrics of representations: pure functions of feature tensors (no models, no data sets).

The losses/metrics layer: below the methods of :mod:`patchnb.ssl` (whose per-epoch validation score
is the weighted kNN accuracy) and the evaluation protocols of :mod:`patchnb.eval` (which run encoders
over data sets and then call these).

* :func:`knn_classify`: weighted kNN of Wu et al. 2018 (:mod:`patchnb.metrics.knn`);
* :func:`vmf_concentration`, :func:`circle_projection`: the von Mises-Fisher view of l2-normalised
  embeddings (:mod:`patchnb.metrics.sphere`).
"""

from .knn import KNNResult, knn_classifier, knn_classify
from .sphere import circle_projection, vmf_concentration

__all__ = ["KNNResult", "circle_projection", "knn_classifier", "knn_classify", "vmf_concentration"]
