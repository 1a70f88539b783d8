"""The k-nearest-centroid selection of Brutzkus et al., ICML 2022, Sec. 5 (Phi_hard), its pooled
form and the ablation encodings: the C kernel (:mod:`patchnb.embedding`) on CPU float32, torch
(``kthvalue`` + exact tie fix-up) elsewhere. Ties break by the lower centroid index."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import _load_lib, _threads, kernel_backend


def _check_scores(scores: torch.Tensor, k: int) -> None:
    if not isinstance(scores, torch.Tensor) or scores.ndim != 4:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a 4-D tensor (B, N, H, W), got {shape}")
    n = scores.shape[1]
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k={k!r} must be an integer with 1 <= k <= N={n} (the number of centroids)")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be floating point, got {scores.dtype}")


def knn_mask_reference(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Straightforward reference: rank by a stable sort along N (ties: lower index first), keep ranks < k."""
    _check_scores(scores, k)
    order = scores.sort(dim=1, stable=True).indices
    ranks = order.argsort(dim=1)
    return (ranks < k).to(torch.float32)


def _knn_mask_torch(scores: torch.Tensor, k: int) -> torch.Tensor:
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN")
    s = scores.movedim(1, -1)
    t = s.kthvalue(k, dim=-1, keepdim=True).values if s.device.type == "cpu" else \
        s.topk(k, dim=-1, largest=False).values.amax(-1, keepdim=True)
    lt = s < t
    need = k - lt.sum(-1, keepdim=True)
    eq = s == t
    mask = lt | (eq & (eq.cumsum(-1) <= need))  # exact ties: the lowest indices first
    out = mask.movedim(-1, 1).to(torch.float32)
    return out.contiguous() if scores.is_contiguous() else out


def _position_strides(t: torch.Tensor) -> tuple[int, int, int] | None:
    """Element strides ``(sb, sn, sl)`` of ``t`` (B, N, H, W) viewed as (B, N, L = H W): element
    ``(b, q, l)`` is at ``b sb + q sn + l sl``. Derived only from dimensions longer than one (the
    stride of a size-1 dimension is arbitrary and never used: ``.contiguous()`` keeps it); ``None``
    when (H, W) do not flatten to one stride."""
    b, n, h, w = t.shape
    st = t.stride()
    sb = st[0] if b > 1 else 0
    sn = st[1] if n > 1 else 1
    if h > 1 and w > 1:
        if st[2] != w * st[3]:
            return None
        sl = st[3]
    else:
        sl = st[2] if h > 1 else st[3] if w > 1 else 0
    return sb, sn, sl


def _overlaps(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether the memory spans of ``a`` and ``b`` intersect (conservative: spans, not elements)."""
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr() or a.numel() == 0 or b.numel() == 0:
        return False

    def span(t):
        lo = t.data_ptr()
        return lo, lo + sum((n - 1) * s for n, s in zip(t.shape, t.stride())) * t.element_size() + t.element_size()

    (a0, a1), (b0, b1) = span(a), span(b)
    return a0 < b1 and b0 < a1


def _self_overlapping(t: torch.Tensor) -> bool:
    """Whether two elements of ``t`` may share memory (e.g. an ``expand``ed tensor); conservative:
    layouts that interleave dimensions also count."""
    span = 1
    for stride, size in sorted((s, n) for n, s in zip(t.shape, t.stride()) if n > 1):
        if stride < span:
            return True
        span += stride * (size - 1)
    return False


def _check_out(out: torch.Tensor, scores: torch.Tensor) -> None:
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"out must be a tensor, got {type(out).__name__}")
    if out.shape != scores.shape or out.dtype != torch.float32 or out.device != scores.device:
        raise ValueError(f"out must be a float32 tensor of shape {tuple(scores.shape)} on {scores.device}, got "
                         f"{out.dtype} of shape {tuple(out.shape)} on {out.device}")
    if any(s == 0 and n > 1 for n, s in zip(out.shape, out.stride())):
        raise ValueError(f"out has overlapping memory (strides {out.stride()} for shape {tuple(out.shape)}: an "
                         f"expanded tensor); pass a tensor with one element per position")


def knn_mask(scores: torch.Tensor, k: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Phi_hard (Brutzkus et al. 2022, Sec. 5): 1 where centroid q is among the k nearest at a position.

    ``scores`` (B, N, H, W) are distances up to a per-position constant (smaller is nearer), in any
    layout (permuted, strided, channels-last, size-1 dimensions). Returns a float32 mask of the same
    shape with exactly ``k`` ones at every position; ties break by the lower centroid index, as a
    stable sort would. ``out`` (float32, same shape and device, any layout without self-overlap) is
    filled and returned when given; on the C path a layout whose (H, W) flatten to one stride is
    written in place (which avoids page-faulting a fresh buffer of the scores' size), any other
    through a temporary.
    """
    _check_scores(scores, k)
    if out is not None:
        _check_out(out, scores)
    if kernel_backend(scores) == "torch":
        mask = _knn_mask_torch(scores, k)
        return mask if out is None else out.copy_(mask)
    s = scores
    if _position_strides(s) is None:
        s = s.contiguous()
    sb, sn, sl = _position_strides(s)
    target = out
    if out is None or _position_strides(out) is None or _self_overlapping(out) or _overlaps(out, s):
        target = torch.empty_like(s, dtype=torch.float32)
    ob, on, ol = _position_strides(target)
    b, n, h, w = s.shape
    if s.numel():
        err = _load_lib().knn_mask_strided(s.data_ptr(), target.data_ptr(), b, n, h * w, sb, sn, sl, ob, on, ol, k,
                                           _threads())
        if err:
            raise ValueError("scores contain NaN")
    if out is not None and target is not out:
        out.copy_(target)
    return out if out is not None else target


def pooled_size(size: int, kernel_size: int, stride: int, ceil_mode: bool = True) -> int:
    """Output length of torch's avg_pool2d (padding 0) along one axis."""
    return F.avg_pool1d(torch.empty(1, 1, size, device="meta"), kernel_size, stride, ceil_mode=ceil_mode).shape[-1]


def knn_pool(scores: torch.Tensor, k: int, kernel_size: int = 4, stride: int | None = None,
             ceil_mode: bool = True) -> torch.Tensor:
    """``avg_pool2d(knn_mask(scores, k), kernel_size, stride, ceil_mode=ceil_mode)`` without the mask.

    Exactly equal to mask-then-pool (the network pools Phi_hard right away: Brutzkus et al. 2022,
    Sec. 5, AvgPool(4, stride 4, ceil)). Fused in C when ``scores`` are channels-last float32 on the
    CPU (per position: select, add the row into its pooling cells, divide by the clipped window area);
    otherwise mask then pool. Returns (B, N, Hp, Wp) (channels-last strides on the fused path).
    """
    _check_scores(scores, k)
    stride = kernel_size if stride is None else stride
    if kernel_size < 1 or stride < 1:
        raise ValueError(f"kernel_size={kernel_size} and stride={stride} must be >= 1")
    b, n, h, w = scores.shape
    if kernel_backend(scores) == "torch" or not scores.is_contiguous(memory_format=torch.channels_last) \
            or kernel_size > h or kernel_size > w:
        return F.avg_pool2d(knn_mask(scores, k), kernel_size, stride, ceil_mode=ceil_mode)
    hp, wp = pooled_size(h, kernel_size, stride, ceil_mode), pooled_size(w, kernel_size, stride, ceil_mode)
    out = torch.empty(b, hp, wp, n)
    err = _load_lib().knn_pool_cl(scores.data_ptr(), out.data_ptr(), b, h, w, n, k, kernel_size, stride, hp, wp,
                                  _threads())
    if err:
        raise ValueError("scores contain NaN")
    return out.permute(0, 3, 1, 2)


def kth_neighbour_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """One-hot of only the k-th nearest centroid at each position (an ablation of the original code)."""
    m = knn_mask(scores, k)
    return m - knn_mask(scores, k - 1) if k > 1 else m


def triangle_encoding(scores: torch.Tensor) -> torch.Tensor:
    """Coates & Ng's "triangle" encoding relu(mean_q s_q - s_q) (an ablation in the original code)."""
    return F.relu(scores.mean(1, keepdim=True) - scores)


