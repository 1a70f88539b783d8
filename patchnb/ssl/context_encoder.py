"""Context Encoder (Pathak et al., CVPR 2016, "Context Encoders: Feature Learning by Inpainting") as a
method for :func:`patchnb.train.fit`.

A random square region (side ``mask_fraction`` of the image side, random position per image) is
replaced by 0 (the dataset mean in normalised pixels); the backbone encodes the masked image, a
decoder (channel-wise fully connected bottleneck then transposed convolutions, as in the paper's
design, sized for small images) reconstructs the whole image, and the loss is the mean squared
error over the masked region (the paper's reconstruction loss, eq. 1). With ``adversarial_weight``
> 0 the paper's joint loss is used, L = (1 - w) L_rec + w L_adv (eq. 2-3, w = 0.001 in the paper):
a small convolutional discriminator D (part of the model, so checkpoints and resume cover it) learns
to tell real images from the inpainted ones, and the encoder-decoder is pushed to fool it. Both
players are trained by the one optimiser of :func:`patchnb.train.fit`: D's loss sees the
reconstruction detached, and the generator's term is computed through a detached copy of D's
parameters, so each part only receives the gradient of its own objective. The context around the
hole can also get a small weight (``context_weight``, 0 = the paper's masked-only L2). Scored like
the other methods by kNN accuracy of the backbone features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..models.resnet import ResNet18
from .augment import normalize
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


class Discriminator(nn.Module):
    """Image (B, C, H, W) -> one real/fake logit per image: three strided convs with LeakyReLU (no
    batch norm, as the inputs mix real and inpainted images), global average, linear."""

    def __init__(self, in_channels: int, ch: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, ch, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(2 * ch, 4 * ch, 3, 1, 1), nn.LeakyReLU(0.2))
        self.fc = nn.Linear(4 * ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x).mean((2, 3))).squeeze(1)


@dataclass
class ContextEncoder(_Method):
    """Inpainting of a random square hole; MSE on the hole (+ ``context_weight`` x MSE elsewhere),
    optionally joined with the adversarial loss (``adversarial_weight``, the paper's 0.001)."""

    mask_fraction: float = 0.5
    context_weight: float = 0.0
    adversarial_weight: float = 0.0
    name: str = "context_encoder"

    def __post_init__(self) -> None:
        if not 0 < self.mask_fraction < 1:
            raise ValueError(f"mask_fraction must be in (0, 1), got {self.mask_fraction}")
        if not 0 <= self.adversarial_weight < 1:
            raise ValueError(f"adversarial_weight must be in [0, 1) (the paper uses 0.001), got "
                             f"{self.adversarial_weight}")

    def make_model(self, in_channels: int = 1, width: int = 16, hidden_dim: int = 64, out_dim: int | None = None,
                   batchnorm: bool = True, image_size: tuple[int, int] = (28, 28)) -> SSLModel:
        backbone = ResNet18(in_channels, width)
        model = SSLModel(backbone, Decoder(backbone.out_dim, in_channels, image_size, ch=hidden_dim))
        if self.adversarial_weight:
            model.discriminator = Discriminator(in_channels)
        return model

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
        if not self.adversarial_weight:
            return loss, {}
        disc = getattr(model, "discriminator", None)
        if disc is None:
            raise ValueError("adversarial_weight > 0 needs the discriminator: build the model with this method's "
                             "make_model()")
        fake = torch.where(hole, recon, x)  # the context with the hole filled in
        real_logit, fake_logit = disc(x), disc(fake.detach())
        d_loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                  + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
        frozen = {k: v.detach() for k, v in disc.named_parameters()}
        g_logit = torch.func.functional_call(disc, frozen, (fake,))
        g_adv = F.binary_cross_entropy_with_logits(g_logit, torch.ones_like(g_logit))
        w = self.adversarial_weight
        total = (1 - w) * loss + w * g_adv + d_loss
        return total, {"reconstruction": float(loss.detach()), "discriminator": float(d_loss.detach())}


METHODS["context_encoder"] = ContextEncoder
