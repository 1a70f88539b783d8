"""Geometry metrics of a frozen representation (patchwork's diagnostics, jg10545/patchwork): alignment
and uniformity on held-out images, and the rotation-prediction test. The figures of the same
diagnostics are in :mod:`patchnb.eval.figures`, the export of embeddings in
:mod:`patchnb.eval.projections`.

The alignment and uniformity *losses* live in :mod:`patchnb.losses` (Wang & Isola 2020, squared
distances, no self-pairs); :func:`alignment_uniformity` evaluates them on held-out images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageData, Splits, random_crop_flip
from ..losses import alignment, uniformity
from .features import _device_of, features
from .probe import linear_probe


@torch.no_grad()
def alignment_uniformity(encoder: nn.Module, data: ImageData, splits: Splits,
                         augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                         n: int = 2000, seed: int = 0, batch_size: int = 512, device=None,
                         t: float = 2.0) -> dict:
    r"""Alignment and uniformity (Wang & Isola, ICML 2020, sec. 4.1) of l2-normalised features on
    held-out ``data`` (up to ``n`` images, a seeded subset):

    * alignment :math:`E \|f(x) - f(x')\|^2` over two augmented views of each image (``augment`` maps a
      normalised batch and a generator to a view; default: random crop after 4-pixel padding + flip,
      the border black in pixel space, i.e. ``splits.norm.black()`` in the normalised batch, so a view is
      exactly the normalised crop of the raw image);
    * uniformity :math:`\log \frac{2}{n(n-1)} \sum_{i<j} e^{-t\|f(x_i) - f(x_j)\|^2}` over distinct pairs
      of the un-augmented images.

    Lower is better for both. Returns ``{"alignment", "uniformity", "n"}``.

    patchwork (``patchwork._util._compute_alignment_and_uniformity`` over
    ``patchwork.feature._contrastive._build_augment_pair_dataset``) augments each image in [0, 1] pixel
    space (``patchwork._augment``, clipped to [0, 1]) before the model sees it, so whatever its views leave
    uncovered is filled in pixel space, never with a normalised 0 (the mean grey). The default here keeps
    that: the padding is raw black (0), as torchvision's ``RandomCrop(padding=4)`` before ``Normalize``.
    Deviation, stated: patchwork's views are its training augmentation (zoom crop, flips, colour, blur, ...),
    here a 4-pixel pad-crop + flip unless ``augment`` is given; and patchwork's uniformity is
    ``log mean exp(-t ||z_i - z_j||)`` over all pairs of the first views, self-pairs included and the
    distance not squared, where this is Wang & Isola's definition above on the un-augmented images.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    g = torch.Generator().manual_seed(seed)
    if len(data) > n:
        data = data.subset(torch.randperm(len(data), generator=g)[:n].sort().values)
    dev = _device_of(encoder, device)
    if augment is None:
        black = splits.norm.black(dev)  # raw 0 after normalisation: pad in pixel space, as patchwork's views

        def augment(x, gen):
            return random_crop_flip(x, 4, True, gen, fill=black)
    was_training = encoder.training
    encoder.eval()
    z, z1, z2 = [], [], []
    try:
        for i in range(0, len(data), batch_size):
            x = splits.norm(data.images[i:i + batch_size], dev)
            z.append(F.normalize(encoder(x).float().flatten(1), dim=1).cpu())
            z1.append(F.normalize(encoder(augment(x, g)).float().flatten(1), dim=1).cpu())
            z2.append(F.normalize(encoder(augment(x, g)).float().flatten(1), dim=1).cpu())
    finally:
        encoder.train(was_training)
    z, z1, z2 = torch.cat(z), torch.cat(z1), torch.cat(z2)
    return {"alignment": float(alignment(z1, z2)), "uniformity": float(uniformity(z.double(), t)), "n": len(z)}


def rotate(data: ImageData, quarter_turns: int) -> ImageData:
    """``data`` with every image rotated by ``quarter_turns * 90`` degrees counter-clockwise; labels are
    replaced by ``quarter_turns`` (the rotation task's target)."""
    h, w = data.images.shape[-2:]
    if h != w:
        raise ValueError(f"the rotation test needs square images, got {h}x{w}")
    images = torch.rot90(data.images, quarter_turns % 4, dims=(2, 3)).contiguous()
    labels = torch.full((len(data),), quarter_turns % 4, dtype=torch.long)
    return ImageData(images, labels, ("0", "90", "180", "270"))


def _rotated(data: ImageData, n: int | None, g: torch.Generator) -> ImageData:
    if n is not None and len(data) > n:
        data = data.subset(torch.randperm(len(data), generator=g)[:n].sort().values)
    parts = [rotate(data, r) for r in range(4)]
    return ImageData(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), parts[0].classes)


def rotation_test(encoder: nn.Module, splits: Splits, n_train: int | None = 2000, n_val: int | None = 500,
                  n_test: int | None = 1000, seed: int = 0, batch_size: int = 512, device=None,
                  weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1)) -> dict:
    """Rotation-prediction test of Reed et al. 2021 ("Evaluating Self-Supervised Pretraining Without Using
    Labels", WACV): every image is rotated by 0/90/180/270 degrees, a linear head on the frozen features
    predicts the rotation (4 classes, chance 0.25), its regularisation is chosen on the rotated
    validation images, and the accuracy on the rotated test images is reported. Needs no class labels.
    ``n_*`` cap the number of source images per split (seeded subsets; ``None`` = all)."""
    g = torch.Generator().manual_seed(seed)
    sets = [_rotated(d, n, g) for d, n in ((splits.train, n_train), (splits.val, n_val), (splits.test, n_test))]
    (ftr, ytr), (fva, yva), (fte, yte) = [features(encoder, d, splits, batch_size, device) for d in sets]
    res = linear_probe(ftr, ytr, fva, yva, fte, yte, weight_decays=weight_decays, n_classes=4)
    return {"accuracy": res.test["accuracy"], "val_accuracy": res.val["accuracy"], "chance": 0.25,
            "weight_decay": res.weight_decay, "confusion": res.test["confusion"]}
