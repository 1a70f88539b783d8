"""Context Encoder (Pathak et al., CVPR 2016, "Context Encoders: Feature Learning by Inpainting") as a
method for :func:`patchnb.train.fit`.

A random square region (side ``mask_fraction`` of the image side, random position per image) is
replaced by 0 (the dataset mean in normalised pixels); the backbone encodes the masked image, a
decoder (channel-wise fully connected bottleneck then transposed convolutions, as in the paper's
design, sized for small images) reconstructs the whole image, and the loss is the mean squared
error over the masked region (the paper's reconstruction loss, eq. 1). The paper's adversarial term
(weight 0.001) is left out, as in patchwork; unlike patchwork, the context around the hole also
gets a small weight (``context_weight``, 0 = the paper's masked-only L2). Scored like the other
methods by kNN accuracy of the backbone features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .augment import normalize
from .backbones import ResNet18
from .methods import METHODS, SSLModel, _device, _Method


class Decoder(nn.Module):
    """Features (B, D) -> image (B, C, H, W): Linear to a (ch, s, s) map, two x2 transposed convs,
    bilinear resize to (H, W)."""

    def __init__(self, in_dim: int, out_channels: int, image_size: tuple[int, int], ch: int = 64, start: int = 7):
        super().__init__()
        self.ch, self.start, self.image_size = ch, start, tuple(image_size)
        self.fc = nn.Linear(in_dim, ch * start * start)
        self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1), nn.BatchNorm2d(ch // 2), nn.ReLU(),
                                nn.ConvTranspose2d(ch // 2, out_channels, 4, 2, 1))
        self.out_dim = out_channels

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.up(self.fc(h).view(-1, self.ch, self.start, self.start))
        return F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False)


@dataclass
class ContextEncoder(_Method):
    """Inpainting of a random square hole; MSE on the hole (+ ``context_weight`` x MSE elsewhere)."""

    mask_fraction: float = 0.5
    context_weight: float = 0.0
    name: str = "context_encoder"

    def __post_init__(self) -> None:
        if not 0 < self.mask_fraction < 1:
            raise ValueError(f"mask_fraction must be in (0, 1), got {self.mask_fraction}")

    def make_model(self, in_channels: int = 1, width: int = 16, hidden_dim: int = 64, out_dim: int | None = None,
                   batchnorm: bool = True, image_size: tuple[int, int] = (28, 28)) -> SSLModel:
        backbone = ResNet18(in_channels, width)
        return SSLModel(backbone, Decoder(backbone.out_dim, in_channels, image_size, ch=hidden_dim))

    def mask(self, shape, generator, device) -> torch.Tensor:
        """(B, 1, H, W) boolean hole masks, one random square per image."""
        b, _, h, w = shape
        sh, sw = max(1, round(self.mask_fraction * h)), max(1, round(self.mask_fraction * w))
        top = torch.randint(0, h - sh + 1, (b,), generator=generator).to(device)
        left = torch.randint(0, w - sw + 1, (b,), generator=generator).to(device)
        rows = torch.arange(h, device=device).view(1, h, 1)
        cols = torch.arange(w, device=device).view(1, 1, w)
        m = ((rows >= top.view(-1, 1, 1)) & (rows < (top + sh).view(-1, 1, 1))
             & (cols >= left.view(-1, 1, 1)) & (cols < (left + sw).view(-1, 1, 1)))
        return m.unsqueeze(1)

    def step(self, model, images, labels, splits, generator):
        dev = _device(model)
        x = normalize(self.augment(images.to(dev).float().div_(255), generator), splits.norm)
        hole = self.mask(x.shape, generator, dev)
        recon = model(x.masked_fill(hole, 0.0), project=True)
        err = (recon - x).pow(2).mean(1, keepdim=True)
        holef = hole.float()
        loss = (err * holef).sum() / holef.sum().clamp_min(1)
        if self.context_weight:
            loss = loss + self.context_weight * (err * (1 - holef)).sum() / (1 - holef).sum().clamp_min(1)
        return loss, {}


METHODS["context_encoder"] = ContextEncoder
