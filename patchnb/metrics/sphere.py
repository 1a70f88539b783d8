"""How embeddings sit on the unit sphere: the von Mises-Fisher concentration and a 2-D circle view
(the geometry EMP-SSL's coding-rate and invariance terms act on; Wang & Isola 2020 read the same two
forces as alignment and uniformity)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checks import check_finite


def vmf_concentration(z: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
    r"""Concentration :math:`\hat\kappa` of a von Mises-Fisher distribution fitted to unit vectors ``z`` (N, d)
    (Banerjee et al. 2005, JMLR, eq. 4.4): with :math:`\bar R = \|\frac1N\sum_i z_i\|`,
    :math:`\hat\kappa = \bar R (d - \bar R^2) / (1 - \bar R^2)`. 0 for a uniform spread over the sphere, large
    when the points gather around one direction. With ``labels`` the per-class estimates are averaged
    (weighted by class size): high class concentration with low overall concentration is the picture
    of well-separated, uniformly spread classes. Returns ``{"kappa", "R"}``."""
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"z must be a non-empty (N, d) tensor, got shape {tuple(z.shape)}")
    if labels is not None and len(labels) != len(z):
        raise ValueError(f"labels ({len(labels)}) and z ({len(z)}) must have the same length")
    check_finite("z", z)
    z = F.normalize(z.double(), dim=1)
    d = z.shape[1]

    def one(x):
        r = float(x.mean(0).norm())
        r = min(r, 1 - 1e-12)
        return r * (d - r * r) / (1 - r * r), r

    if labels is None:
        k, r = one(z)
        return {"kappa": k, "R": r}
    ks, rs, ws = [], [], []
    for c in torch.unique(labels):
        m = labels == c
        k, r = one(z[m])
        ks.append(k)
        rs.append(r)
        ws.append(int(m.sum()))
    w = torch.tensor(ws, dtype=torch.float64) / sum(ws)
    return {"kappa": float((torch.tensor(ks) * w).sum()), "R": float((torch.tensor(rs) * w).sum())}


def circle_projection(z: torch.Tensor) -> torch.Tensor:
    """2-D view of embeddings on the sphere: l2-normalise, project on the two leading principal directions,
    l2-normalise again (points on the unit circle, as in Wang & Isola 2020, Fig. 3). Returns (N, 2)."""
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"z must be (N, d) with d >= 2, got shape {tuple(z.shape)}")
    z = F.normalize(z.double(), dim=1)
    zc = z - z.mean(0)
    _, _, v = torch.linalg.svd(zc, full_matrices=False)
    return F.normalize(z @ v[:2].T, dim=1).float()
