"""EMP-SSL's image representation and its evaluating method (Tong, Chen, LeCun, Ma 2023, "EMP-SSL:
Towards Self-Supervised Learning in One Training Epoch").

* :func:`patch_averaged_features`: the image representation of EMP-SSL (sec. 3.3): the backbone
  features of ``n_patches`` random resized crops of each image, averaged. Seeded, so the same
  encoder, data and seed give the same features.
* :class:`EMPSSLAveraged`: :class:`~patchnb.ssl.methods.EMPSSL` whose ``evaluate`` scores those
  patch-averaged features (``eval_patches``; 0 keeps the cheap whole-image kNN for per-epoch model
  selection), with its parameters checked (``n_patches >= 2``, ``eps > 0``).

The per-epoch backbone snapshots live in :mod:`patchnb.ssl.checkpoints`; the von Mises-Fisher view of
the embeddings in :mod:`patchnb.metrics.sphere`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..train import unwrap
from .augment import Augment, normalize

# the snapshots moved to .checkpoints; still importable from here for callers of patchnb.ssl.emp
from .checkpoints import CHECKPOINT_FOLDER, Checkpointing, checkpoint_meta, pretrain_with_checkpoints  # noqa: F401
from .methods import EMPSSL


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
class EMPSSLAveraged(EMPSSL):
    """:class:`~patchnb.ssl.methods.EMPSSL` evaluated as the paper does: weighted kNN on *patch-averaged*
    backbone features (``eval_patches`` crops per image, seeded with ``eval_seed``). ``eval_patches = 0``
    scores whole images instead (cheap; for per-epoch model selection inside :func:`patchnb.train.fit`).
    Checks ``n_patches >= 2``, ``eps > 0`` and ``eval_patches`` in {0} or >= 2."""

    eval_patches: int = 0
    eval_seed: int = 0
    name: str = "emp_ssl"

    def __post_init__(self) -> None:
        check_emp(self.n_patches, self.eps)
        if self.eval_patches != 0:
            check_emp(self.eval_patches, self.eps, "eval_patches")

    def features(self, model: nn.Module, data, splits) -> torch.Tensor:
        if not self.eval_patches:
            return super().features(model, data, splits)
        backbone = getattr(unwrap(model), "backbone", unwrap(model))
        bs = max(1, self.eval_batch_size // self.eval_patches)
        return patch_averaged_features(backbone, data, splits, self.eval_patches, self.eval_seed, self.augment,
                                       self.patch_scale, batch_size=bs)[0]
