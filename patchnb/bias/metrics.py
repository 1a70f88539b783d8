"""The shape-bias metric of Geirhos et al., "ImageNet-trained CNNs are biased towards texture;
increasing shape bias improves accuracy and robustness", ICLR 2019 (Section 3 / Figure 4):

    shape bias = #shape decisions / (#shape decisions + #texture decisions)

over cue-conflict images, where a decision is a *shape decision* when it names the shape class and
a *texture decision* when it names the texture class. Decisions naming neither cue do not count, and
images whose shape and texture class agree are excluded (they cannot tell the cues apart).

For 1000-class ImageNet classifiers, the reference protocol (bethgelab/model-vs-human,
``ImageNetProbabilitiesTo16ClassesMapping``) first maps the softmax output to the 16 categories of
the stimuli by **averaging** the probabilities of each category's ImageNet classes, then takes the
arg-max over the 16 averages. :data:`IMAGENET_16_INDICES` is that mapping, transcribed from
``modelvshuman/helper/human_categories.py`` (``<category>_indices``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..checks import check_int, check_labels

# The 16 categories in the (sorted) order of model-vs-human's get_human_object_recognition_categories().
IMAGENET_16_CATEGORIES = ("airplane", "bear", "bicycle", "bird", "boat", "bottle", "car", "cat", "chair", "clock",
                          "dog", "elephant", "keyboard", "knife", "oven", "truck")

# ImageNet-1k class indices of each category (data from bethgelab/model-vs-human, helper/human_categories.py).
IMAGENET_16_INDICES: dict[str, tuple[int, ...]] = {
    "airplane": (404,),
    "bear": (294, 295, 296, 297),
    "bicycle": (444, 671),
    "bird": (8, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 22, 23, 24, 80, 81, 82, 83, 87, 88, 89, 90, 91, 92, 93, 94,
             95, 96, 98, 99, 100, 127, 128, 129, 130, 131, 132, 133, 135, 136, 137, 138, 139, 140, 141, 142, 143, 144,
             145),
    "boat": (472, 554, 625, 814, 914),
    "bottle": (440, 720, 737, 898, 899, 901, 907),
    "car": (436, 511, 817),
    "cat": (281, 282, 283, 284, 285, 286),
    "chair": (423, 559, 765, 857),
    "clock": (409, 530, 892),
    "dog": (152, 153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172,
            173, 174, 175, 176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 193, 194,
            195, 196, 197, 198, 199, 200, 201, 202, 203, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215, 216,
            217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238,
            239, 240, 241, 243, 244, 245, 246, 247, 248, 249, 250, 252, 253, 254, 255, 256, 257, 259, 261, 262, 263,
            265, 266, 267, 268),
    "elephant": (385, 386),
    "keyboard": (508, 878),
    "knife": (499,),
    "oven": (766,),
    "truck": (555, 569, 656, 675, 717, 734, 864, 867),
}


@dataclass
class ShapeBias:
    """Result of :func:`shape_bias`. ``shape_bias`` is NaN when no decision matched either cue.

    ``per_class`` maps each shape class to ``{"shape_bias", "n_shape", "n_texture"}`` over the
    counted images *of that shape*; ``per_texture_class`` does the same by texture class."""

    shape_bias: float
    n_shape: int
    n_texture: int
    n_other: int
    n_excluded: int
    n_total: int
    per_class: dict[int, dict] = field(default_factory=dict)
    per_texture_class: dict[int, dict] = field(default_factory=dict)

    @property
    def n_counted(self) -> int:
        """Images whose decision matched one of the two cues."""
        return self.n_shape + self.n_texture

    @property
    def shape_fraction(self) -> float:
        """Shape decisions over all cue-conflict images (not only cue-matching ones)."""
        n = self.n_total - self.n_excluded
        return self.n_shape / n if n else float("nan")

    @property
    def texture_fraction(self) -> float:
        n = self.n_total - self.n_excluded
        return self.n_texture / n if n else float("nan")

    def describe(self) -> str:
        return (f"shape bias {self.shape_bias:.3f} ({self.n_shape} shape / {self.n_texture} texture decisions; "
                f"{self.n_other} matched neither cue; {self.n_excluded} of {self.n_total} images excluded because "
                f"shape and texture agree)")


def _ratio(s: int, t: int) -> float:
    return s / (s + t) if s + t else float("nan")


def _per(groups: torch.Tensor, is_shape: torch.Tensor, is_texture: torch.Tensor, n_classes: int) -> dict:
    s = torch.bincount(groups[is_shape], minlength=n_classes)
    t = torch.bincount(groups[is_texture], minlength=n_classes)
    return {c: {"shape_bias": _ratio(int(s[c]), int(t[c])), "n_shape": int(s[c]), "n_texture": int(t[c])}
            for c in range(n_classes)}


def shape_bias(pred: torch.Tensor, shape_labels: torch.Tensor, texture_labels: torch.Tensor,
               n_classes: int | None = None) -> ShapeBias:
    """Shape bias of decisions on cue-conflict images (Geirhos et al. 2019):

        shape_bias = n_shape / (n_shape + n_texture),

    with ``n_shape = #{i : pred_i = shape_i}`` and ``n_texture = #{i : pred_i = texture_i}`` over the
    images with ``shape_i != texture_i``; images with ``shape_i == texture_i`` are excluded and counted
    in ``n_excluded``, decisions matching neither cue are counted in ``n_other``.

    ``pred`` holds class decisions ``(N,)`` or scores ``(N, C)`` (arg-max is taken). Also returned per
    shape class and per texture class.
    """
    pred, shape_labels, texture_labels = (torch.as_tensor(a) for a in (pred, shape_labels, texture_labels))
    if pred.ndim not in (1, 2):
        raise ValueError(f"pred must be decisions (N,) or scores (N, C), got shape {tuple(pred.shape)}")
    n = len(pred)
    if shape_labels.shape != (n,) or texture_labels.shape != (n,):
        raise ValueError(f"pred, shape_labels and texture_labels must have the same length; got {n}, "
                         f"{tuple(shape_labels.shape)}, {tuple(texture_labels.shape)}")
    check_int("n_classes", n_classes, 1, allow_none=True)
    shape_labels = check_labels("shape_labels", shape_labels, n_classes)
    texture_labels = check_labels("texture_labels", texture_labels, n_classes)
    if n_classes is None:
        n_classes = int(max(shape_labels.max(), texture_labels.max())) + 1 if n else 0
    if pred.ndim == 2:
        if pred.shape[1] < n_classes:
            raise ValueError(f"pred holds scores of {pred.shape[1]} classes but the labels name {n_classes} classes "
                             f"(n_classes={n_classes}): the missing classes could never be decided")
        pred = pred.argmax(1)
    else:
        pred = check_labels("pred", pred)  # decisions: integer class indices (floats would be truncated)
    conflict = shape_labels != texture_labels
    is_shape = conflict & (pred == shape_labels)
    is_texture = conflict & (pred == texture_labels)
    n_shape, n_texture = int(is_shape.sum()), int(is_texture.sum())
    n_excluded = int((~conflict).sum())
    return ShapeBias(shape_bias=_ratio(n_shape, n_texture), n_shape=n_shape, n_texture=n_texture,
                     n_other=n - n_excluded - n_shape - n_texture, n_excluded=n_excluded, n_total=n,
                     per_class=_per(shape_labels, is_shape, is_texture, n_classes),
                     per_texture_class=_per(texture_labels, is_shape, is_texture, n_classes))


def imagenet_to_16(logits: torch.Tensor, probabilities: bool = False) -> torch.Tensor:
    """Map 1000-class ImageNet outputs ``(N, 1000)`` to ``(N, 16)`` category scores, in the order of
    :data:`IMAGENET_16_CATEGORIES`: the softmax probabilities (``logits`` are soft-maxed unless
    ``probabilities=True``) **averaged** over each category's ImageNet classes, as in
    model-vs-human's ``ImageNetProbabilitiesTo16ClassesMapping`` (aggregation ``np.mean``)."""
    if logits.ndim != 2 or logits.shape[1] != 1000:
        raise ValueError(f"the 16-category protocol needs the output of a 1000-class ImageNet classifier "
                         f"(N, 1000), got shape {tuple(logits.shape)}")
    p = logits.float() if probabilities else torch.softmax(logits.float(), dim=1)
    return torch.stack([p[:, list(IMAGENET_16_INDICES[c])].mean(1) for c in IMAGENET_16_CATEGORIES], dim=1)


def imagenet_16_decisions(logits: torch.Tensor, probabilities: bool = False) -> torch.Tensor:
    """Category decisions ``(N,)`` (indices into :data:`IMAGENET_16_CATEGORIES`) of ImageNet outputs."""
    return imagenet_to_16(logits, probabilities).argmax(1)


def imagenet_shape_bias(logits: torch.Tensor, shape_labels: torch.Tensor, texture_labels: torch.Tensor,
                        probabilities: bool = False) -> ShapeBias:
    """The Geirhos protocol for an ImageNet classifier: 16-category decisions from averaged
    probabilities (:func:`imagenet_to_16`), then :func:`shape_bias` with labels indexing
    :data:`IMAGENET_16_CATEGORIES`."""
    return shape_bias(imagenet_16_decisions(logits, probabilities), shape_labels, texture_labels,
                      n_classes=len(IMAGENET_16_CATEGORIES))


__all__ = ["IMAGENET_16_CATEGORIES", "IMAGENET_16_INDICES", "ShapeBias", "imagenet_16_decisions",
           "imagenet_shape_bias", "imagenet_to_16", "shape_bias"]
