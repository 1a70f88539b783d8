"""Table 2's *Simple* model of Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features", ICML
2022 (Sec. 5.2; the original's ``main.py --full_embedding True``): one linear layer over the whole N*D*H'*W' full
embedding. Built by :func:`patchnb.models.patch.patch_layer` for ``embedding="simple"``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checks import check_int
from ..embedding import PatchEmbedding, knn_mask


def check_model_input(image_shape: Sequence[int], n_classes: int,
                      embedding: PatchEmbedding | None = None) -> tuple[int, int, int]:
    """The checks every patch model's constructor makes: ``image_shape`` is (C, H, W) of positive integers,
    ``n_classes`` >= 1, and the dictionary of ``embedding`` (if any) has C-channel patches. Returns (C, H, W)."""
    if len(image_shape) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}")
    for v in image_shape:
        check_int("image_shape", v, 1)
    check_int("n_classes", n_classes, 1)
    c, h, w = image_shape
    if embedding is not None and embedding.channels != c:
        raise ValueError(f"the dictionary has {embedding.channels}-channel patches but the input has {c} channels")
    return c, h, w

class SimpleNetwork(nn.Module):
    """Table 2's *Simple* model as the original (``main.py --full_embedding True``, Brutzkus et al. 2022,
    Sec. 5.2): the *full embedding* then ONE linear layer over all of it, no pooling, BatchNorm nor
    bottleneck (the original asserts them off).

    The full embedding at a position holds N blocks of the raw patch (D = C p p values): block q is the
    patch when centroid q is among its k nearest, else zeros (the Phi_hard mask of ``embedding``, a
    ``hard``-mode :class:`~patchnb.embedding.PatchEmbedding`, times the patch). The map (B, N*D, H', W')
    is flattened in (q, d, row, col) order, the original's, into one linear layer to ``n_classes``
    (:meth:`linear_weight`, ``(n_classes, N*D*H'*W')``, and ``bias``; initialised as ``nn.Linear``'s,
    uniform in +-1/sqrt(N*D*H'*W')): every centroid has its own linear function of the patch at every
    position, the unconstrained counterpart of Phi_full (whose one conv C -> N is shared by a position's
    neighbours).

    Size: N*D*H'*W'*n_classes + n_classes parameters. On Fashion-MNIST (28x28, p = 5) with N = 64,
    921,600 features and 9,216,010 parameters (37 MB); at the Table 2 cpu preset (N = 256) 3,686,400
    features and 36,864,010 parameters (147 MB); at the paper preset (CIFAR-10 32x32x3, N = 256)
    15,052,800 features and 150,528,010 parameters (602 MB), as the original's.

    Computation (the same logits and gradients as ``full_embedding(x).flatten(1) @ linear_weight().T +
    bias``, tested): the embedding is not materialised. The weight is stored position-major, ``weight``
    of shape (H'*W', N, n_classes, D), so that per position the mask (B, N) times that position's
    weights (N, n_classes*D) is one batched GEMM, its product with the raw patch a second one (summing
    over D), then a sum over the positions. The largest intermediate is B*H'*W'*n_classes*D floats (32
    images at cpu: 18 MB) instead of B*N*D*H'*W' (118 MB). Without gradients (evaluation) images go
    through in chunks of at most :attr:`CHUNK_FLOATS` intermediate floats."""

    CHUNK_FLOATS = 2 ** 25  # intermediate floats per chunk when no gradient is needed (128 MB)

    def __init__(self, embedding: PatchEmbedding, image_shape: Sequence[int], n_classes: int = 10) -> None:
        super().__init__()
        if not isinstance(embedding, PatchEmbedding) or embedding.mode != "hard":
            raise ValueError("embedding must be a PatchEmbedding in mode 'hard' (its k-nearest-centroid mask is "
                             f"the Simple model's selection), got {getattr(embedding, 'mode', type(embedding))!r}")
        c, h, w = check_model_input(image_shape, n_classes, embedding)
        p = embedding.patch_size
        if p > min(h, w):
            raise ValueError(f"patch_size={p} is larger than the {h}x{w} input")
        self.embedding, self.image_shape, self.n_classes = embedding, tuple(image_shape), n_classes
        self.patch_dim = c * p * p
        self.out_shape = (embedding.n * self.patch_dim, h - p + 1, w - p + 1)
        positions = self.out_shape[1] * self.out_shape[2]
        bound = 1 / math.sqrt(math.prod(self.out_shape))  # nn.Linear's default over the whole embedding
        self.weight = nn.Parameter(torch.empty(positions, embedding.n, n_classes, self.patch_dim).uniform_(-bound,
                                                                                                           bound))
        self.bias = nn.Parameter(torch.empty(n_classes).uniform_(-bound, bound))

    def linear_weight(self) -> torch.Tensor:
        """The weight as the original's ``nn.Linear`` holds it: (n_classes, N*D*H'*W'), in the flatten order
        (q, d, row, col) of :meth:`full_embedding` (a view of ``weight``)."""
        s, n, c, d = self.weight.shape
        return self.weight.permute(2, 1, 3, 0).reshape(c, n * d * s)

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"input must be (B, {', '.join(map(str, self.image_shape))}), got "
                             f"{tuple(getattr(x, 'shape', ())) or type(x).__name__}")
        if x.dtype != self.embedding.kernel.dtype:
            raise ValueError(f"x has dtype {x.dtype}; the dictionary is {self.embedding.kernel.dtype}: normalise the "
                             f"images as the model sees them (e.g. splits.norm(images))")

    def full_embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N*D, H', W'), materialised: block q (channels q*D .. q*D + D - 1) of a position is its raw
        patch (the ``F.unfold`` order: channel, row, col) if centroid q is among its k nearest, else 0."""
        self._check(x)
        with torch.no_grad():
            m = self.embedding.mask(x)  # (B, N, H', W'), frozen
        b, n, h, w = m.shape
        patch = F.unfold(x, self.embedding.patch_size).view(b, 1, -1, h, w)  # the reference order (tests)
        return (m.unsqueeze(2) * patch).reshape(b, -1, h, w)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The full embedding: what the original's ``embedding_mode`` returns (the linear layer's input)."""
        return self.full_embedding(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        emb, p = self.embedding, self.embedding.patch_size
        b, _, h, w = x.shape
        h, w = h - p + 1, w - p + 1
        s, n, c, d = h * w, emb.n, self.n_classes, self.patch_dim
        # the patches as rows (B*S, D) in F.unfold's (channel, row, col) order, from a strided view: F.unfold
        # (im2col) is ~100x slower on a busy 2-core CPU here (0.26 s for 32 28x28 images)
        rows = x.unfold(2, p, 1).unfold(3, p, 1).permute(0, 2, 3, 1, 4, 5).reshape(b * s, d)
        with torch.no_grad():  # the Phi_hard mask, frozen: the embedding's scores (its kernel and bias) on these rows
            scores = torch.addmm(emb.bias, rows, emb.kernel.view(n, d).T).view(b, h, w, n).permute(0, 3, 1, 2)
            m = knn_mask(scores, emb.k)  # (B, N, H', W')
        ms = m.permute(2, 3, 0, 1).reshape(s, b, n)  # (S, B, N)
        u = torch.bmm(ms, self.weight.view(s, n, c * d)).view(s * b, c, d)  # per position: its k centroids' maps
        ps = rows.view(b, s, d).transpose(0, 1).reshape(s * b, d, 1)
        return torch.bmm(u, ps).view(s, b, c).sum(0) + self.bias  # summed over D, then over the positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        s, _, c, d = self.weight.shape
        step = max(1, self.CHUNK_FLOATS // (s * c * d))
        if torch.is_grad_enabled() or len(x) <= step:
            return self._logits(x)
        return torch.cat([self._logits(x[i:i + step]) for i in range(0, len(x), step)])


def simple_parameters(image_shape: Sequence[int], n_centroids: int, patch_size: int = 5, n_classes: int = 10) -> int:
    """The parameters of :class:`SimpleNetwork` on (C, H, W) images: N*D*H'*W'*n_classes + n_classes with
    D = C p^2 and H' = H - p + 1, W' = W - p + 1 (the original's ``nn.Linear`` over the full embedding)."""
    c, h, w = image_shape
    return n_centroids * c * patch_size ** 2 * (h - patch_size + 1) * (w - patch_size + 1) * n_classes + n_classes


__all__ = ["SimpleNetwork", "simple_parameters"]
