"""EMP-SSL (Tong, Chen, LeCun, Ma 2023, "EMP-SSL: Towards Self-Supervised Learning in One Training Epoch",
arXiv:2304.03977) as a method for :func:`patchnb.train.fit`, and its image representation.

* :class:`EMPSSL`: ``n_patches`` random resized crops per image through backbone + head, l2-normalised
  projections, loss :func:`patchnb.losses.emp_ssl_loss` (``-invariance_weight * invariance - mean total
  coding rate``). Its ``evaluate`` (the per-epoch validation score of ``fit``) is the weighted kNN on
  whole-image backbone features (``eval_patches = 0``, cheap) or, with ``eval_patches >= 2``, on the
  paper's patch-averaged features.
* :func:`patch_averaged_features`: the image representation of the paper (sec. 3.3): the backbone
  features of ``n_patches`` random resized crops of each image, averaged. Seeded, so the same encoder,
  data and seed give the same features.

Settings: ``patchnb/ssl/configs/emp_ssl.yaml``. The per-epoch backbone snapshots live in
:mod:`patchnb.ssl.checkpoints`; the von Mises-Fisher view of the embeddings in :mod:`patchnb.metrics.sphere`;
the chapter's recipe in :mod:`patchnb.experiments.emp_ssl`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import emp_ssl_loss
from ..train import unwrap
from .augment import Augment, normalize

# the snapshots moved to .checkpoints; still importable from here for callers of patchnb.ssl.emp
from .checkpoints import CHECKPOINT_FOLDER, Checkpointing, checkpoint_meta, pretrain_with_checkpoints  # noqa: F401
from .methods import METHODS, _device, _Method


def check_emp(n_patches: int, eps: float, name: str = "n_patches") -> None:
    """EMP-SSL needs at least two patches per image (the invariance term compares patches with their
    mean) and a positive coding-rate precision ``eps``."""
    if int(n_patches) != n_patches or n_patches < 2:
        raise ValueError(f"{name} must be an integer >= 2 (EMP-SSL averages over patches), got {n_patches}")
    if not eps > 0 or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite value > 0 (the coding-rate precision; the paper uses 0.2), got {eps}")


@torch.no_grad()
def patch_averaged_features(encoder: nn.Module, data, splits, n_patches: int = 20, seed: int = 0,
                            augment: Augment | None = None, scale: tuple[float, float] = (0.25, 1.0),
                            batch_size: int = 128, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""EMP-SSL's image embedding (Tong et al. 2023, sec. 3.3): :math:`\bar h(x) = \frac1n \sum_{i=1}^n f(c_i(x))`
    over ``n_patches`` random resized crops :math:`c_i` (area fraction in ``scale``, upsampled to the input
    size, then ``augment``'s flip and colour operations; default :meth:`Augment.emp_ssl`) through the
    backbone ``encoder`` (eval mode, no gradient). Returns ``(features (N, D) float32 on the CPU, labels)``.

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
    """EMP-SSL: ``n_patches`` random resized crops per image (area fraction in ``patch_scale``, upsampled,
    then :meth:`Augment.emp_ssl`'s flip and colour operations), all through backbone + head, l2-normalised
    projections, loss :func:`~patchnb.losses.emp_ssl_loss` with coding-rate precision ``eps`` and
    ``invariance_weight``. Metrics: the invariance and the mean coding rate.

    ``evaluate`` scores weighted kNN on whole-image backbone features when ``eval_patches = 0`` (cheap;
    for per-epoch model selection inside :func:`patchnb.train.fit`), else on patch-averaged features
    (``eval_patches`` crops per image, seeded with ``eval_seed``), as the paper evaluates. Checks
    ``n_patches >= 2``, ``eps > 0`` and ``eval_patches`` in {0} or >= 2."""

    augment: Augment = field(default_factory=Augment.emp_ssl)
    n_patches: int = 20
    eps: float = 0.2
    invariance_weight: float = 200.0
    patch_scale: tuple[float, float] = (0.25, 1.0)
    eval_patches: int = 0
    eval_seed: int = 0
    name: str = "emp_ssl"

    def __post_init__(self) -> None:
        check_emp(self.n_patches, self.eps)
        if self.eval_patches != 0:
            check_emp(self.eval_patches, self.eps, "eval_patches")
        self.patch_scale = tuple(self.patch_scale)

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
        backbone = getattr(unwrap(model), "backbone", unwrap(model))
        bs = max(1, self.eval_batch_size // self.eval_patches)
        return patch_averaged_features(backbone, data, splits, self.eval_patches, self.eval_seed, self.augment,
                                       self.patch_scale, batch_size=bs)[0]


METHODS["emp_ssl"] = EMPSSL
