"""MoCo v2 InfoNCE against a queue of negatives, with the EqCo margin and MoCHi hard negatives."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_embeddings, check_finite, check_positive, check_same_shape


def moco_infonce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.1,
                 margin: float = 0.0, extra_negatives: torch.Tensor | None = None) -> torch.Tensor:
    r"""InfoNCE of MoCo (He et al., CVPR 2020, eq. 1; MoCo v2: Chen et al. 2020) with the EqCo margin.

    ``q``, ``k`` and the queue rows are l2-normalised inside. With positive logit ``q.k`` and negative
    logits ``q.n_j`` over the K queue entries,

    .. math:: L = -\frac{1}{B}\sum_b \log \frac{\exp((q_b.k_b - m)/\tau)}
                  {\exp((q_b.k_b - m)/\tau) + \sum_{j=1}^{K} \exp(q_b.n_j/\tau)}

    i.e. the margin ``m`` is subtracted from the positive similarity *before* dividing by the
    temperature. This is the margin form of EqCo (Zhu et al. 2021, "EqCo: Equivalent Rules for
    Self-supervised Contrastive Learning", ICCV 2021): EqCo rescales the negative term by
    :math:`\alpha/K` so that the loss with K negatives behaves like the loss with ``alpha``
    negatives; multiplying numerator and denominator by :math:`K/\alpha` shows that this equals the
    formula above with :math:`m = \tau \log(\alpha / K)` (see :func:`eqco_margin`). ``m = 0`` is
    plain MoCo; ``m > 0`` makes the positive harder (a large-margin contrastive loss).
    (patchwork computes this margin but never uses it; here it is applied.)

    Args:
        q: (B, D) queries (online encoder).
        k: (B, D) keys (momentum encoder; should carry no gradient).
        queue: (K, D) negatives from earlier batches.
        temperature: :math:`\tau > 0`.
        margin: ``m`` above.
        extra_negatives: optional (B, M, D) per-query negatives appended to the queue's (MoCHi's
            synthetic hard negatives, see :func:`mochi_negatives`).
    """
    check_embeddings("q", q)
    check_same_shape("q", q, "k", k)
    check_embeddings("k", k)
    check_positive("temperature", temperature)
    if not isinstance(queue, torch.Tensor) or queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        shape = tuple(queue.shape) if isinstance(queue, torch.Tensor) else type(queue).__name__
        raise ValueError(f"queue must have shape (K, {q.shape[1]}) (the embedding dim of q), got {shape}")
    if queue.shape[0] < 1:
        raise ValueError("queue must hold at least one negative (K >= 1)")
    check_finite("queue", queue)
    if not math.isfinite(margin):
        raise ValueError(f"margin must be a finite float, got {margin}")
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    pos = (q * k).sum(1, keepdim=True) - margin
    neg = q @ queue.T
    if extra_negatives is not None:
        e = extra_negatives
        if e.ndim != 3 or e.shape[0] != q.shape[0] or e.shape[2] != q.shape[1]:
            raise ValueError(f"extra_negatives must have shape ({q.shape[0]}, M, {q.shape[1]}), got "
                             f"{tuple(extra_negatives.shape)}")
        check_finite("extra_negatives", e)
        extra = torch.einsum("bd,bmd->bm", q, F.normalize(extra_negatives, dim=2))
        neg = torch.cat([neg, extra], dim=1)
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def eqco_margin(temperature: float, queue_size: int, alpha: float) -> float:
    r"""The margin :math:`m = \tau \log(\alpha / K)` for which :func:`moco_infonce` equals EqCo's loss
    with ``K = queue_size`` negatives rescaled to behave like ``alpha`` negatives (Zhu et al. 2021)."""
    check_positive("temperature", temperature)
    check_positive("queue_size", queue_size)
    check_positive("alpha", alpha)
    return float(temperature * math.log(alpha / queue_size))


@torch.no_grad()
def mochi_negatives(q: torch.Tensor, queue: torch.Tensor, n_hard: int = 1024, s: int = 1024, s_prime: int = 256,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Synthetic hard negatives of MoCHi (Kalantidis et al., NeurIPS 2020, "Hard Negative Mixing for
    Contrastive Learning", sec. 4).

    For each query, the ``n_hard`` queue entries most similar to it are its hardest negatives.
    ``s`` mixes :math:`h = \mathrm{normalize}(\alpha n_i + (1-\alpha) n_j)` of two random hard
    negatives with :math:`\alpha \sim U(0, 1)` drawn per mixture (patchwork's coefficient was always
    1, i.e. no mixing), and ``s_prime`` harder ones
    :math:`h' = \mathrm{normalize}(\beta q + (1-\beta) n_j)` with :math:`\beta \sim U(0, 0.5)`
    (the query is detached, as in the paper). Returns (B, s + s_prime, D), normalised, no grad.
    """
    check_embeddings("q", q, min_batch=1)
    if queue.ndim != 2 or queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must have shape (K, {q.shape[1]}), got {tuple(queue.shape)}")
    check_finite("queue", queue)
    if n_hard < 1 or s < 0 or s_prime < 0:
        raise ValueError(f"n_hard must be >= 1 and s, s_prime >= 0, got {n_hard}, {s}, {s_prime}")
    dev = q.device
    q, queue = F.normalize(q.detach(), dim=1), F.normalize(queue, dim=1)
    b = q.shape[0]
    n = min(n_hard, queue.shape[0])
    hard = queue[(q @ queue.T).topk(n, dim=1).indices]  # (B, n, D)
    out = []
    if s:
        ij = torch.randint(0, n, (b, s, 2), generator=generator).to(dev)
        alpha = torch.rand(b, s, 1, generator=generator).to(dev)
        ni = torch.gather(hard, 1, ij[..., 0:1].expand(-1, -1, q.shape[1]))
        nj = torch.gather(hard, 1, ij[..., 1:2].expand(-1, -1, q.shape[1]))
        out.append(F.normalize(alpha * ni + (1 - alpha) * nj, dim=2))
    if s_prime:
        j = torch.randint(0, n, (b, s_prime, 1), generator=generator).to(dev)
        beta = 0.5 * torch.rand(b, s_prime, 1, generator=generator).to(dev)
        nj = torch.gather(hard, 1, j.expand(-1, -1, q.shape[1]))
        out.append(F.normalize(beta * q[:, None] + (1 - beta) * nj, dim=2))
    return torch.cat(out, dim=1) if out else q.new_zeros(b, 0, q.shape[1])
