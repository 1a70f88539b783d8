"""One augmentation pipeline for every self-supervised method, batched on any device.

:class:`Augment` holds SimCLR-style augmentation parameters (random resized crop, horizontal flip,
colour jitter, grayscale, Gaussian blur, solarisation), each applied per image with its own
probability. It works on float batches in [0, 1] pixels ``(B, C, H, W)`` on the batch's device,
without PIL: the crop (and flip) is one ``affine_grid`` + ``grid_sample`` for the whole batch,
colour operations are per-image broadcasts, blur is one grouped convolution with a per-image
kernel. All randomness is drawn from a CPU ``torch.Generator`` (the training loop's), so results
are reproducible and identical across devices up to float rounding.

For 1-channel images (Fashion-MNIST) the colour jitter reduces to brightness and contrast;
saturation, hue and grayscale are identities. :meth:`Augment.patches` is EMP-SSL's many-patch
variant: ``n_patches`` random resized crops (scale 0.25-1 by default) per image, each upsampled
to the input size and augmented independently.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..filters import gaussian_blur


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")


def _check_range(name: str, r, lo: float, hi: float) -> None:
    if len(r) != 2 or not lo <= r[0] <= r[1] <= hi:
        raise ValueError(f"{name} must be a pair (low, high) with {lo} <= low <= high <= {hi}, got {r}")


@dataclass
class Augment:
    """Augmentation parameters shared by SimCLR, MoCo v2, HCL, SupCon and EMP-SSL.

    Defaults follow SimCLR's CIFAR recipe (crop scale 0.2-1 as in MoCo v2 / SupCon, jitter 0.4 with
    p = 0.8, grayscale p = 0.2, blur p = 0.5, no solarisation). The colour-jitter order is fixed
    (brightness, contrast, saturation, hue), where torchvision permutes it randomly.
    """

    crop_prob: float = 1.0
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_prob: float = 0.5
    jitter_prob: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_prob: float = 0.2
    blur_prob: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_prob: float = 0.0
    solarize_threshold: float = 0.5

    def __post_init__(self) -> None:
        for name in ("crop_prob", "flip_prob", "jitter_prob", "grayscale_prob", "blur_prob", "solarize_prob"):
            _check_prob(name, getattr(self, name))
        self.crop_scale, self.crop_ratio = tuple(self.crop_scale), tuple(self.crop_ratio)
        self.blur_sigma = tuple(self.blur_sigma)
        _check_range("crop_scale", self.crop_scale, 1e-6, 1.0)
        _check_range("crop_ratio", self.crop_ratio, 1e-6, math.inf)
        _check_range("blur_sigma", self.blur_sigma, 1e-6, math.inf)
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if not 0 <= self.solarize_threshold <= 1:
            raise ValueError(f"solarize_threshold must be in [0, 1], got {self.solarize_threshold}")

    @classmethod
    def emp_ssl(cls, **kw) -> Augment:
        """EMP-SSL's patch augmentation (Tong et al. 2023 code, ``dataset/aug.py``'s
        ``ContrastiveLearningViewGenerator``): square crops of the fixed scale 0.25, flip, jitter
        (0.4, 0.4, 0.4, 0.2) p = 0.8, grayscale p = 0.2, blur p = 0.1 (sigma 0.1-2), solarize p = 0.1.
        Deviations: the blur kernel is this module's (~10% of the side; the code's PIL blur is wider), the
        jitter order is fixed, solarisation inverts pixels >= 0.5 (PIL: >= 128 of 255)."""
        d = dict(crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), hue=0.2, blur_prob=0.1, solarize_prob=0.1)
        d.update(kw)
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    # ------------------------------------------------------------------ the pipeline

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a float batch in [0, 1] ``(B, C, H, W)``; returns a new tensor of the same shape."""
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"Augment expects a float (B, C, H, W) batch in [0, 1], got {x.dtype} {tuple(x.shape)}")
        x = self._crop_flip(x, generator, self.crop_scale)
        return self._photometric(x, generator).clamp_(0, 1)

    def patches(self, x: torch.Tensor, n_patches: int, generator: torch.Generator | None = None,
                scale: tuple[float, float] = (0.25, 1.0)) -> torch.Tensor:
        """EMP-SSL's many-patch views: ``n_patches`` independent random resized crops of each image
        (area fraction in ``scale``), upsampled to the input size, then flipped / colour-augmented.
        Returns ``(n_patches, B, C, H, W)``; patch ``i`` of every image is ``out[i]``."""
        if n_patches < 1:
            raise ValueError(f"n_patches must be >= 1, got {n_patches}")
        _check_range("scale", tuple(scale), 1e-6, 1.0)
        b = x.shape[0]
        rep = x.repeat(n_patches, 1, 1, 1)  # (n*B, ...) patch-major
        rep = self._crop_flip(rep, generator, tuple(scale), force_crop=True)
        return self._photometric(rep, generator).clamp_(0, 1).view(n_patches, b, *x.shape[1:])

    # ------------------------------------------------------------------ pieces

    def _crop_flip(self, x, generator, scale, force_crop: bool = False):
        b, _, h, w = x.shape
        dev = x.device
        area = torch.empty(b).uniform_(scale[0], scale[1], generator=generator)
        lr = torch.log(torch.tensor(self.crop_ratio))
        ratio = torch.exp(torch.empty(b).uniform_(float(lr[0]), float(lr[1]), generator=generator))
        cw = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width / image width
        ch = torch.sqrt(area / ratio).clamp(max=1.0)
        ux, uy = torch.rand(b, generator=generator), torch.rand(b, generator=generator)
        crop = torch.rand(b, generator=generator) < (1.0 if force_crop else self.crop_prob)
        flip = torch.rand(b, generator=generator) < self.flip_prob
        cw, ch = torch.where(crop, cw, 1.0), torch.where(crop, ch, 1.0)
        cx, cy = (2 * ux - 1) * (1 - cw), (2 * uy - 1) * (1 - ch)  # crop centre, normalised coordinates
        if not (crop.any() or flip.any()):
            return x
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = torch.where(flip, -cw, cw)
        theta[:, 0, 2] = cx
        theta[:, 1, 1] = ch
        theta[:, 1, 2] = cy
        grid = F.affine_grid(theta.to(dev, x.dtype), [b, x.shape[1], h, w], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _photometric(self, x, generator):
        b, c = x.shape[:2]
        dev = x.device

        def draw(p):
            return (torch.rand(b, generator=generator) < p).to(dev).view(b, 1, 1, 1)

        def uniform(lo, hi):
            return torch.empty(b).uniform_(lo, hi, generator=generator).to(dev, x.dtype).view(b, 1, 1, 1)

        jit = draw(self.jitter_prob)
        fb = uniform(1 - self.brightness, 1 + self.brightness)
        fc = uniform(1 - self.contrast, 1 + self.contrast)
        fs = uniform(1 - self.saturation, 1 + self.saturation)
        fh = uniform(-self.hue, self.hue)
        gray_p, blur_p, sol_p = draw(self.grayscale_prob), draw(self.blur_prob), draw(self.solarize_prob)
        sigma = uniform(*self.blur_sigma)
        if self.jitter_prob > 0:
            y = (x * fb).clamp(0, 1)
            m = _gray(y).mean((1, 2, 3), keepdim=True)
            y = ((y - m) * fc + m).clamp(0, 1)
            if c == 3:
                g = _gray(y)
                y = (g + (y - g) * fs).clamp(0, 1)
                y = _hue_shift(y, fh).clamp(0, 1)
            x = torch.where(jit, y, x)
        if c == 3 and self.grayscale_prob > 0:
            x = torch.where(gray_p, _gray(x).expand_as(x), x)
        if self.blur_prob > 0:
            x = torch.where(blur_p, gaussian_blur(x, sigma.view(b), _blur_radius(x), "reflect"), x)
        if self.solarize_prob > 0:
            x = torch.where(sol_p & (x >= self.solarize_threshold), 1 - x, x)
        return x


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma (B, 1, H, W); the image itself for one channel."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _hue_shift(x: torch.Tensor, frac: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by ``frac`` of a turn per image, as a rotation of the chroma plane in YIQ."""
    to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          device=x.device, dtype=x.dtype)
    to_rgb = torch.linalg.inv(to_yiq)
    yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
    a = 2 * math.pi * frac.view(-1)
    cos, sin = torch.cos(a).view(-1, 1, 1), torch.sin(a).view(-1, 1, 1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], cos * i - sin * q, sin * i + cos * q], 1)
    return torch.einsum("ij,bjhw->bihw", to_rgb, yiq)


def _blur_radius(x: torch.Tensor) -> int:
    """SimCLR's blur kernel: ~10% of the image side, odd, at least 3 taps (radius >= 1)."""
    k = max(3, int(0.1 * min(x.shape[-2:])) // 2 * 2 + 1)
    return k // 2


def normalize(x: torch.Tensor, norm) -> torch.Tensor:
    """[0, 1] pixels -> the dataset's normalised pixels (``norm`` is a :class:`patchnb.data.Normalization`)."""
    mean = torch.tensor(norm.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std
