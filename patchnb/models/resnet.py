"""THE ResNet-18 of the package (He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition",
CVPR 2016), in the CIFAR form used for small images: every self-supervised backbone
(:mod:`patchnb.ssl`), the EMP-SSL and SupCon chapters, and the ``resnet`` of the shape-bias chapter
(:class:`patchnb.models.vision.ResNet` = this backbone + a linear head).

Initialisation: PyTorch's defaults, nothing re-initialised. Every convolution (no bias) draws its
weights from Kaiming-uniform with ``a = sqrt(5)``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
fan_in = in_channels x 3 x 3 (x 1 x 1 for the projection shortcuts); every BatchNorm starts at weight 1,
bias 0 (running mean 0, variance 1). torchvision's ``resnet18`` instead re-draws the convolutions from
Kaiming-normal with ``mode="fan_out"`` (std sqrt(2 / (out_channels x 9))), about 2.4x the default's
scale at 3x3; the ``resnet`` of the shape-bias chapter used that until both ResNet-18s became this one.
With a seed fixed (``torch.manual_seed``) the weights are a function of the seed and the arguments.
"""

from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a ReLU between and after the residual sum; a 1x1 conv-BN shortcut
    when the stride or the width changes (He et al. 2016, Fig. 2 and option B)."""

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
    """ResNet-18 in its CIFAR form: 3x3 stride-1 stem (conv-BN-ReLU), no max-pool, four stages of
    ``blocks`` basic blocks with widths ``w, 2w, 4w, 8w`` (strides 1, 2, 2, 2), global average pooling.
    ``width=64`` is the standard network; 4-32 are the smoke and cpu scales. ``forward`` returns
    (B, 8 * width) features (``out_dim``); ``stem`` and ``layers`` give the last feature map (DetCon).
    Initialised with PyTorch's defaults (see the module docstring)."""

    def __init__(self, in_channels: int = 1, width: int = 16, blocks: tuple[int, ...] = (2, 2, 2, 2)):
        super().__init__()
        if width < 1 or in_channels < 1:
            raise ValueError(f"width and in_channels must be >= 1, got {width}, {in_channels}")
        if len(blocks) < 1 or any(int(n) < 1 for n in blocks):
            raise ValueError(f"blocks must be a non-empty list of block counts >= 1 per stage, got {blocks}")
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
