"""CNN baselines of Brutzkus et al., "Efficient Learning of CNNs using Patch Based Features",
ICML 2022 (Table 4): VGG-like networks of depth 1-4 trained end to end. The vanilla one-hidden-layer
CNN of Table 1 is :class:`~patchnb.models.patch.LocallyLinearNetwork` with ``embedding=None``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..embedding import pooled_size
from .patch import LocallyLinearNetwork, _per_layer


def vanilla_cnn(image_shape: Sequence[int], n_classes: int = 10, channels: int = 1024, patch_size: int = 5,
                **head) -> LocallyLinearNetwork:
    """Table 1's vanilla 1-hidden-layer CNN: the locally linear network's head on a learnable conv + ReLU."""
    return LocallyLinearNetwork(None, image_shape, n_classes, conv_channels=channels, patch_size=patch_size, **head)


class VGGLike(nn.Module):
    """``depth`` blocks conv(kernel_sizes[i], padding[i]) [-> BatchNorm] -> ReLU with ``channels`` filters,
    then [AvgPool(pool_size, pool_stride, ceil)] -> 1x1 bottleneck -> [ReLU] -> an MLP with
    ``mlp_hidden_layers`` hidden layers of ``mlp_width`` (the original default is 1 of 128; the
    Table 4 commands use 0) -> ``n_classes``. Per-layer lists must have ``depth`` entries."""

    def __init__(self, image_shape: Sequence[int], n_classes: int = 10, depth: int = 1, channels: int = 1024,
                 kernel_sizes: int | Sequence[int] = 5, padding: int | Sequence[int] = 0,
                 use_batch_norm: bool | Sequence[bool] = True, use_pool: bool = True, pool_size: int = 4,
                 pool_stride: int = 4, bottleneck: int = 32, relu_after_bottleneck: bool = True,
                 mlp_hidden_layers: int = 0, mlp_width: int = 128) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth={depth} must be >= 1")
        if mlp_hidden_layers < 0:
            raise ValueError(f"mlp_hidden_layers={mlp_hidden_layers} must be >= 0")
        kernel_sizes = _per_layer("kernel_sizes", kernel_sizes, depth)
        padding = _per_layer("padding", padding, depth)
        use_batch_norm = _per_layer("use_batch_norm", use_batch_norm, depth)
        c, h, w = image_shape
        self.image_shape = tuple(image_shape)
        blocks = []
        for ks, pad, bn in zip(kernel_sizes, padding, use_batch_norm):
            h, w = h + 2 * pad - ks + 1, w + 2 * pad - ks + 1
            if h < 1 or w < 1:
                raise ValueError(f"kernel_sizes={kernel_sizes} with padding={padding} shrink the "
                                 f"{image_shape[1]}x{image_shape[2]} input to nothing")
            blocks += [nn.Conv2d(c, channels, ks, padding=pad)] + ([nn.BatchNorm2d(channels)] if bn else []) + \
                [nn.ReLU()]
            c = channels
        self.features = nn.Sequential(*blocks)
        self.pool = (pool_size, pool_stride) if use_pool else None
        if use_pool:
            h, w = pooled_size(h, pool_size, pool_stride), pooled_size(w, pool_size, pool_stride)
        relu = nn.ReLU() if relu_after_bottleneck else nn.Identity()
        self.bottleneck = nn.Sequential(nn.Conv2d(c, bottleneck, 1), relu)
        mlp, d = [], bottleneck * h * w
        for _ in range(mlp_hidden_layers):
            mlp += [nn.Linear(d, mlp_width), nn.ReLU()]
            d = mlp_width
        self.mlp = nn.Sequential(*mlp, nn.Linear(d, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"input must be (B, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}")
        x = self.features(x)
        if self.pool is not None:
            x = F.avg_pool2d(x, *self.pool, ceil_mode=True)
        return self.mlp(self.bottleneck(x).flatten(1))
