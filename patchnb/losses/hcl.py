"""Hard-negative contrastive loss (HCL) of Robinson et al. 2021."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_embeddings, check_positive, check_same_shape


def hcl(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.07, beta: float = 0.5,
        tau_plus: float = 0.1) -> torch.Tensor:
    r"""Hard-negative contrastive loss (Robinson, Chuang, Sra, Jegelka, ICLR 2021, "Contrastive Learning
    with Hard Negative Samples", the hard-negative objective of sec. 3 with the debiased estimator of
    Chuang et al. 2020), computed exactly as their reference code (``joshr17/HCL``, estimator="hard").

    The 2B embeddings are l2-normalised inside. For anchor ``i`` with positive similarity ``s_i^+``
    and its N = 2B - 2 negatives ``s_ij`` (itself and its positive excluded):

    .. math::
        \mathrm{pos}_i = e^{s_i^+/t}, \quad w_{ij} = e^{\beta s_{ij}/t}, \quad
        \mathrm{reweight}_i = \frac{\sum_j w_{ij} e^{s_{ij}/t}}{\frac{1}{N}\sum_j w_{ij}}, \\
        N_g = \max\Big(\frac{-\tau^+ N \mathrm{pos}_i + \mathrm{reweight}_i}{1-\tau^+},\; N e^{-1/t}\Big),
        \qquad L = \frac{1}{2B}\sum_i -\log\frac{\mathrm{pos}_i}{\mathrm{pos}_i + N_g}

    The importance weights are :math:`\exp(\beta\, s/t)` (the reference code's ``(beta *
    neg.log()).exp()`` with ``neg = exp(s/t)``); the clamp at :math:`N e^{-1/t}` is the reference
    code's lower bound (the smallest value the true negative term can take). With ``beta = 0`` and
    ``tau_plus = 0`` this is exactly :func:`nt_xent`. Computed with every exponential scaled by
    :math:`e^{-1/t}` (ratios unchanged) so it cannot overflow at small temperatures.

    Args:
        z1, z2: (B, D) two views. temperature: t > 0. beta: concentration >= 0.
        tau_plus: class prior of false negatives, in [0, 1).
    """
    check_embeddings("z1", z1)
    check_same_shape("z1", z1, "z2", z2)
    check_embeddings("z2", z2)
    check_positive("temperature", temperature)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if not 0 <= tau_plus < 1:
        raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}")
    b = z1.shape[0]
    n = 2 * b - 2
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T
    idx = torch.arange(2 * b, device=z.device)
    keep = torch.ones(2 * b, 2 * b, dtype=torch.bool, device=z.device)
    keep[idx, idx] = False
    keep[idx, (idx + b) % (2 * b)] = False
    neg_sim = sim[keep].view(2 * b, n)
    pos_sim = sim[idx, (idx + b) % (2 * b)]
    # everything scaled by e^{-1/t}: pos' = e^{(s+ - 1)/t} <= 1, neg' likewise
    pos = torch.exp((pos_sim - 1) / temperature)
    neg = torch.exp((neg_sim - 1) / temperature)
    imp = torch.exp(beta * (neg_sim - 1) / temperature)  # any common scale cancels in the ratio
    reweight = (imp * neg).sum(1) / imp.mean(1)
    ng = (-tau_plus * n * pos + reweight) / (1 - tau_plus)
    ng = ng.clamp(min=n * math.exp(-2 / temperature))  # N e^{-1/t}, scaled by e^{-1/t}
    # -log(pos / (pos + ng)) with log pos = (s+ - 1)/t
    return (torch.log(pos + ng) - (pos_sim - 1) / temperature).mean()
