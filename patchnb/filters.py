"""Image filters shared by the augmentations and the synthetic stimuli (a kernel-layer module: it
imports nothing from patchnb).

:func:`gaussian_blur` is the one Gaussian blur of the package: SimCLR's blur augmentation
(:class:`patchnb.ssl.Augment`, one sigma per image, reflect padding, a kernel of ~10% of the image
side) and the low-pass noise of the shape-bias textures (:func:`patchnb.bias.stimuli.make_textures`,
one sigma, circular padding, radius 3 sigma) both call it.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

PADDINGS = ("reflect", "circular", "replicate", "constant")


def gaussian_kernel1d(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    r"""Normalised 1-D Gaussian weights :math:`w_i \propto \exp(-i^2 / (2\sigma^2))` for
    :math:`i = -r..r`, one row per entry of ``sigma`` (shape (S,)): returns (S, 2r + 1) in ``sigma``'s
    dtype and device."""
    r = torch.arange(2 * radius + 1, device=sigma.device, dtype=sigma.dtype) - radius
    ker = torch.exp(-(r[None] ** 2) / (2 * sigma.view(-1, 1) ** 2))
    return ker / ker.sum(1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: float | torch.Tensor, radius: int, padding: str = "reflect") -> torch.Tensor:
    """Separable Gaussian blur of a float batch ``x`` (B, C, H, W): a horizontal then a vertical pass of
    :func:`gaussian_kernel1d` (``radius`` pixels each side), padded with ``padding`` (``"reflect"``,
    ``"circular"``, ``"replicate"`` or ``"constant"`` zeros).

    ``sigma`` is one standard deviation in pixels for the whole batch (a number) or one per image (a (B,)
    tensor; each image is then convolved with its own kernel by one grouped convolution per direction).
    Returns a tensor of ``x``'s shape and dtype."""
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float (B, C, H, W) batch, got {x.dtype} {tuple(x.shape)}")
    if isinstance(radius, bool) or not isinstance(radius, numbers.Integral) or radius < 1:
        raise ValueError(f"radius must be an integer >= 1, got {radius!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r} is not supported; allowed values: {', '.join(map(repr, PADDINGS))}")
    b, c, h, w = x.shape
    per_image = torch.is_tensor(sigma) and sigma.ndim >= 1
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if not bool((s > 0).all()) or not bool(torch.isfinite(s).all()):
        raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
    if per_image and len(s) != b:
        raise ValueError(f"sigma holds {len(s)} values for a batch of {b} images; give one number or one per image")
    k = 2 * radius + 1
    pad_x, pad_y = (radius, radius, 0, 0), (0, 0, radius, radius)
    if per_image:
        ker = gaussian_kernel1d(s, radius).repeat_interleave(c, 0)  # (B*C, k): each image's kernel per channel
        y = x.reshape(1, b * c, h, w)
        y = F.conv2d(F.pad(y, pad_x, mode=padding), ker.view(b * c, 1, 1, k), groups=b * c)
        y = F.conv2d(F.pad(y, pad_y, mode=padding), ker.view(b * c, 1, k, 1), groups=b * c)
        return y.view(b, c, h, w)
    ker = gaussian_kernel1d(s[:1], radius)  # (1, k): one kernel for every image and channel
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, pad_x, mode=padding), ker.view(1, 1, 1, k))
    y = F.conv2d(F.pad(y, pad_y, mode=padding), ker.view(1, 1, k, 1))
    return y.view(b, c, h, w)
