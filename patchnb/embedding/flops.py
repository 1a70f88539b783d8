"""Floating-point operation counts of the kNN patch embedding's kernels (Brutzkus et al., "Efficient
Learning of CNNs using Patch Based Features", ICML 2022, Sec. 5), for rooflines: a benchmark divides
the count by the measured seconds and compares with the host's float32 GEMM peak
(``benchmarks/roofline.py``).

Conventions: one multiply-add is 2 FLOP; additions, multiplications and divisions count 1; the
k-nearest selection (comparisons, counting passes, bit packing) counts 0 FLOP, as it does no float
arithmetic on the result (its cost shows up as a low fraction of the GEMM peak). For an image of
C x H x W, patch size p: ``L = (H - p + 1)(W - p + 1)`` positions, ``D = C p^2`` values per patch,
``N`` centroids.
"""

from __future__ import annotations

from ..checks import check_int
from .knn import pooled_size


def _positions(channels: int, height: int, width: int, patch_size: int) -> tuple[int, int]:
    for name, value in (("channels", channels), ("height", height), ("width", width), ("patch_size", patch_size)):
        check_int(name, value, 1)
    if patch_size > min(height, width):
        raise ValueError(f"patch_size={patch_size} is larger than the {height}x{width} image")
    return (height - patch_size + 1) * (width - patch_size + 1), channels * patch_size * patch_size


def flops_distance(channels: int, height: int, width: int, patch_size: int, n_centroids: int) -> int:
    """FLOP per image of the dictionary distance s_q = -<x, W c_q> + 1/2 ||c_q||^2 (the scores of
    :meth:`~patchnb.embedding.PatchEmbedding.scores`, Sec. 5): one (L x D) @ (D x N) GEMM,
    ``2 L D N``, plus the bias ``1/2 ||c_q||^2`` added at every position and centroid, ``L N``.
    Total ``L N (2 D + 1)``; the selection of the k nearest after it is 0 FLOP (module docstring)."""
    check_int("n_centroids", n_centroids, 1)
    L, D = _positions(channels, height, width, patch_size)
    return L * n_centroids * (2 * D + 1)


def flops_phi_full(channels: int, height: int, width: int, patch_size: int, n_centroids: int,
                   pool: tuple[int, int] | None = (4, 4), backward: bool = False) -> int:
    """FLOP per image of Phi_full then AvgPool (Sec. 5: the mask of the k nearest times a learnable
    conv C -> N of the raw patch; :func:`~patchnb.embedding.phi_full_pooled`).

    Forward: the distances (:func:`flops_distance`, ``L N (2 D + 1)``); the conv, another
    ``(L x D) @ (D x N)`` GEMM plus its bias, ``L N (2 D + 1)``; the masked sum over the pooling
    windows, one addition per (position in a window, centroid), ``L' N`` with ``L'`` the number of
    (window, position) pairs (``L`` when the windows tile the map, ``pool = (s, s)``); one division
    per pooled cell and centroid, ``Hp Wp N``. Without pooling (``pool=None``) the mask product is
    free (a selection) and nothing is summed or divided.

    Backward (``backward=True``: forward + backward, the weight gradient only, as the input image
    needs none): the pooled gradient spread back to the positions, one division and one addition per
    (window, position) pair and centroid, ``2 L' N`` (0 without pooling); grad_W = grad_conv^T @
    patches, ``2 L D N``; grad_b, ``L N``. So ``backward`` adds ``L N (2 D + 1) + 2 L' N``.
    """
    check_int("n_centroids", n_centroids, 1)
    L, D = _positions(channels, height, width, patch_size)
    n = n_centroids
    total = 2 * L * n * (2 * D + 1)
    pairs = 0
    if pool is not None:
        size, stride = pool
        check_int("pool size", size, 1)
        check_int("pool stride", stride, 1)
        ho, wo = height - patch_size + 1, width - patch_size + 1
        hp, wp = pooled_size(ho, size, stride), pooled_size(wo, size, stride)
        pairs = _window_pairs(ho, size, stride, hp) * _window_pairs(wo, size, stride, wp)
        total += pairs * n + hp * wp * n
    if backward:
        total += L * n * (2 * D + 1) + 2 * pairs * n
    return total


def _window_pairs(length: int, size: int, stride: int, n_windows: int) -> int:
    """Sum over the windows along one axis of their clipped lengths."""
    return sum(min(i * stride + size, length) - i * stride for i in range(n_windows))


def flops_head(channels: int, height: int, width: int, n_classes: int = 10, batch_norm: bool = True,
               bottleneck: int | None = 32, backward: bool = False) -> int:
    """FLOP per image of the locally linear network's head (Sec. 5; Table 3's switches;
    :class:`patchnb.models.patch.Head`) on pooled features of ``channels`` x ``height`` x ``width``
    (``M = channels height width`` values):

    * BatchNorm (training): mean and variance, 3 M (sum, squared difference and its sum), and the
      affine normalisation, 4 M (subtract, divide, scale, shift): ``7 M``;
    * 1x1 bottleneck conv ``channels -> bottleneck``: ``2 M bottleneck + height width bottleneck``
      (the bias);
    * linear to ``n_classes`` over ``F = bottleneck height width`` features (``channels height width``
      without the bottleneck): ``2 F n_classes + n_classes``.

    ``backward=True`` adds twice each GEMM's multiply-adds (the gradients of its weight and its input,
    ``4 M bottleneck`` and ``4 F n_classes``), their biases' sums (``height width bottleneck`` and
    ``n_classes``) and BatchNorm's backward, ``8 M`` (the gradient through the normalisation: two
    reductions and the elementwise formula; a rough count, as torch's kernel fuses it)."""
    for name, value in (("channels", channels), ("height", height), ("width", width), ("n_classes", n_classes)):
        check_int(name, value, 1)
    check_int("bottleneck", bottleneck, 1, allow_none=True)
    m, hw = channels * height * width, height * width
    total = 7 * m if batch_norm else 0
    f = m
    if bottleneck:
        total += 2 * m * bottleneck + hw * bottleneck
        f = bottleneck * hw
    total += 2 * f * n_classes + n_classes
    if backward:
        total += 8 * m if batch_norm else 0
        if bottleneck:
            total += 4 * m * bottleneck + hw * bottleneck
        total += 4 * f * n_classes + n_classes
    return total
