"""The projection head of SimCLR / MoCo v2 / SupCon / EMP-SSL (the backbone is
:class:`patchnb.models.ResNet18`)."""

from __future__ import annotations

import torch
from torch import nn


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
