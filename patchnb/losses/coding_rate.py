"""Total coding rate and the EMP-SSL objective (Tong et al. 2023)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_embeddings, check_finite, check_positive


def total_coding_rate(z: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    r"""Total coding rate :math:`R(Z) = \frac12 \log\det\big(I_d + \frac{d}{B\epsilon} Z^\top Z\big)` of
    ``z`` (B, d) (Ma et al. 2007; Yu et al. 2020, MCR^2; as used by EMP-SSL, Tong et al. 2023,
    with the scale :math:`d/(B\epsilon)` of the EMP-SSL code, ``eps = 0.2``).

    By Sylvester's determinant identity :math:`\det(I_d + cZ^\top Z) = \det(I_B + cZZ^\top)`, so the
    smaller of the (d, d) and (B, B) Gram matrices is used. The log-determinant comes from a
    Cholesky factorisation (the matrix is symmetric positive definite), falling back to
    ``slogdet`` if that fails. Computed in float32 at least. Needs B >= 2 and ``eps`` > 0.
    """
    check_embeddings("z", z)
    check_positive("eps", eps)
    b, d = z.shape
    x = z if z.dtype in (torch.float32, torch.float64) else z.float()
    gram = x.T @ x if d <= b else x @ x.T
    m = torch.eye(gram.shape[0], dtype=x.dtype, device=x.device) + (d / (b * eps)) * gram
    chol, info = torch.linalg.cholesky_ex(m)
    if int(info) == 0:
        return torch.log(torch.diagonal(chol)).sum()  # 1/2 logdet = sum log diag(L)
    return 0.5 * torch.linalg.slogdet(m)[1]


def emp_ssl_loss(views: torch.Tensor, eps: float = 0.2, invariance_weight: float = 200.0) -> torch.Tensor:
    r"""EMP-SSL objective (Tong, Chen, Lecun, Ma, 2023, "EMP-SSL: Towards Self-Supervised Learning in
    One Training Epoch") for ``views`` of shape (n_patches, B, d):

    .. math:: \bar z_b = \frac1n\sum_i z_{i,b}, \quad
              \mathrm{inv} = \frac{1}{n}\sum_{i=1}^{n} \frac1B \sum_b \cos(z_{i,b}, \bar z_b), \quad
              L = -\lambda\, \mathrm{inv} - \frac1n\sum_{i=1}^{n} R(Z_i)

    with :math:`\lambda` = ``invariance_weight`` (200 in the paper) and :math:`R` =
    :func:`total_coding_rate`. Sign conventions (checked against the EMP-SSL code, where
    ``loss = patch_sim * (-inv) + tcr * (-R)``): both terms are *maximised* by training, so both
    enter the loss with a minus sign; the loss is therefore negative and decreasing. The mean view
    is not detached (as in the reference). EMP-SSL l2-normalises its projections before the loss;
    this function takes them as given (pass normalised views to reproduce EMP-SSL).
    """
    if isinstance(views, (list, tuple)) and views and all(isinstance(v, torch.Tensor) for v in views):
        if len({tuple(v.shape) for v in views}) > 1:
            raise ValueError(f"all views must have the same (batch, dim) shape, got {[tuple(v.shape) for v in views]}")
        views = torch.stack(list(views))  # a list of n_patches (B, d) tensors, as the EMP-SSL code passes
    if not isinstance(views, torch.Tensor) or views.ndim != 3:
        shape = tuple(views.shape) if isinstance(views, torch.Tensor) else type(views).__name__
        raise ValueError(f"views must have shape (n_patches, batch, dim), got {shape}")
    if views.shape[0] < 2:
        raise ValueError(f"views hold n_patches={views.shape[0]}; EMP-SSL needs n_patches >= 2")
    check_positive("eps", eps)
    if not math.isfinite(invariance_weight):
        raise ValueError(f"invariance_weight must be a finite number, got {invariance_weight!r}")
    n = views.shape[0]
    check_embeddings("views[0]", views[0])
    check_finite("views", views)
    mean = views.mean(0, keepdim=True)
    inv = F.cosine_similarity(views, mean.expand_as(views), dim=2).mean()
    rate = torch.stack([total_coding_rate(views[i], eps) for i in range(n)]).mean()
    return -invariance_weight * inv - rate
