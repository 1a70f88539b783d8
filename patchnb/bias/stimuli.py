"""Synthetic cue-conflict stimuli at small resolution: a *shape* cue (the silhouette of a
Fashion-MNIST class) filled with a *texture* cue (a procedural texture, one per class).

This is a small, controllable stand-in for the stylized / cue-conflict images of Geirhos et al.,
"ImageNet-trained CNNs are biased towards texture; increasing shape bias improves accuracy and
robustness", ICLR 2019. Three kinds of sets:

* ``consistent``: the texture is the shape's class (both cues say the same thing);
* ``stylized``: the texture class is drawn independently of the shape class (texture carries no
  label information, as in Stylized-ImageNet);
* ``conflict``: shape class ``a`` with texture class ``b != a`` (the evaluation set of the shape bias).

Difficulty is a parameter: ``texture_strength`` (0 = flat silhouette, no texture at all; 1 = full
contrast texture) and ``noise`` (additive Gaussian pixel noise). When the textures are trivially
separable, every architecture ends up texture-biased on cue-consistent training, so the chapter
sweeps ``texture_strength`` (see DESIGN.md, pitfalls).

Everything is vectorised over images and seeded (same arguments -> same bytes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import FASHION_MNIST_CLASSES, ImageData, Normalization, Splits, channel_stats, check_choice
from ..filters import gaussian_blur

KINDS = ("consistent", "stylized", "conflict")
TEXTURES = ("stripes_h", "stripes_v", "stripes_diag", "stripes_anti", "checker", "dots", "rings", "grid",
            "blobs", "speckle")
FILL, AMPLITUDE, BACKGROUND = 0.6, 0.3, 0.0  # silhouette brightness, texture amplitude, background ([0, 1]);
# the texture never darkens the silhouette below 0.3, so the shape cue stays visible at full texture strength


def slug(name: str) -> str:
    """A class name usable in a file name of the ``shape1-texture2.png`` form: lower-case letters only
    (``"T-shirt/top"`` -> ``"tshirttop"``)."""
    s = re.sub(r"[^a-z]", "", name.lower())
    if not s:
        raise ValueError(f"class name {name!r} has no letters; it cannot name a stimulus file")
    return s


# ----------------------------------------------------------------------------- shapes (masks)


def fashion_mnist_masks(split: str = "train", n_per_class: int | None = None, threshold: int = 10,
                        seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Silhouettes of real Fashion-MNIST images: pixels brighter than ``threshold`` (0-255), with holes
    filled (dark prints inside a garment are still garment). Returns bool masks ``(N, 28, 28)``, int64
    labels and the class names; ``n_per_class`` takes a seeded random subset per class."""
    from scipy.ndimage import binary_fill_holes

    from ..data import load_fashion_mnist

    check_choice("split", split, ("train", "test"))
    data = load_fashion_mnist(split)
    labels = data.labels
    if n_per_class is not None:
        if n_per_class < 1:
            raise ValueError(f"n_per_class must be >= 1 or None, got {n_per_class}")
        g = torch.Generator().manual_seed(seed)
        keep = []
        for c in range(len(data.classes)):
            idx = torch.nonzero(labels == c).flatten()
            keep.append(idx[torch.randperm(len(idx), generator=g)[:n_per_class]])
        index = torch.cat(keep).sort().values
        data, labels = data.subset(index), labels[index]
    raw = data.images[:, 0].numpy() > threshold
    masks = np.stack([binary_fill_holes(m) for m in raw])
    return torch.from_numpy(masks), labels.clone(), data.classes


def synthetic_masks(n_classes: int = 10, size: int = 28, n_per_class: int = 20, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    """Geometric silhouettes for tests (no data files): class ``c`` is a regular polygon with
    ``c + 3`` corners (even classes) or a star with ``c // 2 + 3`` points (odd classes), named
    ``shapea``, ``shapeb``, ...; with seeded jitter of size, rotation and position.
    Returns bool masks ``(N, size, size)``, labels, names."""
    if n_classes < 2 or n_per_class < 1 or size < 8:
        raise ValueError(f"need n_classes >= 2, n_per_class >= 1, size >= 8; got {n_classes}, {n_per_class}, {size}")
    g = torch.Generator().manual_seed(seed)
    n = n_classes * n_per_class
    labels = torch.arange(n) % n_classes
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    cy = size / 2 + (torch.rand(n, generator=g) - 0.5) * size * 0.1
    cx = size / 2 + (torch.rand(n, generator=g) - 0.5) * size * 0.1
    radius = size * (0.32 + 0.08 * torch.rand(n, generator=g))
    rot = torch.rand(n, generator=g) * 2 * math.pi
    dy, dx = yy[None] - cy[:, None, None], xx[None] - cx[:, None, None]
    r, theta = torch.sqrt(dy ** 2 + dx ** 2), torch.atan2(dy, dx) - rot[:, None, None]
    star = (labels % 2 == 1)[:, None, None]
    corners = torch.where(star[:, 0, 0], labels // 2 + 3, labels + 3).float()[:, None, None]
    sector = 2 * math.pi / corners
    phase = torch.remainder(theta, sector) - sector / 2
    polygon = radius[:, None, None] * torch.cos(math.pi / corners) / torch.cos(phase)  # regular polygon boundary
    spikes = radius[:, None, None] * (0.55 + 0.45 * torch.cos(corners * theta).abs() ** 3)
    masks = torch.where(star, r <= spikes, r <= polygon)
    return masks, labels, tuple(f"shape{chr(ord('a') + c)}" for c in range(n_classes))


def fit_masks(masks: torch.Tensor, image_size: int) -> torch.Tensor:
    """Place ``(N, h, w)`` masks on an ``image_size`` canvas: centred zero padding when larger
    (28 -> 32 as CIFAR-sized inputs), nearest resizing otherwise."""
    n, h, w = masks.shape
    if image_size == h == w:
        return masks.bool()
    if image_size >= h and image_size >= w and (image_size - h) % 2 == 0 and (image_size - w) % 2 == 0:
        p, q = (image_size - h) // 2, (image_size - w) // 2
        return F.pad(masks.bool(), (q, q, p, p))
    return F.interpolate(masks[:, None].float(), size=(image_size, image_size), mode="nearest")[:, 0] > 0.5


# ----------------------------------------------------------------------------- textures


def make_textures(texture_labels: torch.Tensor, size: int, generator: torch.Generator,
                  period: float = 5.0, jitter: float = 0.15) -> torch.Tensor:
    """Textures in ``[-1, 1]``, ``(N, size, size)`` float32, one procedural family per class
    (:data:`TEXTURES`): oriented stripes (0, 90, 45, 135 degrees), checkerboard, dots, concentric
    rings, a thin-line grid, smooth blobs (low-pass noise) and speckle (white noise). Each image draws
    its own phase, and its period and orientation are jittered by ``jitter`` (relative), so a texture
    class is a distribution, not a template."""
    n = len(texture_labels)
    if n and (int(texture_labels.min()) < 0 or int(texture_labels.max()) >= len(TEXTURES)):
        raise ValueError(f"texture labels must be in 0..{len(TEXTURES) - 1}, got {texture_labels.min()}.."
                         f"{texture_labels.max()}")
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    out = torch.empty(n, size, size)
    angles = {"stripes_h": 90.0, "stripes_v": 0.0, "stripes_diag": 45.0, "stripes_anti": 135.0}
    for cls, name in enumerate(TEXTURES):
        idx = torch.nonzero(texture_labels == cls).flatten()
        m = len(idx)
        if m == 0:
            continue
        p = period * (1 + jitter * (2 * torch.rand(m, 1, 1, generator=generator) - 1))
        phase = 2 * math.pi * torch.rand(m, 1, 1, generator=generator)
        phase2 = 2 * math.pi * torch.rand(m, 1, 1, generator=generator)
        if name in angles:
            a = math.radians(angles[name]) + jitter * 0.5 * (2 * torch.rand(m, 1, 1, generator=generator) - 1)
            t = torch.sin(2 * math.pi * (torch.cos(a) * xx + torch.sin(a) * yy) / p + phase)
        elif name == "checker":
            t = torch.sign(torch.sin(2 * math.pi * xx / (1.4 * p) + phase) * torch.sin(2 * math.pi * yy / (1.4 * p)
                                                                                       + phase2))
        elif name == "dots":
            c = torch.cos(2 * math.pi * xx / p + phase) * torch.cos(2 * math.pi * yy / p + phase2)
            t = torch.where(c > 0.55, 1.0, -1.0)
        elif name == "rings":
            cy = size * torch.rand(m, 1, 1, generator=generator)
            cx = size * torch.rand(m, 1, 1, generator=generator)
            t = torch.sin(2 * math.pi * torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / p + phase)
        elif name == "grid":
            lx = torch.cos(2 * math.pi * xx / (1.2 * p) + phase) > 0.8
            ly = torch.cos(2 * math.pi * yy / (1.2 * p) + phase2) > 0.8
            t = torch.where(lx | ly, 1.0, -1.0)
        elif name == "blobs":
            sigma = period / 3  # low-pass noise: radius 3 sigma, wrapping around (a periodic texture)
            w = gaussian_blur(torch.randn(m, 1, size, size, generator=generator), sigma, max(1, int(3 * sigma)),
                              "circular")[:, 0]
            w = w / w.flatten(1).std(1).clamp_min(1e-6)[:, None, None]
            t = torch.tanh(1.5 * w)
        else:  # speckle
            t = torch.where(torch.rand(m, size, size, generator=generator) < 0.5, 1.0, -1.0)
        out[idx] = t.expand(m, size, size)
    return out


# ----------------------------------------------------------------------------- stimuli


@dataclass
class Stimuli:
    """A generated set: ``data`` (labels = the shape labels), plus both cue labels."""

    data: ImageData
    shape_labels: torch.Tensor
    texture_labels: torch.Tensor
    kind: str
    texture_strength: float

    def __len__(self) -> int:
        return len(self.data)

    def relabel(self, by: str = "shape") -> ImageData:
        """The images labelled by their shape or their texture class."""
        check_choice("by", by, ("shape", "texture"))
        return ImageData(self.data.images, self.shape_labels if by == "shape" else self.texture_labels,
                         self.data.classes)

    def write_image_folder(self, root: str | Path, by: str = "shape") -> Path:
        """Write ``root/<class>/<shape><i>-<texture><i>.png`` (the naming of Geirhos' cue-conflict
        stimuli, readable by :func:`patchnb.bias.geirhos.load_cue_conflict`), foldered by the
        ``shape`` or the ``texture`` class. Class names are slugged (letters only)."""
        from PIL import Image

        check_choice("by", by, ("shape", "texture"))
        root = Path(root)
        names = [slug(c) for c in self.data.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names {self.data.classes} collide once slugged: {names}")
        for name in names:
            (root / name).mkdir(parents=True, exist_ok=True)
        folder = self.shape_labels if by == "shape" else self.texture_labels
        images = self.data.images.numpy()
        for i in range(len(self)):
            s, t, f = int(self.shape_labels[i]), int(self.texture_labels[i]), int(folder[i])
            a = images[i, 0] if images.shape[1] == 1 else images[i].transpose(1, 2, 0)
            Image.fromarray(a).save(root / names[f] / f"{names[s]}{i}-{names[t]}{i}.png")
        return root


def make_stimuli(kind: str, n: int, masks: torch.Tensor, mask_labels: torch.Tensor,
                 classes: tuple[str, ...] | None = None, image_size: int = 32, texture_strength: float = 1.0,
                 noise: float = 0.0, period: float = 5.0, jitter: float = 0.15, channels: int = 1,
                 seed: int = 0) -> Stimuli:
    """Generate ``n`` stimuli of ``kind`` (``consistent``, ``stylized`` or ``conflict``).

    Shape labels are balanced over the classes of ``mask_labels`` (each image takes a random mask
    of its class); texture labels follow ``kind``. A pixel is ``0.6 + 0.3 * texture_strength *
    texture`` inside the silhouette and ``0`` outside, plus ``noise * N(0, 1)``, clipped to [0, 1]
    and stored as uint8. Deterministic in ``seed``.
    """
    check_choice("kind", kind, KINDS)
    check_choice("channels", channels, (1, 3))
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= texture_strength <= 1:
        raise ValueError(f"texture_strength must be in [0, 1], got {texture_strength}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if masks.ndim != 3 or mask_labels.shape != (masks.shape[0],):
        raise ValueError(f"masks must be (N, H, W) with N labels, got {tuple(masks.shape)} and "
                         f"{tuple(mask_labels.shape)}")
    n_classes = int(mask_labels.max()) + 1
    classes = tuple(classes) if classes is not None else tuple(f"class{c}" for c in range(n_classes))
    if len(classes) < n_classes:
        raise ValueError(f"{len(classes)} class names for {n_classes} shape classes")
    if n_classes > len(TEXTURES):
        raise ValueError(f"{n_classes} shape classes but only {len(TEXTURES)} texture classes ({', '.join(TEXTURES)})")
    counts = torch.bincount(mask_labels.long(), minlength=n_classes)
    if (counts == 0).any():
        raise ValueError(f"no mask for shape classes {torch.nonzero(counts == 0).flatten().tolist()}")
    g = torch.Generator().manual_seed(seed)
    shape = (torch.arange(n) % n_classes)[torch.randperm(n, generator=g)]
    order = torch.argsort(mask_labels.long(), stable=True)
    offsets = torch.cumsum(counts, 0) - counts
    pick = order[offsets[shape] + (torch.rand(n, generator=g) * counts[shape]).long().clamp_max(counts[shape] - 1)]
    if kind == "consistent":
        texture = shape.clone()
    elif kind == "stylized":
        texture = torch.randint(0, n_classes, (n,), generator=g)
    else:
        texture = (shape + torch.randint(1, n_classes, (n,), generator=g)) % n_classes
    m = fit_masks(masks[pick], image_size).float()
    tex = make_textures(texture, image_size, g, period=period, jitter=jitter)
    x = m * (FILL + AMPLITUDE * texture_strength * tex) + (1 - m) * BACKGROUND
    if noise > 0:
        x = x + noise * torch.randn(x.shape, generator=g)
    images = (x.clamp_(0, 1) * 255).round_().to(torch.uint8)[:, None]
    if channels == 3:
        images = images.expand(-1, 3, -1, -1).contiguous()
    data = ImageData(images, shape.clone(), classes[:n_classes])
    return Stimuli(data, shape, texture, kind, float(texture_strength))


def bias_splits(kind: str, train_masks: tuple, test_masks: tuple, n_train: int, n_val: int, n_test: int,
                image_size: int = 32, texture_strength: float = 1.0, noise: float = 0.0, seed: int = 0,
                **kwargs) -> Splits:
    """Train / val of ``kind`` (``consistent`` or ``stylized``) from the ``train_masks`` triple
    ``(masks, labels, classes)``, and a cue-consistent test set from ``test_masks`` (unseen
    silhouettes), labelled by shape, normalised with the train statistics; ready for
    :func:`patchnb.train.fit`."""
    check_choice("kind", kind, ("consistent", "stylized"))
    m, y, classes = train_masks
    common = dict(image_size=image_size, texture_strength=texture_strength, noise=noise, **kwargs)
    train = make_stimuli(kind, n_train, m, y, classes, seed=seed, **common).data
    val = make_stimuli(kind, n_val, m, y, classes, seed=seed + 1_000_003, **common).data
    tm, ty, tclasses = test_masks
    test = make_stimuli("consistent", n_test, tm, ty, tclasses, seed=seed + 2_000_003, **common).data
    norm: Normalization = channel_stats(train.images, cache=False)
    return Splits(f"stimuli-{kind}", train, val, test, norm)


__all__ = ["FASHION_MNIST_CLASSES", "KINDS", "TEXTURES", "Stimuli", "bias_splits", "fashion_mnist_masks",
           "fit_masks", "make_stimuli", "make_textures", "slug", "synthetic_masks"]
