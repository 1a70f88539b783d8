"""The cue-conflict stimuli of Geirhos et al. (ICLR 2019) and the shape bias of any torchvision
ImageNet classifier on them.

The stimuli folder (``texture-vs-shape/stimuli/style-transfer-preprocessed-512`` or
model-vs-human's ``cue-conflict``) holds 1280 PNGs in 16 category folders; a file name such as
``airplane1-bicycle2.png`` says the shape (``airplane``, folder) and the texture (``bicycle``).
Images whose shape and texture agree (``bird3-bird2.png``) are kept by the loader and excluded by
the metric, which reports how many.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import IMAGE_SUFFIXES, DataError, read_image
from .metrics import IMAGENET_16_CATEGORIES, ShapeBias, imagenet_shape_bias

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_NAME = re.compile(r"(?:.*_)?([a-z]+)(\d+)-([a-z]+)(\d+)")


@dataclass
class CueConflictSet:
    """Loaded stimuli: uint8 images ``(N, C, H, W)``, shape and texture labels indexing ``classes``."""

    images: torch.Tensor
    shape_labels: torch.Tensor
    texture_labels: torch.Tensor
    classes: tuple[str, ...]
    files: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.files)


def parse_stimulus_name(name: str) -> tuple[str, str]:
    """``"airplane1-bicycle2.png"`` -> ``("airplane", "bicycle")`` (shape, texture)."""
    m = _NAME.fullmatch(Path(name).stem)
    if m is None:
        raise DataError(f"cannot read shape and texture from the file name {name!r}; cue-conflict stimuli are "
                        f"named <shape><n>-<texture><m>.png, e.g. 'airplane1-bicycle2.png'")
    return m.group(1), m.group(3)


def load_cue_conflict(root: str | Path, image_size: int | None = None, categories: tuple[str, ...] | None = None,
                      channels: int = 3) -> CueConflictSet:
    """Load a cue-conflict folder ``root/<category>/<shape><n>-<texture><m>.png``.

    ``categories`` (default: the 16 of :data:`IMAGENET_16_CATEGORIES`) fixes the label order; every
    one must have a folder, and every shape and texture named in a file must be one of them. A file
    whose shape differs from its folder is an error. ``image_size`` resizes (bilinear, square).
    """
    root = Path(root)
    categories = tuple(categories) if categories is not None else IMAGENET_16_CATEGORIES
    if not root.is_dir():
        raise DataError(f"cue-conflict stimuli folder {root} does not exist")
    folders = {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    missing = [c for c in categories if c not in folders]
    if missing:
        raise DataError(f"{root} lacks the category folders {missing}; expected one folder per category: "
                        f"{', '.join(categories)}")
    extra = sorted(folders - set(categories))
    if extra:
        raise DataError(f"{root} has folders {extra} that are not categories ({', '.join(categories)})")
    index = {c: i for i, c in enumerate(categories)}
    arrays, shapes, textures, files = [], [], [], []
    for cat in categories:
        members = sorted(p for p in (root / cat).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in members:
            s, t = parse_stimulus_name(path.name)
            for cue, value in (("shape", s), ("texture", t)):
                if value not in index:
                    raise DataError(f"{path}: {cue} {value!r} is not a category ({', '.join(categories)})")
            if s != cat:
                raise DataError(f"{path}: its name says shape {s!r} but it lies in the folder {cat!r}")
            arrays.append(read_image(path, channels, image_size))
            shapes.append(index[s])
            textures.append(index[t])
            files.append(str(path.relative_to(root)))
    if not arrays:
        raise DataError(f"{root} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise DataError(f"stimuli under {root} have different sizes {sorted(sizes)[:3]}; pass image_size")
    return CueConflictSet(torch.from_numpy(np.stack(arrays)), torch.tensor(shapes), torch.tensor(textures),
                          categories, tuple(files))


def load_imagenet_classifier(arch: str, weights_path: str | Path | None = None) -> torch.nn.Module:
    """Any torchvision classification architecture by name (``resnet50``, ``vit_b_16``,
    ``convnext_tiny`` ...) with the user's weights: a ``state_dict`` file, or a checkpoint dict that
    holds one under ``state_dict`` / ``model`` (a ``module.`` prefix from DataParallel is removed)."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        raise ValueError(f"arch={arch!r} is not a torchvision classification model; allowed values include "
                         f"{', '.join(names[:12])}, ... ({len(names)} in all: torchvision.models.list_models())")
    model = torchvision.models.get_model(arch, weights=None)
    if weights_path is not None:
        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"weights_path={str(path)!r} does not exist")
        from ..checkpoint import load_checkpoint  # weights_only: tensors and plain containers, no code runs

        state = load_checkpoint(path)
        if isinstance(state, torch.nn.Module):
            state = state.state_dict()
        for key in ("state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        state = {k.removeprefix("module."): v for k, v in state.items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{path} does not hold weights of a torchvision {arch!r}: {e}") from e
    return model


@torch.no_grad()
def imagenet_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64,
                    device: str = "cpu") -> torch.Tensor:
    """Outputs of ``model`` on uint8 RGB images, normalised with the ImageNet mean and std."""
    model = model.to(device).eval()
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device).float().div_(255)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        out.append(model((x - mean) / std).float().cpu())
    return torch.cat(out)


def evaluate_imagenet_classifier(arch: str, weights_path: str | Path | None, stimuli_dir: str | Path,
                                 image_size: int | None = 224, batch_size: int = 64, device: str = "cpu"
                                 ) -> ShapeBias:
    """Shape bias of a torchvision ImageNet classifier ``arch`` with the weights in ``weights_path`` on
    the cue-conflict stimuli in ``stimuli_dir``, by the 16-category protocol of model-vs-human
    (probabilities averaged over each category's ImageNet classes, then arg-max; see
    :func:`patchnb.bias.metrics.imagenet_to_16`). Raises ``ValueError`` when the model does not output
    1000 classes."""
    model = load_imagenet_classifier(arch, weights_path)
    stimuli = load_cue_conflict(stimuli_dir, image_size=image_size)
    logits = imagenet_logits(model, stimuli.images, batch_size, device)
    if logits.ndim != 2 or logits.shape[1] != 1000:
        raise ValueError(f"{arch} outputs {tuple(logits.shape[1:])} scores per image; the 16-category shape-bias "
                         f"protocol needs a 1000-class ImageNet classifier")
    return imagenet_shape_bias(logits, stimuli.shape_labels, stimuli.texture_labels)


__all__ = ["CueConflictSet", "IMAGENET_MEAN", "IMAGENET_STD", "evaluate_imagenet_classifier", "imagenet_logits",
           "load_cue_conflict", "load_imagenet_classifier", "parse_stimulus_name"]
