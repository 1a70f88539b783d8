"""Self-supervised methods for :func:`patchnb.train.fit`: SimCLR, MoCo v2 (+ EqCo, MoCHi), HCL and
SupCon (EMP-SSL, DeepCluster, DetCon and the Context Encoder have modules of their own).

Each method is a small dataclass with ``name``, ``step(model, images, labels, splits, generator)``
and ``evaluate(model, data, splits)`` (the loop's method protocol). It plugs an :class:`SSLModel`
(backbone + projection head, plus a momentum encoder and a queue for MoCo), a loss from
:mod:`patchnb.losses` and the shared :class:`~patchnb.ssl.augment.Augment`. ``evaluate``
scores the *backbone* features by weighted kNN accuracy (k = 20, temperature 0.07) against a
fixed subset of the training split as the bank; the projection head is not used for evaluation.

Build the model with ``method.make_model(in_channels, width=...)`` so that it has what the method
needs (MoCo's queue). ``model(x)`` returns backbone features, so :func:`patchnb.train.features`
gives embeddings; ``model(x, project=True)`` the projections.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import (
    alignment,
    eqco_margin,
    hcl,
    mochi_negatives,
    moco_infonce,
    nt_xent,
    supcon,
    uniformity,
)
from ..models.resnet import ResNet18
from ..train import features, unwrap
from .augment import Augment, normalize
from .heads import ProjectionHead
from .knn import knn_accuracy


class SSLModel(nn.Module):
    """Backbone + projection head; with ``queue_size > 0`` also a momentum copy of both (no gradient)
    and a (queue_size, out_dim) queue of l2-normalised keys with its write pointer (MoCo). All of it
    is in the ``state_dict``, so checkpoints and exact resume of :func:`patchnb.train.fit` cover the
    momentum encoder and the queue."""

    def __init__(self, backbone: nn.Module, projector: nn.Module, queue_size: int = 0):
        super().__init__()
        self.backbone, self.projector = backbone, projector
        self.queue_size = int(queue_size)
        if queue_size < 0:
            raise ValueError(f"queue_size must be >= 0, got {queue_size}")
        if queue_size:
            self.key_backbone, self.key_projector = copy.deepcopy(backbone), copy.deepcopy(projector)
            for p in [*self.key_backbone.parameters(), *self.key_projector.parameters()]:
                p.requires_grad_(False)
            self.register_buffer("queue", F.normalize(torch.randn(queue_size, projector.out_dim), dim=1))
            self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, project: bool = False) -> torch.Tensor:
        h = self.backbone(x)
        return self.projector(h) if project else h

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """key = m * key + (1 - m) * online, for every parameter (MoCo eq. 2)."""
        for online, key in ((self.backbone, self.key_backbone), (self.projector, self.key_projector)):
            for p, pk in zip(online.parameters(), key.parameters()):
                pk.mul_(momentum).add_(p.detach(), alpha=1 - momentum)

    @torch.no_grad()
    def keys(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.key_projector(self.key_backbone(x)), dim=1)

    @torch.no_grad()
    def enqueue(self, k: torch.Tensor) -> None:
        """Write ``k`` over the oldest entries of the queue (ring buffer)."""
        idx = (self.queue_ptr + torch.arange(len(k), device=k.device)) % self.queue_size
        self.queue[idx] = k.detach().to(self.queue.dtype)
        self.queue_ptr.fill_(int((self.queue_ptr + len(k)) % self.queue_size))


def make_ssl_model(in_channels: int = 1, width: int = 16, hidden_dim: int = 512, out_dim: int = 128,
               batchnorm: bool = True, queue_size: int = 0) -> SSLModel:
    """Narrow CIFAR-style ResNet-18 (features ``8 * width``) + MLP projection head."""
    backbone = ResNet18(in_channels, width)
    return SSLModel(backbone, ProjectionHead(backbone.out_dim, hidden_dim, out_dim, batchnorm), queue_size)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass
class _Method:
    """What every method shares: the augmentation, the two-view helper and the kNN evaluation."""

    augment: Augment = field(default_factory=Augment)
    knn_k: int = 20
    knn_temperature: float = 0.07
    knn_bank_size: int | None = 5000
    eval_batch_size: int = 1000

    def make_model(self, in_channels: int = 1, width: int = 16, hidden_dim: int = 512, out_dim: int = 128,
                   batchnorm: bool = True) -> SSLModel:
        return make_ssl_model(in_channels, width, hidden_dim, out_dim, batchnorm)

    def views(self, images: torch.Tensor, splits, generator, device, n: int = 2) -> list[torch.Tensor]:
        """``n`` independently augmented, normalised views of a uint8 batch."""
        x = images.to(device).float().div_(255)
        return [normalize(self.augment(x, generator), splits.norm) for _ in range(n)]

    def features(self, model: nn.Module, data, splits) -> torch.Tensor:
        """Backbone features of all of ``data`` (:func:`patchnb.train.features`, batches of
        ``eval_batch_size``), on the CPU."""
        return features(model, data, splits, self.eval_batch_size)[0]

    def evaluate(self, model: nn.Module, data, splits) -> dict:
        """Weighted kNN accuracy (k = ``knn_k``, temperature ``knn_temperature``) of ``data`` against
        a fixed random subset of ``knn_bank_size`` training images as the bank."""
        bank = splits.train
        if self.knn_bank_size and len(bank) > self.knn_bank_size:
            idx = torch.randperm(len(bank), generator=torch.Generator().manual_seed(0))[:self.knn_bank_size]
            bank = bank.subset(idx.sort().values)
        acc = knn_accuracy(self.features(model, bank, splits), bank.labels, self.features(model, data, splits),
                           data.labels, self.knn_k, self.knn_temperature, n_classes=len(splits.classes))
        return {"score": acc}


def _geometry(z1: torch.Tensor, z2: torch.Tensor) -> dict:
    with torch.no_grad():
        a, b = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
        return {"alignment": float(alignment(a, b)), "uniformity": float(uniformity(a))}


@dataclass
class SimCLR(_Method):
    """SimCLR (Chen et al. 2020): two views through backbone + head, NT-Xent (:func:`nt_xent`)."""

    temperature: float = 0.1
    name: str = "simclr"

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent(z1, z2, self.temperature)

    def step(self, model, images, labels, splits, generator):
        x1, x2 = self.views(images, splits, generator, _device(model))
        z1, z2 = model(torch.cat([x1, x2]), project=True).chunk(2)
        return self.loss(z1, z2), _geometry(z1, z2)


@dataclass
class HCL(SimCLR):
    """HCL (Robinson et al. 2021): SimCLR with the hard-negative, debiased loss :func:`hcl`;
    ``beta = tau_plus = 0`` is SimCLR."""

    temperature: float = 0.5
    beta: float = 0.5
    tau_plus: float = 0.1
    name: str = "hcl"

    def loss(self, z1, z2):
        return hcl(z1, z2, self.temperature, self.beta, self.tau_plus)


@dataclass
class SupCon(_Method):
    """Supervised contrastive learning (Khosla et al. 2020): two views per image, labels define the
    positives (:func:`supcon`, L_out)."""

    temperature: float = 0.07
    name: str = "supcon"

    def step(self, model, images, labels, splits, generator):
        dev = _device(model)
        x1, x2 = self.views(images, splits, generator, dev)
        z1, z2 = model(torch.cat([x1, x2]), project=True).chunk(2)
        return supcon(torch.stack([z1, z2], 1), labels.to(dev), self.temperature), _geometry(z1, z2)


@dataclass
class MoCoV2(_Method):
    """MoCo v2 (He et al. 2020; Chen et al. 2020): query encoder trained by :func:`moco_infonce`
    against the keys of a momentum encoder and a queue of earlier keys.

    In each step the momentum encoder is updated first (``momentum``), then the keys are computed
    without gradient and, after the loss, written into the queue. Options:

    * ``margin`` (or ``eqco_alpha``, which sets ``margin = temperature * log(eqco_alpha / K)``): the
      EqCo margin subtracted from the positive logit (Zhu et al. 2021), really applied.
    * ``mochi``: MoCHi hard-negative mixing (Kalantidis et al. 2020) with ``mochi_s`` mixtures of two
      of the ``mochi_n_hard`` hardest queue negatives (coefficient ~ U(0, 1) per mixture) and
      ``mochi_s_prime`` query mixtures (coefficient ~ U(0, 0.5)).
    * ``shuffle_bn``: single-device stand-in for MoCo's shuffled BatchNorm: queries go through the
      network in ``bn_groups`` consecutive groups, keys in groups of a random permutation, so a
      query and its key never share batch statistics (as patchwork does with halves of the batch).
    """

    temperature: float = 0.2
    momentum: float = 0.999
    queue_size: int = 4096
    margin: float = 0.0
    eqco_alpha: float | None = None
    mochi: bool = False
    mochi_n_hard: int = 1024
    mochi_s: int = 1024
    mochi_s_prime: int = 256
    shuffle_bn: bool = True
    bn_groups: int = 2
    name: str = "mocov2"

    def __post_init__(self) -> None:
        if self.queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {self.queue_size}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")

    def make_model(self, in_channels: int = 1, width: int = 16, hidden_dim: int = 512, out_dim: int = 128,
                   batchnorm: bool = True) -> SSLModel:
        return make_ssl_model(in_channels, width, hidden_dim, out_dim, batchnorm, queue_size=self.queue_size)

    def effective_margin(self) -> float:
        if self.eqco_alpha is not None:
            return eqco_margin(self.temperature, self.queue_size, self.eqco_alpha)
        return self.margin

    def _grouped(self, fn, x: torch.Tensor, perm: torch.Tensor | None) -> torch.Tensor:
        if not self.shuffle_bn or self.bn_groups < 2 or len(x) < 2 * self.bn_groups:
            return fn(x)
        if perm is None:
            return torch.cat([fn(c) for c in x.chunk(self.bn_groups)])
        out = torch.cat([fn(c) for c in x[perm].chunk(self.bn_groups)])
        return out[torch.argsort(perm)]

    def step(self, model, images, labels, splits, generator):
        m = unwrap(model)
        if getattr(m, "queue_size", 0) != self.queue_size:
            raise ValueError(f"{self.name} needs a model with a queue of {self.queue_size} keys; build it with "
                             f"MoCoV2(...).make_model(...) (got queue_size={getattr(m, 'queue_size', 0)})")
        dev = _device(model)
        xq, xk = self.views(images, splits, generator, dev)
        m.momentum_update(self.momentum)
        perm = torch.randperm(len(xk), generator=generator).to(dev)
        k = self._grouped(m.keys, xk, perm)
        q = self._grouped(lambda x: model(x, project=True), xq, None)
        queue = m.queue.clone()
        extra = None
        if self.mochi:
            extra = mochi_negatives(q, queue, self.mochi_n_hard, self.mochi_s, self.mochi_s_prime, generator)
        loss = moco_infonce(q, k, queue, self.temperature, self.effective_margin(), extra)
        m.enqueue(k)
        return loss, _geometry(q, k)


METHODS = {"simclr": SimCLR, "mocov2": MoCoV2, "hcl": HCL, "supcon": SupCon}  # the other modules add theirs
