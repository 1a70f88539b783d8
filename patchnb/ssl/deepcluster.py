"""DeepCluster (Caron et al., ECCV 2018, "Deep Clustering for Unsupervised Learning of Visual
Features") as a method for :func:`patchnb.train.fit`.

Once per epoch (every ``recluster_every`` steps; by default the number of full batches in the
training split) the backbone features of the whole training split are PCA-whitened to ``pca_dim``,
l2-normalised and clustered by k-means (:func:`patchnb.cluster.kmeans`, faiss when available) into
``n_clusters`` pseudo-classes; empty clusters are re-seeded as in the paper (sec. 3.3: a random
non-empty cluster's centroid plus a small perturbation, its points split between the two); the
classifier (the last layer of the projection head) is re-initialised; then the network is trained
by cross-entropy on the pseudo-labels, weighted by inverse cluster size (the expectation of the
paper's uniform sampling over clusters, since the loop owns the batching).

The loop passes pixels, not indices, so a batch's pseudo-labels are found by an exact fingerprint
of each image's bytes (identical images share features, hence pseudo-labels). The method's
clustering state is not part of the checkpoint: a resumed run re-clusters at its first step, which
is what happens at an epoch start anyway. Unlike the paper, the optimiser state of the
re-initialised classifier is kept (the loop owns the optimiser).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..cluster import kmeans, nearest
from .augment import Augment, normalize
from .methods import METHODS, SSLModel, _device, _Method, _unwrap, make_model


def _fingerprint(images: torch.Tensor) -> torch.Tensor:
    """An int64 hash per uint8 image (random odd multipliers, wrapping arithmetic)."""
    flat = images.reshape(len(images), -1).long()
    w = torch.randint(1, 2**31 - 1, (flat.shape[1],), generator=torch.Generator().manual_seed(7)) * 2 + 1
    return (flat * w).sum(1) + flat[:, :64].sum(1) * 1_000_003


def reassign_empty(x: torch.Tensor, centroids: torch.Tensor, assignments: torch.Tensor,
                   generator: torch.Generator | None = None, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepCluster's empty-cluster fix: each empty cluster takes a random non-empty cluster's centroid
    with a small random perturbation (+eps for one copy, -eps for the other) and the points of that
    cluster are reassigned to the nearer of the two. Returns (centroids, assignments)."""
    c, a = centroids.clone(), assignments.clone()
    k = len(c)
    for empty in range(k):
        counts = torch.bincount(a, minlength=k)
        if counts[empty] > 0:
            continue
        candidates = torch.nonzero(counts > 1).flatten()
        if len(candidates) == 0:
            break
        src = int(candidates[torch.randint(len(candidates), (1,), generator=generator)])
        noise = eps * torch.randn(c.shape[1], generator=generator)
        c[empty], c[src] = c[src] + noise, c[src] - noise
        members = torch.nonzero(a == src).flatten()
        idx, _ = nearest(x[members], c[[src, empty]])
        a[members] = torch.where(idx == 1, empty, src)
        if (a[members] == empty).all() or (a[members] == src).all():  # degenerate split: halve it
            a[members[: len(members) // 2]] = empty
            a[members[len(members) // 2:]] = src
    return c, a


@dataclass
class DeepCluster(_Method):
    """DeepCluster: k-means pseudo-labels from the current features, refreshed every epoch."""

    augment: Augment = field(default_factory=lambda: Augment(jitter_prob=0.0, grayscale_prob=0.0, blur_prob=0.0))
    n_clusters: int = 100
    pca_dim: int = 64
    kmeans_iter: int = 20
    recluster_every: int | None = None
    seed: int = 0
    name: str = "deepcluster"

    def __post_init__(self) -> None:
        if self.n_clusters < 2:
            raise ValueError(f"n_clusters must be >= 2, got {self.n_clusters}")
        self._steps, self._table, self._weights, self.last_inertia = 0, None, None, float("nan")
        self.reassigned = 0

    def __repr__(self) -> str:  # the run fingerprint must not depend on the clustering state
        return (f"DeepCluster(augment={self.augment!r}, n_clusters={self.n_clusters}, pca_dim={self.pca_dim}, "
                f"kmeans_iter={self.kmeans_iter}, recluster_every={self.recluster_every}, seed={self.seed})")

    def make_model(self, in_channels: int = 1, width: int = 16, hidden_dim: int = 512, out_dim: int | None = None,
                   batchnorm: bool = True) -> SSLModel:
        return make_model(in_channels, width, hidden_dim, self.n_clusters, batchnorm)

    def recluster(self, model, splits) -> None:
        m = _unwrap(model)
        feats = self.features(m, splits.train, splits)
        feats = feats - feats.mean(0)
        u, s, v = torch.linalg.svd(feats, full_matrices=False)
        d = min(self.pca_dim, v.shape[0])
        x = F.normalize(feats @ v[:d].T / (s[:d] / len(feats) ** 0.5 + 1e-5), dim=1)
        res = kmeans(x, self.n_clusters, self.kmeans_iter, seed=self.seed + self._steps)
        g = torch.Generator().manual_seed(self.seed + self._steps)
        before = int((torch.bincount(res.assignments.long(), minlength=self.n_clusters) == 0).sum())
        _, labels = reassign_empty(x, res.centroids, res.assignments.long(), g)
        self.reassigned, self.last_inertia = before, res.inertia
        self._table = dict(zip(_fingerprint(splits.train.images).tolist(), labels.tolist()))
        counts = torch.bincount(labels, minlength=self.n_clusters).float()
        self._weights = (len(labels) / (self.n_clusters * counts.clamp_min(1))).to(_device(m))
        head = m.projector.net[-1]
        head.reset_parameters()

    def step(self, model, images, labels, splits, generator):
        every = self.recluster_every or max(len(splits.train) // len(images), 1)
        if self._table is None or (self._steps > 0 and self._steps % every == 0):
            self.recluster(model, splits)
        self._steps += 1
        dev = _device(model)
        pseudo = torch.tensor([self._table[h] for h in _fingerprint(images).tolist()], device=dev)
        x = normalize(self.augment(images.to(dev).float().div_(255), generator), splits.norm)
        logits = model(x, project=True)
        loss = F.cross_entropy(logits, pseudo, weight=self._weights)
        return loss, {"pseudo_acc": float((logits.argmax(1) == pseudo).float().mean()),
                      "empty_clusters": float(self.reassigned)}


METHODS["deepcluster"] = DeepCluster
