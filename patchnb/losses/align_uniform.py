"""Alignment and uniformity of Wang & Isola 2020."""

from __future__ import annotations

import math

import torch

from ._checks import check_embeddings, check_positive, check_same_shape


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2) -> torch.Tensor:
    r"""Alignment :math:`L_{align} = E_{(x,y)\sim p_{pos}} \|f(x) - f(y)\|_2^\alpha` (Wang & Isola, ICML
    2020, "Understanding Contrastive Representation Learning through Alignment and Uniformity on the
    Hypersphere", sec. 4.1), the mean over the B positive pairs (rows of ``z1`` and ``z2``).

    As in the paper's code the inputs are *not* normalised here: pass l2-normalised embeddings
    (the quantity is defined on the unit hypersphere). ``alpha`` > 0 (2 = squared distances).
    """
    check_embeddings("z1", z1, min_batch=1)
    check_same_shape("z1", z1, "z2", z2)
    check_embeddings("z2", z2, min_batch=1)
    check_positive("alpha", alpha)
    return (z1 - z2).norm(dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2) -> torch.Tensor:
    r"""Uniformity :math:`L_{uniform} = \log \frac{2}{B(B-1)} \sum_{i<j} e^{-t \|z_i - z_j\|_2^2}`
    (Wang & Isola 2020, sec. 4.1): *squared* distances and only distinct pairs ``i < j`` (no
    self-pairs; patchwork used plain distances and kept the self-pairs). Inputs are not normalised
    here (pass l2-normalised embeddings). Computed with a log-sum-exp. Needs B >= 2, ``t`` > 0.
    """
    check_embeddings("z", z)
    check_positive("t", t)
    b = z.shape[0]
    sq = z.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp_min(0)
    iu = torch.triu_indices(b, b, offset=1, device=z.device)
    pair = d2[iu[0], iu[1]]
    return torch.logsumexp(-t * pair, dim=0) - math.log(pair.numel())
