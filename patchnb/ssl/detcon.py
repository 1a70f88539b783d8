"""DetCon_S (Hénaff et al., ICCV 2021, "Efficient Visual Pretraining with Contrastive Detection") as a
method for :func:`patchnb.train.fit`, in patchwork's form (SimCLR/HCL-style loss over segments).

Each image is segmented by Felzenszwalb's graph method (scikit-image; ``scale`` drawn uniformly in
[0.5, 1.5] x ``mean_scale`` per image, ``min_size`` = that scale, as patchwork does) on its
grayscale pixels; ``num_samples`` segments are drawn per image with probability proportional to
their area (with replacement when the image has fewer segments). The two views share the image's
masks: the geometric part of :class:`Augment` (crop, flip) is applied to the image and its masks
together, the photometric part to the image only. The backbone's last feature map is average-pooled
inside each (downsampled) mask, projected, and the segment vectors are contrasted across the two
views with :func:`patchnb.losses.detcon_loss` (DetCon eq. 3): a segment's positives are the same
segment in the other view, its negatives all other segments of the batch. Segments cropped out of a
view (mask weight below ``min_mask``) are left out of the loss.

Segments sampled with replacement repeat a mask id. As in the official code (``deepmind/detcon``,
``byol_nce_detcon``), every copy of the same mask in the other view is a positive, the copies in the
anchor's own view are left out of its denominator (never negatives), and each distinct mask weighs one
however often it was drawn. With the HCL terms on (``beta`` or ``tau_plus`` > 0, patchwork's
extension, whose estimator has one positive per anchor) the repeats are dropped instead: each distinct
segment of an image enters :func:`patchnb.losses.hcl` once.

Which masks, against the official code (``deepmind/detcon``, ``detcon_b.py``): ``create_binary_mask``
average-pools each view's own (augmented) Felzenszwalb map to the feature grid and gives every cell to
its majority mask (argmax, one-hot); ``sample_masks`` then draws ``n_random_vectors = 16`` mask ids per
image *uniformly over the masks present* in that grid (``categorical`` of ``log(exists + 1e-11)``, with
replacement), **separately for each view** (one ``hk.next_rng_key()`` per view; the online and target
networks share the key, so their ids agree), and pools over the drawn masks; a mask drawn in one view and
not in the other has no positive and weighs zero in the loss. patchwork
(``patchwork.feature._detcon_utils._get_segments``) draws by area (``p`` proportional to area + 1),
without replacement (uniformly with replacement when there are too few segments), once per image, and both
views share them. ``mask_sampling`` picks: ``"area_shared"`` (the default, patchwork's way, drawn by area
on the un-augmented map, with replacement only when the image has fewer segments than ``num_samples``;
**deviation** from the official sampling, named) or ``"uniform_per_view"`` (the official way: each view's
cropped masks on the feature grid, the majority cell assignment, ``num_samples`` uniform draws per view
among the present masks, pooled over those hard masks; the loss gets the two views' ids, ``ids1 != ids2``;
HCL's terms are refused with it, their estimator needing one positive per anchor).

The segmentation of an image is computed once and cached (``cache_masks``, on by default): a compact
label map (uint8 when it has under 256 segments) per distinct image, keyed by an exact fingerprint of
its bytes, kept on the method object for the life of the run. Each image's Felzenszwalb ``scale`` is
drawn once, from a hash of its bytes, so an image has one segmentation whenever and however often it
is segmented: a cached run equals an uncached one (``cache_masks=False`` re-segments every step), and
a resumed run rebuilds the same cache, so nothing of it needs to be in the checkpoint. **Deviation**
from patchwork, which segments in its input pipeline with a new random scale every time an image is
drawn; the official code also segments each image once, ahead of training
(``generate_fh_masks_for_imagenet.py``, one fixed scale for the whole dataset). Which segments are
sampled, and the augmentations, are still drawn anew every step from the training generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..losses import detcon_loss, hcl
from ..train import unwrap
from .augment import normalize
from .deepcluster import _fingerprint
from .methods import METHODS, _device, _Method

#: how DetCon draws its masks (see the module docstring)
MASK_SAMPLING = ("area_shared", "uniform_per_view")


def _unit_draws(fingerprints: torch.Tensor) -> np.ndarray:
    """A uniform number in [0, 1) per image fingerprint (splitmix64 of it): the image's own draw,
    the same whenever and wherever the image is segmented."""
    x = fingerprints.cpu().numpy().astype(np.uint64)  # two's complement: negative int64 wraps
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53


def felzenszwalb_segments(images: torch.Tensor, mean_scale: float, num_samples: int = 4) -> torch.Tensor:
    """Segment label maps (B, H, W) int64, labels 0..n-1, of uint8 ``images`` (B, C, H, W): Felzenszwalb
    on the grayscale pixels in [0, 1] with ``scale = mean_scale * (0.5 + u)``, ``u`` in [0, 1) drawn
    from the image's bytes (:func:`_unit_draws`), ``sigma = 0.5``, ``min_size = scale``;
    ``mean_scale = 0``: a square grid of ``round(sqrt(num_samples))**2`` cells instead."""
    b, _, h, w = images.shape
    if mean_scale <= 0:
        n = max(1, int(round(num_samples ** 0.5)))
        grid = (torch.arange(h) * n // h).view(-1, 1) * n + (torch.arange(w) * n // w).view(1, -1)
        return grid.expand(b, h, w).clone()
    from skimage.segmentation import felzenszwalb  # scikit-image is a heavy import only DetCon needs

    gray = images.float().mean(1).numpy() / 255.0
    scales = mean_scale * (0.5 + _unit_draws(_fingerprint(images)))
    out = torch.empty(b, h, w, dtype=torch.long)
    for i in range(b):
        s = float(scales[i])
        out[i] = torch.from_numpy(felzenszwalb(gray[i], scale=s, sigma=0.5, min_size=max(1, int(s))))
    return out


def sample_masks(segments: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` segments per label map of ``segments`` (B, H, W), drawn with probability
    proportional to their area (with replacement when a map has fewer segments) -> (B, num_samples, H, W)
    float masks and the (B, num_samples) labels drawn."""
    b, h, w = segments.shape
    masks = torch.zeros(b, num_samples, h, w)
    picked = torch.empty(b, num_samples, dtype=torch.long)
    for i in range(b):
        ids, area = torch.unique(segments[i], return_counts=True)
        pick = torch.multinomial(area.float(), num_samples, replacement=len(ids) < num_samples, generator=generator)
        picked[i] = ids[pick]
        masks[i] = (segments[i][None] == picked[i].view(-1, 1, 1)).float()
    return masks, picked


def feature_grid_masks(masks: torch.Tensor, size) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``create_binary_mask``: the (B, K, H, W) one-hot (or cropped, soft) masks of a view
    average-pooled to the feature grid ``size`` (h, w), each cell given to its majority mask (argmax; ties
    to the lowest id) -> ``(hard (B, K, h, w) one-hot masks, present (B, K) bool: masks owning a cell)``."""
    mk = F.adaptive_avg_pool2d(masks, size)
    hard = F.one_hot(mk.argmax(1), masks.shape[1]).permute(0, 3, 1, 2).to(masks.dtype)
    return hard, hard.flatten(2).sum(2) > 1e-3


def sample_present_masks(present: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
                         ) -> torch.Tensor:
    """The official ``sample_masks``: ``num_samples`` mask ids per row of ``present`` (B, K) bool, drawn
    uniformly over the present masks, with replacement (the official ``1e-11`` floor of absent masks is
    left out: they are never drawn) -> (B, num_samples) int64, on the CPU."""
    p = present.detach().cpu().double()
    if bool((p.sum(1) == 0).any()):
        raise ValueError("a view has no mask present on the feature grid")
    return torch.multinomial(p, num_samples, replacement=True, generator=generator)


def segment_masks(images: torch.Tensor, num_samples: int, mean_scale: float, generator: torch.Generator | None = None
                  ) -> torch.Tensor:
    """Felzenszwalb segments of uint8 ``images`` (B, C, H, W) -> (B, num_samples, H, W) float masks,
    sampled by area (``mean_scale = 0``: a square grid of ``num_samples`` cells instead):
    :func:`felzenszwalb_segments` then :func:`sample_masks`."""
    return sample_masks(felzenszwalb_segments(images, mean_scale, num_samples), num_samples, generator)[0]


def _compact(seg: torch.Tensor) -> np.ndarray:
    top = int(seg.max())
    dtype = np.uint8 if top < 2**8 else np.int16 if top < 2**15 else np.int32
    return seg.numpy().astype(dtype)


@dataclass
class DetCon(_Method):
    """DetCon_S with Felzenszwalb masks (segmented once per image, cached) and the DetCon loss (an
    NT-Xent over segment vectors; HCL with ``beta`` / ``tau_plus`` > 0)."""

    temperature: float = 0.1
    beta: float = 0.0
    tau_plus: float = 0.0
    mean_scale: float = 50.0
    num_samples: int = 4
    min_mask: float = 1e-3
    #: "area_shared" (patchwork's: by area, the two views share the masks) or "uniform_per_view" (the official
    #: code's: uniform over the masks present on each view's feature grid, drawn per view)
    mask_sampling: str = "area_shared"
    name: str = "detcon"
    #: keep each image's segmentation (results are the same either way, so it is not in the repr)
    cache_masks: bool = field(default=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.mean_scale < 0:
            raise ValueError(f"mean_scale must be >= 0 (0 = square grid), got {self.mean_scale}")
        if self.mask_sampling not in MASK_SAMPLING:
            raise ValueError(f"mask_sampling must be one of {MASK_SAMPLING}, got {self.mask_sampling!r}")
        if self.mask_sampling == "uniform_per_view" and (self.beta or self.tau_plus):
            raise ValueError("mask_sampling='uniform_per_view' draws each view's masks apart, so an anchor may have "
                             "no positive or several; HCL's terms (beta, tau_plus > 0) need exactly one: use "
                             "'area_shared'")
        if not isinstance(self.cache_masks, bool):
            raise ValueError(f"cache_masks must be True or False, got {self.cache_masks!r}")
        self._cache: dict = {}  # (mean_scale, image shape) -> {fingerprint: compact label map}
        self.segmentations = 0  # Felzenszwalb runs so far (the cache's misses; every image of every step without it)

    def segments(self, images: torch.Tensor) -> torch.Tensor:
        """The (B, H, W) label maps of uint8 ``images``, from the cache where it has them."""
        if self.mean_scale <= 0 or not self.cache_masks:  # the grid costs nothing to redo
            if self.mean_scale > 0:
                self.segmentations += len(images)
            return felzenszwalb_segments(images, self.mean_scale, self.num_samples)
        table = self._cache.setdefault((self.mean_scale, tuple(images.shape[1:])), {})
        keys = _fingerprint(images).tolist()
        new: dict[int, int] = {}  # fingerprint -> first row of the batch, for each image not in the cache
        for i, k in enumerate(keys):
            if k not in table and k not in new:
                new[k] = i
        if new:
            for k, seg in zip(new, felzenszwalb_segments(images[list(new.values())], self.mean_scale)):
                table[k] = _compact(seg)
            self.segmentations += len(new)
        return torch.from_numpy(np.stack([table[k] for k in keys])).long()

    def _view(self, x, masks, generator):
        c = x.shape[1]
        both = self.augment._crop_flip(torch.cat([x, masks], 1), generator, self.augment.crop_scale)
        return self.augment._photometric(both[:, :c].contiguous(), generator).clamp_(0, 1), both[:, c:]

    def _segment_vectors(self, model, x, masks):
        m = unwrap(model)
        fmap = m.backbone.layers(m.backbone.stem(x))  # (B, D, h, w)
        return self._pool(m, fmap, masks)

    @staticmethod
    def _pool(m, fmap, masks):
        mk = F.adaptive_avg_pool2d(masks, fmap.shape[-2:])  # (B, S, h, w)
        weight = mk.flatten(2).sum(2)  # (B, S)
        pooled = torch.einsum("bshw,bdhw->bsd", mk, fmap) / weight.clamp_min(1e-6)[..., None]
        b, s, d = pooled.shape
        return m.projector(pooled.reshape(b * s, d)), weight.reshape(b * s)

    def _step_per_view(self, model, images, splits, generator):
        """The official sampling (``mask_sampling="uniform_per_view"``): every segment of the image cropped
        with each view, hardened on the feature grid, ``num_samples`` uniform draws per view."""
        dev = _device(model)
        seg = self.segments(images)
        b, k = seg.shape[0], int(seg.max()) + 1
        onehot = F.one_hot(seg, k).permute(0, 3, 1, 2).float().to(dev)  # (B, K, H, W)
        x = images.to(dev).float().div_(255)
        (x1, m1), (x2, m2) = self._view(x, onehot, generator), self._view(x, onehot, generator)
        m = unwrap(model)
        fmap = m.backbone.layers(m.backbone.stem(normalize(torch.cat([x1, x2]), splits.norm)))
        hard, present = feature_grid_masks(torch.cat([m1, m2]), fmap.shape[-2:])
        drawn = sample_present_masks(present, self.num_samples, generator)  # (2B, S): view 1's rows, then view 2's
        sel = torch.gather(hard, 1, drawn.to(dev)[..., None, None].expand(-1, -1, *hard.shape[-2:]))
        z, _ = self._pool(m, fmap, sel)
        z1, z2 = z.chunk(2)
        ids = (drawn + (torch.arange(2 * b) % b).view(-1, 1) * k).reshape(2, -1)  # the image folded into the id
        loss = detcon_loss(z1, z2, ids[0], ids[1], temperature=self.temperature)
        matched = (ids[0][:, None] == ids[1][None, :]).any(1)
        return loss, {"segments_kept": float(matched.float().mean()), "segments": float(ids.shape[1]),
                      "repeated_segments": 1.0 - len(torch.unique(ids[0])) / ids.shape[1]}

    def step(self, model, images, labels, splits, generator):
        if self.mask_sampling == "uniform_per_view":
            return self._step_per_view(model, images, splits, generator)
        dev = _device(model)
        masks, picked = sample_masks(self.segments(images), self.num_samples, generator)
        b, _, h, w = masks.shape
        ids = (picked + torch.arange(b).view(-1, 1) * (h * w)).reshape(-1)  # the image folded into the mask id
        masks = masks.to(dev)
        x = images.to(dev).float().div_(255)
        (x1, m1), (x2, m2) = self._view(x, masks, generator), self._view(x, masks, generator)
        z, wt = self._segment_vectors(model, normalize(torch.cat([x1, x2]), splits.norm), torch.cat([m1, m2]))
        z1, z2 = z.chunk(2)
        w1, w2 = wt.chunk(2)
        keep = ((w1 / (h * w) > self.min_mask) & (w2 / (h * w) > self.min_mask)).cpu()
        if int(keep.sum()) < 2:
            raise RuntimeError(f"{self.name}: fewer than 2 segments survived the crops; lower crop strength")
        kept = ids[keep]
        distinct, inverse = torch.unique(kept, return_inverse=True)
        if self.beta == 0 and self.tau_plus == 0:
            loss = detcon_loss(z1[keep.to(dev)], z2[keep.to(dev)], kept, temperature=self.temperature)
        else:  # HCL has one positive per anchor: each distinct segment once (its first draw)
            first = torch.full((len(distinct),), len(kept)).scatter_reduce_(0, inverse, torch.arange(len(kept)), "amin")
            if len(first) < 2:
                raise RuntimeError(f"{self.name}: fewer than 2 distinct segments survived the crops; lower crop "
                                   f"strength")
            rows = torch.nonzero(keep).flatten()[first].to(dev)
            loss = hcl(z1[rows], z2[rows], self.temperature, self.beta, self.tau_plus)
        return loss, {"segments_kept": float(keep.float().mean()), "segments": float(np.prod(keep.shape)),
                      "repeated_segments": 1.0 - len(distinct) / len(kept)}


METHODS["detcon"] = DetCon
