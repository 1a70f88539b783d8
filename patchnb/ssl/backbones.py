"""A narrow ResNet-18 for small images and the projection head of SimCLR / MoCo v2."""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) in its CIFAR form: 3x3 stride-1 stem, no max-pool, four stages of
    two basic blocks with widths ``w, 2w, 4w, 8w`` (strides 1, 2, 2, 2), global average pooling.
    ``width=64`` is the standard network; 16-32 is the cpu scale. Returns (B, 8 * width) features
    (``out_dim``)."""

    def __init__(self, in_channels: int = 1, width: int = 16, blocks: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        if width < 1 or in_channels < 1:
            raise ValueError(f"width and in_channels must be >= 1, got {width}, {in_channels}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        layers, c = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(c, c_out, stride=2 if (i > 0 and j == 0) else 1))
                c = c_out
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layers(self.stem(x))).flatten(1)


class ProjectionHead(nn.Module):
    """MLP projection head ``Linear -> [BN] -> ReLU -> Linear`` (SimCLR / MoCo v2); ``batchnorm=False``
    drops the BN of the hidden layer (patchwork's ``batchnorm`` switch, for small batches)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128, batchnorm: bool = True):
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batchnorm)]
        if batchnorm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim)]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
