"""Supervised contrastive loss (SupCon, L_out) of Khosla et al. 2020."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_finite, check_positive


def supcon(features: torch.Tensor, labels: torch.Tensor | None, temperature: float = 0.07) -> torch.Tensor:
    r"""Supervised contrastive loss :math:`L^{sup}_{out}` (Khosla et al., NeurIPS 2020, "Supervised
    Contrastive Learning", eq. 2).

    ``features`` (B, n_views, D) are l2-normalised inside and flattened to the 2N = B * n_views
    anchors ``i`` with :math:`A(i)` = all other anchors and :math:`P(i)` = the anchors of the same
    label (other views of the same image included, ``i`` itself excluded):

    .. math:: L = \frac{1}{|I'|}\sum_{i \in I'} \frac{-1}{|P(i)|} \sum_{p \in P(i)}
              \log \frac{\exp(z_i . z_p / \tau)}{\sum_{a \in A(i)} \exp(z_i . z_a / \tau)}

    Anchors with no positive (:math:`P(i) = \emptyset`, possible with ``n_views = 1``) are *excluded*
    from the mean (:math:`I'` = anchors with at least one positive) instead of dividing by zero (the
    NaN of the reference code); if no anchor has a positive the loss is 0 (still differentiable).
    ``labels=None`` gives each image its own label (SimCLR's loss over n_views views). The reference
    code's extra factor ``temperature / base_temperature`` is 1 at its defaults and is left out.

    Args:
        features: (B, n_views, D). labels: (B,) integer class labels or None. temperature: > 0.
    """
    if not isinstance(features, torch.Tensor) or features.ndim != 3:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must have shape (batch, n_views, dim), got {shape}")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor, got {features.dtype}")
    check_finite("features", features)
    check_positive("temperature", temperature)
    b, v, _ = features.shape
    if b * v < 2:
        raise ValueError(f"features hold {b * v} embedding(s); supcon needs at least 2 (a batch of one with one "
                         f"view has nothing to contrast)")
    if labels is None:
        labels = torch.arange(b, device=features.device)
    labels = torch.as_tensor(labels, device=features.device)
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integer class labels, got a {labels.dtype} tensor (float labels would "
                         f"compare as equal only when bit-identical); cast whole-number labels with .long()")
    if labels.ndim != 1 or labels.shape[0] != b:
        raise ValueError(f"labels must have shape ({b},) (one per image of features), got {tuple(labels.shape)}")
    z = F.normalize(features, dim=2).transpose(0, 1).reshape(v * b, -1)  # view-major, as the reference code
    lab = labels.repeat(v)
    logits = z @ z.T / temperature
    self_mask = torch.eye(v * b, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (lab[:, None] == lab[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return (z * 0).sum()
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0).sum(1)[has] / n_pos[has]
    return -mean_log_prob_pos.mean()
