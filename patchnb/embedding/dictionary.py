"""The unsupervised stage of Brutzkus et al., ICML 2022, Sec. 5: a whitened k-means dictionary."""

from __future__ import annotations

import torch

from ..checks import check_choice, check_finite, check_float, check_int


def build_dictionary(images_float: torch.Tensor, patch_size: int, n_patches: int, n_centroids: int,
                     whitening: str = "pca", seed: int = 0, random_gaussian: bool = False,
                     n_iter: int = 20, eps: float = 1e-3) -> dict:
    """The unsupervised stage (Brutzkus et al. 2022, Sec. 5): whitening from the moments of all
    patches of ``images_float`` (already normalised as the model sees them), ``n_patches`` sampled
    patches (norm >= 0.01) whitened and clustered by k-means into ``n_centroids`` centroids.

    ``random_gaussian=True``: standard gaussian centroids drawn in the data-whitened space instead of
    clustered patches, the patch chapter's ``gaussian_centroids`` variant; the original's Table 1
    ablation (gaussian *patches* whitened by their own covariance, then clustered) is
    :func:`patchnb.models.patch.random_patch_dictionary`. Returns ``{"centroids" (N, D), "whitening" (D, D),
    "patch_size", "channels", "mean" (D,)}``, the arguments of :class:`PatchEmbedding`.
    """
    from .. import cluster, patches

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


