"""EMP-SSL (Tong, Chen, LeCun, Ma 2023, "EMP-SSL: Towards Self-Supervised Learning in One Training Epoch",
arXiv:2304.03977; code tsb0601/EMP-SSL) as a method for :func:`patchnb.train.fit`, and its image representation.

* :class:`EMPEncoder`: the encoder of the EMP-SSL code (``model/model.py``): the ResNet-18 followed by its
  ``pre_feature`` block ``Linear(512, 4096) -> BN -> ReLU``; its output is the layer the code evaluates
  (``evaluate.py`` averages ``z_pre``, this block's output, over 128 patches). The projection
  ``Linear(4096, 4096) -> BN -> ReLU -> Linear(4096, 1024)`` is :class:`~patchnb.ssl.heads.ProjectionHead`.
* :class:`EMPSSL`: ``n_patches`` fixed-size random resized crops per image through encoder + projection,
  l2-normalised projections, loss :func:`patchnb.losses.emp_ssl_loss` (``-invariance_weight * invariance -
  mean total coding rate``). Its ``evaluate`` (the per-epoch validation score of ``fit``) is the weighted kNN
  on whole-image encoder outputs (``eval_patches = 0``, cheap) or, with ``eval_patches >= 2``, on the
  paper's patch-averaged ones.
* :func:`patch_averaged_features`: the image representation of the paper (sec. 3.3, the bag-of-features
  of intra-instance VICReg): the encoder outputs of ``n_patches`` random crops of each image, averaged.
  Seeded, so the same encoder, data and seed give the same features.

Settings: ``patchnb/ssl/configs/emp_ssl.yaml`` (checked against the code there).

The learning-rate schedule of a "one-epoch" result, against the code: ``main.py`` anneals
``CosineAnnealingLR(T_max = (50000 // bs) * --epoch, eta_min = 0)`` per step and saves the encoder after
every epoch (``save_models/0.pt``, ``1.pt``, ...), and the README's one-epoch command runs ``--epoch 2``, so
the reported one-epoch encoder is (the README does not say which file ``evaluate.py --model_path`` was
given; ``0.pt`` is the one trained for one epoch) the first epoch of a two-epoch cosine: the LR falls from
0.3 to 0.15, not to 0. (The kachayev/ssl-in-one-epoch port also defaults to ``--n_epochs 2``, steps its
cosine once per epoch over ``(len(loader) // bs) * n_epochs`` epochs, an LR that stays near 0.3, and probes
the last, second-epoch encoder.) **Deviation**, named: :func:`patchnb.train.fit` sizes the cosine to the
epochs it trains (``TrainConfig.epochs``), so a run of ``epochs=1`` anneals to 0 within its one epoch; the
code's one-epoch encoder is the epoch-1 checkpoint of an ``epochs=2`` run (per step the same LR as the
code's, ``tests/test_ssl_emp.py``), which ``TrainConfig`` cannot yet train without training the second
epoch (it has no schedule length apart from ``epochs``). The per-epoch encoder
snapshots live in :mod:`patchnb.ssl.checkpoints`; the von Mises-Fisher view of the embeddings in
:mod:`patchnb.metrics.sphere`; the chapter's recipe in :mod:`patchnb.experiments.emp_ssl`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import emp_ssl_loss
from ..models.resnet import ResNet18
from ..train import unwrap
from .augment import Augment, normalize

# the snapshots moved to .checkpoints; still importable from here for callers of patchnb.ssl.emp
from .checkpoints import CHECKPOINT_FOLDER, Checkpointing, checkpoint_meta, pretrain_with_checkpoints  # noqa: F401
from .heads import ProjectionHead
from .methods import METHODS, SSLModel, _device, _Method

#: EMP-SSL's fixed crop: RandomResizedCrop(32, scale=(0.25, 0.25), ratio=(1, 1)) in the code's dataset/aug.py
PATCH_SCALE = (0.25, 0.25)


def check_emp(n_patches: int, eps: float, name: str = "n_patches") -> None:
    """EMP-SSL needs at least two patches per image (the invariance term compares patches with their
    mean) and a positive coding-rate precision ``eps``."""
    if int(n_patches) != n_patches or n_patches < 2:
        raise ValueError(f"{name} must be an integer >= 2 (EMP-SSL averages over patches), got {n_patches}")
    if not eps > 0 or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite value > 0 (the coding-rate precision; the paper uses 0.2), got {eps}")


class EMPEncoder(ResNet18):
    """The EMP-SSL code's encoder up to the layer it evaluates (``model/model.py``: ``backbone`` then
    ``pre_feature = Sequential(Linear(512, hidden_dim), BatchNorm1d(hidden_dim), ReLU())``): the CIFAR-style
    :class:`~patchnb.models.ResNet18` of ``width`` (features ``8 * width``, ``feature_dim``) followed by
    ``pre_feature``; ``forward`` returns the (B, ``hidden_dim``) output (``out_dim``), 4096-d in the paper.

    A subclass of ResNet18, so its ``state_dict`` holds the ResNet's own keys plus ``pre_feature.*``: a saved
    encoder (:func:`patchnb.ssl.checkpoints.save_backbone`) also loads into a plain ResNet18 with
    :func:`patchnb.eval.load_backbone` (the extra block is ignored), e.g. to score the ResNet's features."""

    def __init__(self, in_channels: int = 1, width: int = 16, hidden_dim: int = 4096):
        super().__init__(in_channels, width)
        if int(hidden_dim) != hidden_dim or hidden_dim < 1:
            raise ValueError(f"hidden_dim must be an integer >= 1 (4096 in EMP-SSL), got {hidden_dim}")
        self.feature_dim = self.out_dim
        self.pre_feature = nn.Sequential(nn.Linear(self.feature_dim, hidden_dim), nn.BatchNorm1d(hidden_dim),
                                         nn.ReLU(inplace=True))
        self.out_dim = int(hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_feature(super().forward(x))


def make_emp_model(in_channels: int = 1, width: int = 16, hidden_dim: int = 4096, out_dim: int = 1024) -> SSLModel:
    """EMP-SSL's network (``model/model.py``'s ``encoder``): :class:`EMPEncoder` as the ``backbone`` and the
    projection ``Linear(hidden, hidden) -> BN -> ReLU -> Linear(hidden, out_dim)`` (a
    :class:`~patchnb.ssl.heads.ProjectionHead`; its first Linear has no bias, which the BN after it cancels
    anyway). ``model(x)`` is the evaluated layer, ``model(x, project=True)`` the projection."""
    if int(out_dim) != out_dim or out_dim < 1:
        raise ValueError(f"out_dim must be an integer >= 1 (1024 in EMP-SSL), got {out_dim}")
    encoder = EMPEncoder(in_channels, width, hidden_dim)
    return SSLModel(encoder, ProjectionHead(encoder.out_dim, encoder.out_dim, int(out_dim), batchnorm=True))


@torch.no_grad()
def patch_averaged_features(encoder: nn.Module, data, splits, n_patches: int = 20, seed: int = 0,
                            augment: Augment | None = None, scale: tuple[float, float] = PATCH_SCALE,
                            batch_size: int = 128, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""EMP-SSL's image embedding (Tong et al. 2023, sec. 3.3): :math:`\bar h(x) = \frac1n \sum_{i=1}^n f(c_i(x))`
    over ``n_patches`` random resized crops :math:`c_i` (area fraction in ``scale``, default the code's fixed
    0.25, upsampled to the input size, then ``augment``'s flip and colour operations; default
    :meth:`Augment.emp_ssl`, the training augmentation, as the code's ``evaluate.py`` uses it) through
    ``encoder`` (eval mode, no gradient; EMP-SSL's is an :class:`EMPEncoder`, whose output is the layer the
    code evaluates). Returns ``(features (N, D) float32 on the CPU, labels)``.

    The crops are drawn from one ``torch.Generator`` seeded with ``seed`` batch after batch, so the result
    is reproducible for a given ``batch_size``.
    """
    if int(n_patches) != n_patches or n_patches < 2:
        raise ValueError(f"n_patches must be an integer >= 2 (use the whole image for one view), got {n_patches}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    augment = augment or Augment.emp_ssl()
    dev = torch.device(device) if device is not None else next(encoder.parameters()).device
    g = torch.Generator().manual_seed(seed)
    was = encoder.training
    encoder.eval()
    out = []
    try:
        for i in range(0, len(data), batch_size):
            x = data.images[i:i + batch_size].to(dev).float().div_(255)
            p = augment.patches(x, n_patches, g, scale)  # (n, B, C, H, W)
            n, b = p.shape[:2]
            h = encoder(normalize(p.flatten(0, 1), splits.norm)).float().flatten(1)
            out.append(h.view(n, b, -1).mean(0).cpu())
    finally:
        encoder.train(was)
    return torch.cat(out), data.labels.clone()


@dataclass
class EMPSSL(_Method):
    """EMP-SSL: ``n_patches`` random resized crops per image (area fraction in ``patch_scale``, the code's fixed
    0.25 by default; upsampled, then :meth:`Augment.emp_ssl`'s flip and colour operations), all through the
    network of :meth:`make_model` (:class:`EMPEncoder` + projection of ``hidden_dim`` / ``out_dim``),
    l2-normalised projections, loss :func:`~patchnb.losses.emp_ssl_loss` with coding-rate precision ``eps`` and
    ``invariance_weight``. Metrics: the invariance and the mean coding rate.

    ``evaluate`` scores weighted kNN on whole-image encoder outputs (the ``pre_feature`` layer, which the code
    evaluates) when ``eval_patches = 0`` (cheap; for per-epoch model selection inside
    :func:`patchnb.train.fit`), else on patch-averaged ones (``eval_patches`` crops per image, seeded with
    ``eval_seed``), as the paper evaluates. Checks ``n_patches >= 2``, ``eps > 0`` and ``eval_patches`` in
    {0} or >= 2."""

    augment: Augment = field(default_factory=Augment.emp_ssl)
    n_patches: int = 20
    eps: float = 0.2
    invariance_weight: float = 200.0
    patch_scale: tuple[float, float] = PATCH_SCALE
    hidden_dim: int = 4096
    out_dim: int = 1024
    eval_patches: int = 0
    eval_seed: int = 0
    name: str = "emp_ssl"

    def __post_init__(self) -> None:
        check_emp(self.n_patches, self.eps)
        if self.eval_patches != 0:
            check_emp(self.eval_patches, self.eps, "eval_patches")
        self.patch_scale = tuple(self.patch_scale)
        for name in ("hidden_dim", "out_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise ValueError(f"{name} must be an integer >= 1 (EMP-SSL: hidden_dim 4096, out_dim 1024), got {v}")

    def make_model(self, in_channels: int = 1, width: int = 16, hidden_dim: int | None = None,
                   out_dim: int | None = None, batchnorm: bool = True) -> SSLModel:
        """:func:`make_emp_model` with ``hidden_dim`` / ``out_dim`` (None: the method's). EMP-SSL's projection
        always has its BN (``batchnorm=False`` is refused)."""
        if not batchnorm:
            raise ValueError("batchnorm=False: EMP-SSL's pre_feature and projection blocks have BatchNorm")
        return make_emp_model(in_channels, width, hidden_dim or self.hidden_dim, out_dim or self.out_dim)

    def step(self, model, images, labels, splits, generator):
        dev = _device(model)
        x = images.to(dev).float().div_(255)
        p = self.augment.patches(x, self.n_patches, generator, self.patch_scale)  # (n, B, C, H, W)
        n, b = p.shape[:2]
        z = F.normalize(model(normalize(p.flatten(0, 1), splits.norm), project=True), dim=1).view(n, b, -1)
        loss = emp_ssl_loss(z, self.eps, self.invariance_weight)
        with torch.no_grad():
            inv = float(F.cosine_similarity(z, z.mean(0, keepdim=True).expand_as(z), dim=2).mean())
        return loss, {"invariance": inv, "tcr": float(-loss.detach() - self.invariance_weight * inv)}

    def features(self, model: nn.Module, data, splits) -> torch.Tensor:
        if not self.eval_patches:
            return super().features(model, data, splits)
        backbone = getattr(unwrap(model), "backbone", unwrap(model))  # the EMPEncoder: its output is evaluated
        bs = max(1, self.eval_batch_size // self.eval_patches)
        return patch_averaged_features(backbone, data, splits, self.eval_patches, self.eval_seed, self.augment,
                                       self.patch_scale, batch_size=bs)[0]


METHODS["emp_ssl"] = EMPSSL
