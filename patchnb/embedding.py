"""The kNN patch embedding of Brutzkus et al., "Efficient Learning of CNNs using Patch Based
Features", ICML 2022, Sec. 5 (Phi_hard, Phi_full) and its ablations, plus the fast selection kernel.

Distances as one convolution: for a patch x (row vector, D = C p p) and a centroid c_q of the
whitened dictionary, ||x W - c_q||^2 = ||x W||^2 - 2 <x, W c_q> + ||c_q||^2, so up to the
per-position constant ||x W||^2 / 2 the score is s_q = -<x, W c_q> + 1/2 ||c_q||^2: a conv2d with
kernel -c_q W^T (reshaped to (N, C, p, p)) and bias 1/2 ||c_q||^2. Phi_hard marks the k smallest
scores at each position; Phi_full multiplies that mask by a learnable conv of the raw patch.

The selection (not the convolution) is the cost. :func:`knn_mask` and :func:`knn_pool` use a small
C kernel (``_knn.c``, compiled with the system C compiler on first use and cached; counting passes
on contiguous rows, exact ties by index), and fall back to torch (``kthvalue`` + exact tie fix-up)
on GPUs, without a compiler, or with ``PATCHNB_KNN_BACKEND=torch``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import stat
import subprocess
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_choice, check_finite, check_float, check_int

MODES = ("hard", "full", "simple", "triangle", "kth")
BACKENDS = ("auto", "c", "torch")
_SOURCE = Path(__file__).with_name("_knn.c")
_LIB: ctypes.CDLL | None | bool = None  # None: not tried yet; False: unavailable


# ----------------------------------------------------------------------------- the C kernel


def _cpu_tag() -> str:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor()
    return hashlib.sha1(f"{platform.machine()}{flags}".encode()).hexdigest()[:10]


class KernelError(RuntimeError):
    """The compiled kernel in the cache folder is not safe to load (owned by another user, or
    writable by others): loading it would run whatever code it holds."""


def _check_private(path: Path, what: str) -> None:
    """Refuse ``path`` unless it belongs to this user and only this user can write it."""
    st = os.stat(path)
    uid = os.getuid()
    problem = None
    if st.st_uid != uid:
        problem = f"is owned by uid {st.st_uid}, not by you (uid {uid})"
    elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "group and others" if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH else \
            "group" if st.st_mode & stat.S_IWGRP else "others"
        problem = f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    if problem:
        raise KernelError(f"refusing to load the compiled kNN kernel: {what} {path} {problem}, so someone else could "
                          f"have replaced the code it runs. The patchnb cache folder ($PATCHNB_CACHE, default "
                          f"~/.cache/patchnb) must be private to you: delete {path} (the kernel is rebuilt) and "
                          f"`chmod go-w` the cache folders, or set PATCHNB_KNN_BACKEND=torch")


def _load_lib() -> ctypes.CDLL | None:
    """Compile ``_knn.c`` once per source version and CPU (``-O3 -march=native``) into the patchnb
    cache (``kernels/``, created private), then load it; ``None`` when no compiler is available (the
    torch path is used). The cache folder must be private: a kernel file owned by another user or
    writable by group/others, or a ``kernels/`` folder owned by another user, raises
    :class:`KernelError` instead of being loaded (a ``kernels/`` folder of this user's that others
    may write in is first made writable by its owner only)."""
    global _LIB
    if _LIB is not None:
        return _LIB or None
    try:
        from .data import cache_dir

        src = _SOURCE.read_bytes()
        tag = hashlib.sha1(src).hexdigest()[:12] + "-" + _cpu_tag()
        out = cache_dir() / "kernels" / f"knn-{tag}.so"
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if out.parent.stat().st_uid == os.getuid():  # patchnb's own folder: only its owner may write in it
            out.parent.chmod(stat.S_IMODE(out.parent.stat().st_mode) & ~(stat.S_IWGRP | stat.S_IWOTH))
        _check_private(out.parent, "its folder")
        if not out.is_file():
            cc = os.environ.get("CC", "cc")
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                tmp_so = Path(tmp) / out.name
                flags = ["-O3", "-march=native", "-shared", "-fPIC", "-pthread"]
                subprocess.run([cc, *flags, "-o", str(tmp_so), str(_SOURCE), "-lm"], check=True,
                               capture_output=True, timeout=120)
                os.chmod(tmp_so, 0o755)  # whatever the umask: writable by its owner only
                os.replace(tmp_so, out)
        _check_private(out, "the file")
        lib = ctypes.CDLL(str(out))
        i64, vp, ci = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
        lib.knn_mask_strided.argtypes = [vp, vp] + [i64] * 9 + [ci, ci]
        lib.knn_pool_cl.argtypes = [vp, vp, i64, i64, i64, i64, ci, ci, ci, i64, i64, ci]
        lib.knn_mask_strided.restype = lib.knn_pool_cl.restype = ci
        _LIB = lib
    except (OSError, subprocess.SubprocessError, FileNotFoundError):
        _LIB = False
    return _LIB or None


def kernel_backend(scores: torch.Tensor | None = None) -> str:
    """``"c"`` when the compiled kernel serves ``scores`` (CPU float32), else ``"torch"``."""
    want = os.environ.get("PATCHNB_KNN_BACKEND", "auto")
    check_choice("PATCHNB_KNN_BACKEND", want, BACKENDS)
    if want == "torch":
        return "torch"
    ok = scores is None or (scores.device.type == "cpu" and scores.dtype == torch.float32)
    if ok and _load_lib() is not None:
        return "c"
    if want == "c":
        raise RuntimeError("PATCHNB_KNN_BACKEND=c but the C kernel is unavailable (no C compiler, or the "
                           "scores are not float32 on the CPU)")
    return "torch"


def _check_scores(scores: torch.Tensor, k: int) -> None:
    if not isinstance(scores, torch.Tensor) or scores.ndim != 4:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a 4-D tensor (B, N, H, W), got {shape}")
    n = scores.shape[1]
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise ValueError(f"k={k!r} must be an integer with 1 <= k <= N={n} (the number of centroids)")
    if not scores.is_floating_point():
        raise ValueError(f"scores must be floating point, got {scores.dtype}")


def _threads() -> int:
    return max(1, torch.get_num_threads())


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


# ----------------------------------------------------------------------------- fused Phi_full


class _PhiFullPooled(torch.autograd.Function):
    """``avg_pool2d(knn_mask(scores(x)) * conv(x))`` in chunks of images, with a hand-written backward.

    The plain autograd path materialises the float mask, the conv output, their product and the
    gradients of each (4 x 150 MB per batch of 64 at N = 1024 on 28x28 inputs; fresh allocations of
    that size are dominated by page faults). Here every chunk's scores, mask and conv output live in
    three reused buffers of ``CHUNK_ROWS`` x N floats (channels-last rows, the GEMM's natural output);
    only the mask is kept for the backward, as bool (a quarter of the size). Backward (the mask is a
    constant): grad_conv = mask * avg_pool2d_backward(grad_out), grad_W = grad_conv^T @ patches,
    grad_b = sum grad_conv, grad_x = fold(grad_conv @ W).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, kernel, sbias, k, pool, chunk_rows):
        b, c, h, w = x.shape
        n, p = weight.shape[0], weight.shape[-1]
        ho, wo = h - p + 1, w - p + 1
        L = ho * wo
        chunk = max(1, chunk_rows // L)
        kt, wt = kernel.reshape(n, -1).T, weight.reshape(n, -1).T
        rows_n = min(chunk, b) * L
        s_buf, m_buf, c_buf = torch.empty(rows_n, n), torch.empty(rows_n, n), torch.empty(rows_n, n)
        mask = torch.empty(b * L, n, dtype=torch.bool)
        outs = []
        for i in range(0, b, chunk):
            xi = x[i:i + chunk]
            r = len(xi) * L
            rows = F.unfold(xi, p).transpose(1, 2).reshape(r, -1)
            s = torch.addmm(sbias, rows, kt, out=s_buf[:r])
            m = knn_mask(s.view(len(xi), ho, wo, n).permute(0, 3, 1, 2), k, out=m_buf[:r].view(
                len(xi), ho, wo, n).permute(0, 3, 1, 2))
            m = m.permute(0, 2, 3, 1).reshape(r, n)  # a view on the C path (channels-last rows)
            torch.ne(m, 0, out=mask[i * L:i * L + r])
            y = torch.addmm(bias, rows, wt, out=c_buf[:r]).mul_(m)
            y = y.view(len(xi), ho, wo, n).permute(0, 3, 1, 2)
            outs.append(F.avg_pool2d(y, pool[0], pool[1], ceil_mode=pool[2]) if pool else y.clone())
        ctx.save_for_backward(x, weight, mask)
        ctx.pool, ctx.chunk = pool, chunk
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, mask = ctx.saved_tensors
        pool, chunk = ctx.pool, ctx.chunk
        b, c, h, w = x.shape
        n, p = weight.shape[0], weight.shape[-1]
        ho, wo = h - p + 1, w - p + 1
        L = ho * wo
        wflat = weight.reshape(n, -1)
        gw, gb = torch.zeros(n, wflat.shape[1]), torch.zeros(n)
        gx = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        like = torch.empty(min(chunk, b), ho, wo, n).permute(0, 3, 1, 2)  # only its shape/format is read
        for i in range(0, b, chunk):
            xi = x[i:i + chunk]
            r = len(xi) * L
            go = grad_out[i:i + chunk]
            if pool:
                g = torch.ops.aten.avg_pool2d_backward(go, like[:len(xi)], [pool[0]] * 2, [pool[1]] * 2, [0, 0],
                                                       pool[2], True, None)
            else:
                g = go
            g = g.permute(0, 2, 3, 1).reshape(r, n) * mask[i * L:i * L + r]
            rows = F.unfold(xi, p).transpose(1, 2).reshape(r, -1)
            gw.addmm_(g.T, rows)
            gb += g.sum(0)
            if gx is not None:
                gr = (g @ wflat).view(len(xi), L, -1).transpose(1, 2)
                gx[i:i + chunk] = F.fold(gr, (h, w), p)
        return gx, gw.view_as(weight), gb, None, None, None, None, None


def phi_full_pooled(x: torch.Tensor, embedding: PatchEmbedding, pool: tuple[int, int, bool] | None,
                    chunk_rows: int | None = None) -> torch.Tensor:
    """Phi_full (Brutzkus et al. 2022, Sec. 5) then ``avg_pool2d(*pool)`` (or no pooling with ``None``),
    equal in values and gradients to ``avg_pool2d(embedding.mask(x) * embedding.conv(x))`` but without the
    full-size float intermediates (:class:`_PhiFullPooled`). CPU float32 only; elsewhere the plain path."""
    if embedding.mode != "full":
        raise ValueError(f"phi_full_pooled needs an embedding in mode 'full', got mode={embedding.mode!r}")
    embedding._check_input(x)
    conv = embedding.conv
    if x.device.type != "cpu" or x.dtype != torch.float32 or conv.weight.dtype != torch.float32 \
            or conv.padding != (0, 0) or conv.stride != (1, 1):
        out = embedding.mask(x) * conv(x)
        return F.avg_pool2d(out, pool[0], pool[1], ceil_mode=pool[2]) if pool else out
    return _PhiFullPooled.apply(x.contiguous(), conv.weight, conv.bias, embedding.kernel, embedding.bias,
                                embedding.k, tuple(pool) if pool else None, chunk_rows or embedding.CHUNK_ROWS)


# ----------------------------------------------------------------------------- dictionary


def build_dictionary(images_float: torch.Tensor, patch_size: int, n_patches: int, n_centroids: int,
                     whitening: str = "pca", seed: int = 0, random_gaussian: bool = False,
                     n_iter: int = 20, eps: float = 1e-3) -> dict:
    """The unsupervised stage (Brutzkus et al. 2022, Sec. 5): whitening from the moments of all
    patches of ``images_float`` (already normalised as the model sees them), ``n_patches`` sampled
    patches (norm >= 0.01) whitened and clustered by k-means into ``n_centroids`` centroids.

    ``random_gaussian=True`` is the ablation of Table 1: standard gaussian centroids in the whitened
    space instead of clustered patches. Returns ``{"centroids" (N, D), "whitening" (D, D),
    "patch_size", "channels", "mean" (D,)}``, the arguments of :class:`PatchEmbedding`.
    """
    from . import cluster, patches

    check_choice("whitening", whitening, patches.WHITENINGS)
    if not isinstance(images_float, torch.Tensor) or images_float.ndim != 4:
        shape = tuple(images_float.shape) if isinstance(images_float, torch.Tensor) else type(images_float).__name__
        raise ValueError(f"images_float must be (N, C, H, W), got shape {shape}")
    if not images_float.is_floating_point():
        raise ValueError(f"images_float must be normalised float images, got {images_float.dtype} (raw pixels? "
                         f"normalise them as the model sees them first, e.g. splits.norm(images))")
    check_int("patch_size", patch_size, 1)
    check_int("n_centroids", n_centroids, 1)
    check_int("n_iter", n_iter, 1)
    check_float("eps", eps, 0.0, strict_min=True)
    if not random_gaussian:
        check_int("n_patches", n_patches, 1)
        if n_centroids > n_patches:
            raise ValueError(f"n_centroids={n_centroids} is more than n_patches={n_patches}: k-means needs at least "
                             f"as many sampled patches as centroids (raise n_patches or lower n_centroids)")
    check_finite("images_float", images_float)
    x = images_float.float()
    mean, cov = patches.patch_moments(x, patch_size)
    wh = patches.Whitening.from_covariance(mean, cov, whitening, eps)
    d = x.shape[1] * patch_size * patch_size
    if random_gaussian:
        g = torch.Generator().manual_seed(seed)
        centroids = torch.randn(n_centroids, d, generator=g)
    else:
        pts = wh(patches.dictionary_patches(x, n_patches, patch_size, seed))
        centroids = cluster.kmeans(pts, n_centroids, n_iter=n_iter, seed=seed).centroids
    return {"centroids": centroids.float(), "whitening": wh.matrix.float(), "patch_size": patch_size,
            "channels": x.shape[1], "mean": mean.float()}


# ----------------------------------------------------------------------------- the module


class PatchEmbedding(nn.Module):
    """The patch embedding of Brutzkus et al. (ICML 2022, Sec. 5) from a whitened dictionary.

    Scores are ONE conv2d with the frozen buffers ``kernel = -c_q W^T`` (N, C, p, p) and
    ``bias = 1/2 ||c_q||^2``. Modes:

    * ``hard``: Phi_hard, the k-nearest-centroid mask (N channels);
    * ``full``: Phi_full, the mask times a learnable conv C -> N of the raw patch (padding 0);
    * ``simple``: Table 2's unconstrained full embedding: the mask (B, N, H, W) times the raw patch
      (C p p values), N C p p channels, then a learnable 1x1 linear map to ``out_channels``;
    * ``triangle``: relu(mean_q s_q - s_q) (Coates & Ng);
    * ``kth``: a one-hot of only the k-th nearest centroid.

    ``forward(x, pool=None)``: with ``pool=(size, stride, ceil_mode)`` the pooled embedding is
    returned; in ``hard`` mode on the CPU it is fused (the full mask is never materialised).
    """

    def __init__(self, centroids: torch.Tensor, whitening: torch.Tensor, patch_size: int, channels: int,
                 k: int, mode: str = "hard", out_channels: int | None = None) -> None:
        super().__init__()
        check_choice("mode", mode, MODES)
        check_int("patch_size", patch_size, 1)
        check_int("channels", channels, 1)
        check_int("out_channels", out_channels, 1, allow_none=True)
        centroids, whitening = torch.as_tensor(centroids).float(), torch.as_tensor(whitening).float()
        check_finite("centroids", centroids)
        check_finite("whitening", whitening)
        d = channels * patch_size * patch_size
        if centroids.ndim != 2 or centroids.shape[1] != d:
            raise ValueError(f"centroids must be (N, D) with D = channels * patch_size^2 = {channels}*{patch_size}^2"
                             f" = {d}, got {tuple(centroids.shape)}: the dictionary does not match the patch size "
                             f"or channel count")
        if whitening.shape != (d, d):
            raise ValueError(f"whitening must be ({d}, {d}) for {channels} channels and {patch_size}x{patch_size} "
                             f"patches, got {tuple(whitening.shape)}")
        n = centroids.shape[0]
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
            raise ValueError(f"k={k!r} must be an integer with 1 <= k <= N={n} (the dictionary size)")
        self.n, self.k, self.mode, self.patch_size, self.channels = n, k, mode, patch_size, channels
        kernel = -(centroids @ whitening.T)  # row q: -(W c_q)^T, i.e. the kernel -c_q W^T
        self.register_buffer("kernel", kernel.reshape(n, channels, patch_size, patch_size).contiguous())
        self.register_buffer("bias", 0.5 * (centroids * centroids).sum(1))
        self.out_channels = n
        if mode == "full":
            self.conv = nn.Conv2d(channels, n, patch_size)
        elif mode == "simple":
            self.out_channels = out_channels or n
            self.linear = nn.Conv2d(n * d, self.out_channels, 1)

    @classmethod
    def from_dictionary(cls, dictionary: dict, k: int, mode: str = "hard", **kw) -> PatchEmbedding:
        return cls(dictionary["centroids"], dictionary["whitening"], dictionary["patch_size"],
                   dictionary["channels"], k, mode, **kw)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of images, got {type(x).__name__}")
        if x.dtype != self.kernel.dtype:
            hint = (" (raw pixels? the dictionary is in normalised coordinates: normalise them as the model sees "
                    "them, e.g. splits.norm(images))" if not x.is_floating_point() else "")
            raise ValueError(f"x has dtype {x.dtype}; this embedding's dictionary is {self.kernel.dtype}, so the input "
                             f"must be {self.kernel.dtype} too{hint}")
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"input must be (B, {self.channels}, H, W) for this dictionary of {self.channels}-channel "
                             f"{self.patch_size}x{self.patch_size} patches, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self.patch_size:
            raise ValueError(f"images of {tuple(x.shape[-2:])} are smaller than the patch size {self.patch_size}")

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """s_q = -<x, W c_q> + 1/2 ||c_q||^2 at every position: the conv2d with the frozen ``kernel`` and
        ``bias``, (B, N, H', W'). On the CPU it runs as one GEMM of the unfolded patches, which leaves the
        scores in channels-last rows, the layout the selection kernel reads fastest."""
        self._check_input(x)
        if x.device.type != "cpu":
            return F.conv2d(x, self.kernel, self.bias)
        b, _, h, w = x.shape
        ho, wo = h - self.patch_size + 1, w - self.patch_size + 1
        rows = F.unfold(x, self.patch_size).transpose(1, 2).reshape(b * ho * wo, -1)
        s = torch.addmm(self.bias, rows, self.kernel.view(self.n, -1).T)
        return s.view(b, ho, wo, self.n).permute(0, 3, 1, 2)

    def _hard_pooled(self, x: torch.Tensor, size: int, stride: int, ceil_mode: bool) -> torch.Tensor:
        """Fused Phi_hard + AvgPool: scores of a few images at a time into one reused buffer (no
        page-faulting 150 MB tensors), selected and pooled by the C kernel while still in cache."""
        self._check_input(x)
        if x.device.type != "cpu" or kernel_backend(x.float()) != "c":
            return knn_pool(self.scores(x), self.k, size, stride, ceil_mode)
        b, _, h, w = x.shape
        p = self.patch_size
        ho, wo = h - p + 1, w - p + 1
        if size > ho or size > wo:
            return F.avg_pool2d(knn_mask(self.scores(x), self.k), size, stride, ceil_mode=ceil_mode)
        chunk = max(1, self.CHUNK_ROWS // (ho * wo))
        kt = self.kernel.view(self.n, -1).T
        buf = torch.empty(min(chunk, b) * ho * wo, self.n)
        outs = []
        for i in range(0, b, chunk):
            xi = x[i:i + chunk].float()
            rows = F.unfold(xi, p).transpose(1, 2).reshape(-1, kt.shape[0])
            s = torch.addmm(self.bias, rows, kt, out=buf[:len(rows)])
            outs.append(knn_pool(s.view(len(xi), ho, wo, self.n).permute(0, 3, 1, 2), self.k, size, stride,
                                 ceil_mode))
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    CHUNK_ROWS = 4096
    fused = True  # Phi_full on the CPU through :func:`phi_full_pooled` (set False for the plain autograd path)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        return knn_mask(self.scores(x).detach(), self.k)

    def forward(self, x: torch.Tensor, pool: tuple[int, int, bool] | None = None) -> torch.Tensor:
        if self.mode == "hard" and pool is not None:
            with torch.no_grad():
                return self._hard_pooled(x, *pool)
        if self.mode == "full" and self.fused and x.device.type == "cpu":
            return phi_full_pooled(x, self, pool)
        if self.mode == "triangle":
            out = triangle_encoding(self.scores(x))
        elif self.mode == "kth":
            with torch.no_grad():
                out = kth_neighbour_mask(self.scores(x), self.k)
        else:
            with torch.no_grad():
                m = self.mask(x)
            if self.mode == "hard":
                out = m
            elif self.mode == "full":
                out = m * self.conv(x)
            else:  # simple: mask (B, N, H, W) x raw patch (B, D, H, W) -> (B, N*D, H, W) -> linear
                b, _, h, w = m.shape
                p = F.unfold(x, self.patch_size).view(b, -1, h, w)
                out = self.linear((m.unsqueeze(2) * p.unsqueeze(1)).flatten(1, 2))
        if pool is not None:
            out = F.avg_pool2d(out, pool[0], pool[1], ceil_mode=pool[2])
        return out
