"""DetCon_S (Hénaff et al., ICCV 2021, "Efficient Visual Pretraining with Contrastive Detection") as a
method for :func:`patchnb.train.fit`, in patchwork's form (SimCLR/HCL-style loss over segments).

Each image is segmented by Felzenszwalb's graph method (scikit-image; ``scale`` drawn uniformly in
[0.5, 1.5] x ``mean_scale`` per image, ``min_size`` = that scale, as patchwork does) on its
grayscale pixels; ``num_samples`` segments are drawn per image with probability proportional to
their area (with replacement when the image has fewer segments). The two views share the image's
masks: the geometric part of :class:`Augment` (crop, flip) is applied to the image and its masks
together, the photometric part to the image only. The backbone's last feature map is average-pooled
inside each (downsampled) mask, projected, and the segment vectors are contrasted across the two
views with :func:`hcl` (``beta = tau_plus = 0``: NT-Xent): a segment's positive is the same segment
in the other view, its negatives are all other segments of the batch. Segments cropped out of a
view (mask weight below ``min_mask``) are left out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..losses import hcl
from ..train import unwrap
from .augment import normalize
from .methods import METHODS, _device, _Method


def segment_masks(images: torch.Tensor, num_samples: int, mean_scale: float, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Felzenszwalb segments of uint8 ``images`` (B, C, H, W) -> (B, num_samples, H, W) float masks,
    sampled by area (``mean_scale = 0``: a square grid of ``num_samples`` cells instead)."""
    from skimage.segmentation import felzenszwalb  # scikit-image is a heavy import only DetCon needs

    b, _, h, w = images.shape
    out = torch.zeros(b, num_samples, h, w)
    gray = images.float().mean(1).numpy() / 255.0
    for i in range(b):
        if mean_scale > 0:
            scale = float(mean_scale * (0.5 + torch.rand(1, generator=generator)))
            seg = torch.from_numpy(felzenszwalb(gray[i], scale=scale, sigma=0.5, min_size=max(1, int(scale))))
        else:
            n = max(1, int(round(num_samples ** 0.5)))
            rows = (torch.arange(h) * n // h).view(-1, 1)
            cols = (torch.arange(w) * n // w).view(1, -1)
            seg = rows * n + cols
        ids, area = torch.unique(seg, return_counts=True)
        replace = len(ids) < num_samples
        pick = torch.multinomial(area.float(), num_samples, replacement=replace, generator=generator)
        out[i] = (seg[None] == ids[pick].view(-1, 1, 1)).float()
    return out


@dataclass
class DetCon(_Method):
    """DetCon_S with Felzenszwalb masks and an NT-Xent / HCL loss over segment vectors."""

    temperature: float = 0.1
    beta: float = 0.0
    tau_plus: float = 0.0
    mean_scale: float = 50.0
    num_samples: int = 4
    min_mask: float = 1e-3
    name: str = "detcon"

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.mean_scale < 0:
            raise ValueError(f"mean_scale must be >= 0 (0 = square grid), got {self.mean_scale}")

    def _view(self, x, masks, generator):
        c = x.shape[1]
        both = self.augment._crop_flip(torch.cat([x, masks], 1), generator, self.augment.crop_scale)
        return self.augment._photometric(both[:, :c].contiguous(), generator).clamp_(0, 1), both[:, c:]

    def _segment_vectors(self, model, x, masks):
        m = unwrap(model)
        fmap = m.backbone.layers(m.backbone.stem(x))  # (B, D, h, w)
        mk = F.adaptive_avg_pool2d(masks, fmap.shape[-2:])  # (B, S, h, w)
        weight = mk.flatten(2).sum(2)  # (B, S)
        pooled = torch.einsum("bshw,bdhw->bsd", mk, fmap) / weight.clamp_min(1e-6)[..., None]
        b, s, d = pooled.shape
        return m.projector(pooled.reshape(b * s, d)), weight.reshape(b * s)

    def step(self, model, images, labels, splits, generator):
        dev = _device(model)
        masks = segment_masks(images, self.num_samples, self.mean_scale, generator).to(dev)
        x = images.to(dev).float().div_(255)
        (x1, m1), (x2, m2) = self._view(x, masks, generator), self._view(x, masks, generator)
        z, w = self._segment_vectors(model, normalize(torch.cat([x1, x2]), splits.norm), torch.cat([m1, m2]))
        z1, z2 = z.chunk(2)
        w1, w2 = w.chunk(2)
        area = float(masks.shape[-1] * masks.shape[-2])
        keep = (w1 / area > self.min_mask) & (w2 / area > self.min_mask)
        if int(keep.sum()) < 2:
            raise RuntimeError(f"{self.name}: fewer than 2 segments survived the crops; lower crop strength")
        loss = hcl(z1[keep], z2[keep], self.temperature, self.beta, self.tau_plus)
        return loss, {"segments_kept": float(keep.float().mean()), "segments": float(np.prod(keep.shape))}


METHODS["detcon"] = DetCon
