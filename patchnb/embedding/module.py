"""The patch embedding module of Brutzkus et al., ICML 2022, Sec. 5 (Phi_hard, Phi_full, ablations)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_choice, check_finite, check_int
from ..patches import unfold
from . import MODES, kernel_backend
from .fused import phi_full_pooled
from .knn import knn_mask, knn_pool, kth_neighbour_mask, triangle_encoding


class PatchEmbedding(nn.Module):
    """The patch embedding of Brutzkus et al. (ICML 2022, Sec. 5) from a whitened dictionary.

    Scores are ONE conv2d with the frozen buffers ``kernel = -c_q W^T`` (N, C, p, p) and
    ``bias = 1/2 ||c_q||^2``. Modes:

    * ``hard``: Phi_hard, the k-nearest-centroid mask (N channels);
    * ``full``: Phi_full, the mask times a learnable conv C -> N of the raw patch (padding 0);
    * ``simple``: the mask (B, N, H, W) times the raw patch (C p p values), N C p p channels, then a
      learnable 1x1 linear map to ``out_channels``: the ``simple_factorised`` variant of the patch chapter,
      *not* the original's Table 2 "Simple" model, which is one linear layer over the whole N C p p H W
      embedding (:class:`patchnb.models.simple.SimpleNetwork`);
    * ``triangle``: relu(mean_q s_q - s_q) (Coates & Ng);
    * ``kth``: a one-hot of only the k-th nearest centroid.

    ``forward(x, pool=None)``: with ``pool=(size, stride, ceil_mode)`` the pooled embedding is
    returned; in ``hard`` mode on the CPU it is fused (the full mask is never materialised). With
    :attr:`cache` set (augmentation off), pooled Phi_hard and the Phi_full mask are computed once per image.
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
        rows = unfold(x, self.patch_size).transpose(1, 2).reshape(b * ho * wo, -1)
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
            rows = unfold(xi, p).transpose(1, 2).reshape(-1, kt.shape[0])
            s = torch.addmm(self.bias, rows, kt, out=buf[:len(rows)])
            outs.append(knn_pool(s.view(len(xi), ho, wo, self.n).permute(0, 3, 1, 2), self.k, size, stride,
                                 ceil_mode))
        return torch.cat(outs) if len(outs) > 1 else outs[0]

    CHUNK_ROWS = 4096
    fused = True  # Phi_full on the CPU through :func:`phi_full_pooled` (set False for the plain autograd path)
    #: per-image cache (:class:`~patchnb.embedding.cache.EmbeddingCache`, set by ``cache_embeddings``): the
    #: pooled Phi_hard features or the Phi_full mask of an image seen before are read, not recomputed
    cache = None

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        return knn_mask(self.scores(x).detach(), self.k)

    def forward(self, x: torch.Tensor, pool: tuple[int, int, bool] | None = None) -> torch.Tensor:
        if self.mode == "hard" and pool is not None:
            with torch.no_grad():
                if self.cache is not None:
                    return self.cache.hard_pooled(self, x, tuple(pool))
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
                p = unfold(x, self.patch_size).view(b, -1, h, w)
                out = self.linear((m.unsqueeze(2) * p.unsqueeze(1)).flatten(1, 2))
        if pool is not None:
            out = F.avg_pool2d(out, pool[0], pool[1], ceil_mode=pool[2])
        return out
