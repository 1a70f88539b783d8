"""SimCLR's normalised temperature-scaled cross-entropy (NT-Xent)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_embeddings, check_positive, check_same_shape


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    r"""NT-Xent loss of SimCLR (Chen et al., ICML 2020, "A Simple Framework for Contrastive Learning of
    Visual Representations", eq. 1).

    The 2B embeddings of the two views are l2-normalised (inside), ``s_ij = z_i . z_j``, and for
    every anchor ``i`` with positive ``j(i)`` (the other view of the same image)

    .. math:: \ell_i = -\log \frac{\exp(s_{i,j(i)}/\tau)}{\sum_{k \ne i} \exp(s_{ik}/\tau)},
              \qquad L = \frac{1}{2B} \sum_{i=1}^{2B} \ell_i

    (the denominator runs over the positive and the 2B - 2 negatives). Returns the mean over all
    2B anchors.

    Args:
        z1, z2: (B, D) projections of the two views; row ``b`` of each comes from image ``b``.
        temperature: :math:`\tau > 0`.
    """
    check_embeddings("z1", z1)
    check_same_shape("z1", z1, "z2", z2)
    check_embeddings("z2", z2)
    check_positive("temperature", temperature)
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(logits, targets)
