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
of each image's bytes (identical images share features, hence pseudo-labels). The clustering state
(steps taken, the pseudo-label table, the class weights) lives in the model, as buffers of a
:class:`PseudoLabels` module built by :meth:`DeepCluster.make_model`, so it is in the ``state_dict``:
checkpoints carry it and a resumed run continues exactly as an uninterrupted one (same re-clustering
steps and seeds, same pseudo-labels). Unlike the paper, the optimiser state of the re-initialised
classifier is kept (the loop owns the optimiser).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..cluster import kmeans, nearest
from ..train import unwrap
from .augment import Augment, normalize
from .methods import METHODS, SSLModel, _device, _Method, make_ssl_model


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


class PseudoLabels(nn.Module):
    """DeepCluster's clustering state as buffers (so it is part of the model's ``state_dict``):
    ``steps`` taken, the pseudo-label table (``fingerprints``: sorted :func:`_fingerprint` of the
    training images, ``labels``: each one's cluster), the cross-entropy ``weights`` (inverse cluster
    size), and the last clustering's number of re-seeded empty clusters (``reassigned``) and k-means
    ``inertia``. The table's length is the training split's, so loading a state resizes it."""

    def __init__(self, n_clusters: int):
        super().__init__()
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("fingerprints", torch.zeros(0, dtype=torch.long))
        self.register_buffer("labels", torch.zeros(0, dtype=torch.long))
        self.register_buffer("weights", torch.ones(n_clusters))
        self.register_buffer("reassigned", torch.zeros((), dtype=torch.long))
        self.register_buffer("inertia", torch.full((), float("nan"), dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("fingerprints", "labels"):  # variable length: take the stored table's size
            stored = state_dict.get(prefix + name)
            if stored is not None:
                old = getattr(self, name)
                setattr(self, name, torch.empty(stored.shape, dtype=old.dtype, device=old.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def empty(self) -> bool:
        """No clustering yet."""
        return self.fingerprints.numel() == 0

    @torch.no_grad()
    def set_table(self, fingerprints: torch.Tensor, labels: torch.Tensor) -> None:
        """Store ``fingerprints -> labels`` (identical images keep the label of their last occurrence)."""
        order = torch.argsort(fingerprints, stable=True)
        fp, lab = fingerprints[order], labels[order]
        uniq, counts = torch.unique_consecutive(fp, return_counts=True)
        last = torch.cumsum(counts, 0) - 1
        dev = self.fingerprints.device
        self.fingerprints, self.labels = uniq.to(dev), lab[last].long().to(dev)

    def lookup(self, fingerprints: torch.Tensor) -> torch.Tensor:
        """The pseudo-labels of images with these fingerprints (each must be in the table)."""
        fp = fingerprints.to(self.fingerprints.device)
        idx = torch.searchsorted(self.fingerprints, fp).clamp_max(len(self.fingerprints) - 1)
        if not bool((self.fingerprints[idx] == fp).all()):
            raise ValueError("DeepCluster got an image that is not in the training split it clustered; it trains "
                             "on splits.train only")
        return self.labels[idx]


@dataclass
class DeepCluster(_Method):
    """DeepCluster: k-means pseudo-labels from the current features, refreshed every epoch. Build the
    model with :meth:`make_model` (it carries the :class:`PseudoLabels` state)."""

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

    def make_model(self, in_channels: int = 1, width: int = 16, hidden_dim: int = 512, out_dim: int | None = None,
                   batchnorm: bool = True) -> SSLModel:
        model = make_ssl_model(in_channels, width, hidden_dim, self.n_clusters, batchnorm)
        model.pseudo_labels = PseudoLabels(self.n_clusters)
        return model

    def state(self, model) -> PseudoLabels:
        """The clustering state carried by ``model`` (raises when it was not built by :meth:`make_model`)."""
        st = getattr(unwrap(model), "pseudo_labels", None)
        if not isinstance(st, PseudoLabels) or len(st.weights) != self.n_clusters:
            raise ValueError(f"{self.name} needs a model built by DeepCluster(n_clusters={self.n_clusters})"
                             f".make_model(...), which carries the pseudo-label state")
        return st

    def recluster(self, model, splits) -> None:
        m = unwrap(model)
        st = self.state(m)
        steps = int(st.steps)
        feats = self.features(m, splits.train, splits)
        feats = feats - feats.mean(0)
        u, s, v = torch.linalg.svd(feats, full_matrices=False)
        d = min(self.pca_dim, v.shape[0])
        x = F.normalize(feats @ v[:d].T / (s[:d] / len(feats) ** 0.5 + 1e-5), dim=1)
        res = kmeans(x, self.n_clusters, self.kmeans_iter, seed=self.seed + steps)
        g = torch.Generator().manual_seed(self.seed + steps)
        before = int((torch.bincount(res.assignments.long(), minlength=self.n_clusters) == 0).sum())
        _, labels = reassign_empty(x, res.centroids, res.assignments.long(), g)
        st.set_table(_fingerprint(splits.train.images), labels)
        counts = torch.bincount(labels, minlength=self.n_clusters).float()
        st.weights.copy_(len(labels) / (self.n_clusters * counts.clamp_min(1)))
        st.reassigned.fill_(before)
        st.inertia.fill_(float(res.inertia))
        head = m.projector.net[-1]
        head.reset_parameters()

    def step(self, model, images, labels, splits, generator):
        st = self.state(model)
        every = self.recluster_every or max(len(splits.train) // len(images), 1)
        steps = int(st.steps)
        if st.empty or (steps > 0 and steps % every == 0):
            self.recluster(model, splits)
        st.steps += 1
        dev = _device(model)
        pseudo = st.lookup(_fingerprint(images)).to(dev)
        x = normalize(self.augment(images.to(dev).float().div_(255), generator), splits.norm)
        logits = model(x, project=True)
        loss = F.cross_entropy(logits, pseudo, weight=st.weights)
        return loss, {"pseudo_acc": float((logits.argmax(1) == pseudo).float().mean()),
                      "empty_clusters": float(st.reassigned)}


METHODS["deepcluster"] = DeepCluster
