"""DetCon's contrastive loss over mask-pooled vectors (Hénaff et al. 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_embeddings, check_positive, check_same_shape


def _check_ids(name: str, ids: torch.Tensor, n: int) -> None:
    if not isinstance(ids, torch.Tensor) or ids.shape != (n,) or ids.is_floating_point() or ids.is_complex():
        shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{name} must be a 1-D integer tensor of {n} mask ids (one per row of the embeddings), "
                         f"got {shape}")


def detcon_loss(z1: torch.Tensor, z2: torch.Tensor, ids1: torch.Tensor, ids2: torch.Tensor | None = None,
                temperature: float = 0.1) -> torch.Tensor:
    r"""DetCon's contrastive detection loss (Hénaff, Koppula, Alayrac, van den Oord, Vinyals, Carreira,
    ICCV 2021, "Efficient Visual Pretraining with Contrastive Detection", sec. 3.1, eq. 3), with equal
    mask ids handled as in the official code (``deepmind/detcon``, ``utils/losses.py``,
    ``byol_nce_detcon``, single replica, local negatives on).

    Row ``i`` of ``z1`` / ``z2`` is a mask-pooled vector of view 1 / view 2 and ``ids1[i]`` / ``ids2[i]``
    its mask id; equal ids mean the same mask of the same image (callers fold the image into the id).
    Masks are sampled with replacement, so an id can occur several times in a view. The vectors are
    l2-normalised inside, ``s_ij = z_i . z_j / t``. For an anchor ``i`` of view 1 (view 2 alike):

    * positives ``P_i``: the rows ``j`` of the *other* view with ``ids2[j] == ids1[i]`` (every copy);
    * left out: the rows of the *same* view with the same id (the anchor itself and its duplicates,
      the official code's ``logits - 1e9`` on same-object pairs);
    * negatives: every other row of both views;

    .. math::
        \ell_i = -\frac{1}{|P_i|} \sum_{j \in P_i} \log \frac{e^{s_{ij}}}{\sum_{k \in \text{view 2}} e^{s_{ik}}
                 + \sum_{k \in \text{view 1},\ \mathrm{id}_k \ne \mathrm{id}_i} e^{s_{ik}}},
        \qquad w_i = \frac{[\,|P_i| > 0\,]}{|\{k \in \text{view 1}: \mathrm{id}_k = \mathrm{id}_i\}|}

    (the official soft labels ``1 / num_positives`` and weights ``1 / obj_area``: each distinct mask
    weighs one in total however often it was sampled, and a mask without a positive in the other view
    weighs zero). ``L_1 = (1/N) sum_i w_i l_i`` over the N rows of view 1, ``L_2`` alike, and the loss is
    ``(L_1 + L_2) / 2``: **deviation**, the official code sums the two (``loss_a + loss_b``); half of it
    makes the loss with all ids distinct exactly :func:`nt_xent` of ``z1``, ``z2`` (a constant factor
    of 2 otherwise). ``ids2`` defaults to ``ids1`` (both views pooled over the same sampled masks).

    Args:
        z1, z2: (N, D) pooled vectors of the two views. ids1, ids2: (N,) integer mask ids.
        temperature: t > 0.
    """
    check_embeddings("z1", z1)
    check_same_shape("z1", z1, "z2", z2)
    check_embeddings("z2", z2)
    check_positive("temperature", temperature)
    n = z1.shape[0]
    _check_ids("ids1", ids1, n)
    ids2 = ids1 if ids2 is None else ids2
    _check_ids("ids2", ids2, n)
    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    i1, i2 = ids1.to(z1.device), ids2.to(z1.device)

    def one_view(anchor, other, id_a, id_o):
        logits = torch.cat([anchor @ other.T, anchor @ anchor.T], 1) / temperature  # (N, 2N): other view, own view
        pos = (id_a[:, None] == id_o[None, :]).to(logits.dtype)
        same = id_a[:, None] == id_a[None, :]
        logits = torch.cat([logits[:, :n], logits[:, n:].masked_fill(same, float("-inf"))], 1)
        n_pos = pos.sum(1)
        logp = torch.log_softmax(logits, 1)[:, :n]
        ce = -(pos * logp).sum(1) / n_pos.clamp_min(1)
        weight = (n_pos > 0).to(logits.dtype) / same.sum(1).to(logits.dtype)
        return (weight * ce).mean()

    return (one_view(a, b, i1, i2) + one_view(b, a, i2, i1)) / 2
