"""Deterministic splits, pixel normalisation, batches and augmentation over in-memory datasets.

Datasets load into an :class:`ImageData` (:mod:`patchnb.datasets`: file formats and loaders, all
re-exported here). Training code normalises batches on the fly with :class:`Normalization`, so the
same bytes feed the dictionary estimation and the network (the original code estimated its
dictionary on [0, 1] pixels while the model saw [-1, 1]; here both see the same normalisation).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .checks import atomic_write, check_choice, check_float, check_int, check_not_link, private_dir
from .datasets import (  # noqa: F401  (re-exported: patchnb.data is where callers find them)
    DATASETS,
    DEBIAN_FASHION_MNIST,
    FASHION_MNIST_CLASSES,
    IMAGE_SUFFIXES,
    DataError,
    ImageData,
    cache_dir,
    data_roots,
    download,
    find_fashion_mnist,
    load_cifar,
    load_fashion_mnist,
    load_image_folder,
    make_synthetic,
    read_idx,
    read_image,
    write_idx,
)


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x / 255 - mean) / std``; the pixel space every kernel and model sees."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ValueError(f"mean and std need one value per channel and std > 0, got {self.mean}, {self.std}")

    def __call__(self, images: torch.Tensor, device=None) -> torch.Tensor:
        """uint8 (N, C, H, W) -> float32 normalised, on ``device``."""
        if images.shape[1] != len(self.mean):
            raise ValueError(f"normalisation has {len(self.mean)} channels, images have {images.shape[1]}")
        x = images.to(device=device, non_blocking=True).float().div_(255)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std)

    def black(self, device=None) -> torch.Tensor:
        """The normalised value of a black pixel (raw 0), one per channel: ``-mean / std``."""
        return -torch.tensor(self.mean, device=device) / torch.tensor(self.std, device=device)

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float -> [0, 1] pixels (for plotting)."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)


# ----------------------------------------------------------------------------- splits and statistics


@dataclass
class Splits:
    """Train / validation (held out of train) / test, plus the normalisation computed on train."""

    name: str
    train: ImageData
    val: ImageData
    test: ImageData
    norm: Normalization

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.train.shape

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test images of "
                f"shape {self.shape}, {len(self.classes)} classes")


def holdout_split(n: int, val_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic (train, val) index split of ``range(n)``; the same for every run with this seed."""
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(10_000 + seed))
    n_val = int(round(n * val_fraction))
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def _stats_checksum(key: str, mean, std) -> str:
    return hashlib.sha256(json.dumps({"key": key, "mean": list(mean), "std": list(std)}).encode()).hexdigest()


def _read_stats(path: Path, key: str, channels: int) -> Normalization | None:
    """The statistics stored at ``path`` for images of content hash ``key``, or None: after a warning
    naming the file when it is damaged (truncated, altered: its checksum does not match), silently for a
    file without a checksum (the format before checksums; not trusted either)."""
    try:
        d = json.loads(path.read_text())
        if isinstance(d, dict) and set(d) == {"mean", "std"}:
            return None
        mean, std = tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"])
        if d.get("sha256") != _stats_checksum(key, mean, std):
            raise ValueError("its checksum does not match its values")
        if len(mean) != channels:
            raise ValueError(f"it holds {len(mean)} channel(s), the images have {channels}")
        return Normalization(mean, std)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        warnings.warn(f"normalisation statistics {path} are damaged ({type(e).__name__}: {e}); they are computed "
                      f"again", stacklevel=3)
        return None


def channel_stats(images: torch.Tensor, cache: bool = True) -> Normalization:
    """Per-channel mean/std of uint8 images in [0, 1] units, cached on disk by content hash
    (``stats/<hash>.json`` in :func:`cache_dir`, written atomically with a checksum; a damaged file is
    reported with a warning and recomputed)."""
    key = hashlib.sha1(images.numpy().tobytes()).hexdigest()[:16]
    path = None
    if cache:
        path = private_dir(cache_dir(), "stats") / f"{key}.json"
        check_not_link(path)
        if path.is_file():
            norm = _read_stats(path, key, images.shape[1])
            if norm is not None:
                return norm
    x = images.double().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    norm = Normalization(tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-6).tolist()))
    if path is not None:
        atomic_write(path, json.dumps({"mean": norm.mean, "std": norm.std,
                                       "sha256": _stats_checksum(key, norm.mean, norm.std)}))
    return norm


def _first(data: ImageData, n: int | None, seed: int, name: str = "size", split: str = "the split") -> ImageData:
    check_int(name, n, 1, allow_none=True)
    if n is not None and n > len(data):
        raise ValueError(f"{name}={n} is more than the {len(data)} images of {split}; allowed: 1..{len(data)} or "
                         f"None (all of them)")
    if n is None or n == len(data):
        return data
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(20_000 + seed))[:n]
    return data.subset(idx.sort().values)


def load_splits(
    name: str,
    root: str | Path | None = None,
    val_fraction: float = 0.1,
    train_size: int | None = None,
    val_size: int | None = None,
    test_size: int | None = None,
    image_size: int | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    split_seed: int = 0,
) -> Splits:
    """Load a dataset as train / val / test.

    The validation split is held out of the official train split (``val_fraction``, seeded by
    ``split_seed`` and independent of the training seed), so model selection never sees test.
    ``*_size`` take seeded random subsets (smaller scales). Normalisation is computed on the
    train split unless ``mean`` and ``std`` are given (as in seed 001's ``--mean/--std``).
    ``root`` is the ImageFolder tree (``imagefolder``); with ``root/train`` and ``root/test``
    (and optionally ``root/val``) subfolders those splits are used as given.
    """
    check_choice("dataset", name, DATASETS)
    check_float("val_fraction", val_fraction, 0.0, 1.0)
    check_int("image_size", image_size, 1, allow_none=True)
    check_int("split_seed", split_seed)
    for size_name, size in (("train_size", train_size), ("val_size", val_size), ("test_size", test_size)):
        check_int(size_name, size, 1, allow_none=True)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    val = None
    if name == "fashion_mnist":
        train_all, test = load_fashion_mnist("train"), load_fashion_mnist("test")
    elif name in ("cifar10", "cifar100"):
        train_all, test = load_cifar(name, "train"), load_cifar(name, "test")
    elif name == "synthetic":
        train_all = make_synthetic(2000, seed=1)
        test = make_synthetic(500, seed=2)
    else:
        if root is None:
            raise ValueError("dataset='imagefolder' needs root=<path of the ImageFolder tree>")
        root = Path(root)
        split_dirs = [d for d in ("train", "val", "test") if (root / d).is_dir()]
        if split_dirs and not {"train", "test"} <= set(split_dirs):
            missing = " and ".join(f"{d}/" for d in ("train", "test") if d not in split_dirs)
            raise DataError(f"{root} has {', '.join(d + '/' for d in split_dirs)} but no {missing}: a tree split by "
                            f"folders needs train/ and test/ (val/ optional), each with the class folders; a tree "
                            f"of class folders only is split here")
        if (root / "train").is_dir() and (root / "test").is_dir():
            train_all = load_image_folder(root / "train", image_size)
            test = load_image_folder(root / "test", image_size, channels=train_all.shape[0])
            if test.classes != train_all.classes:
                raise DataError(f"{root}/train and {root}/test have different class folders.")
        else:
            full = load_image_folder(root, image_size)
            tr, te = holdout_split(len(full), 0.2, split_seed + 1)
            train_all, test = full.subset(tr), full.subset(te)
        if (root / "val").is_dir():
            val = load_image_folder(root / "val", image_size, channels=train_all.shape[0])
            if val.classes != train_all.classes:
                raise DataError(f"{root}/train and {root}/val have different class folders.")
    if val is None:  # held out of train, deterministically
        tr, va = holdout_split(len(train_all), val_fraction, split_seed)
        train, val = train_all.subset(tr), train_all.subset(va)
    else:
        train = train_all
    train = _first(train, train_size, split_seed, "train_size", "the train split")
    val = _first(val, val_size, split_seed + 1, "val_size", "the validation split")
    test = _first(test, test_size, split_seed + 2, "test_size", "the test split")
    for split, data in (("train", train), ("val", val), ("test", test)):
        if len(data) == 0:
            hint = f" (val_fraction={val_fraction} of {len(train)} images)" if split == "val" else ""
            raise ValueError(f"the {split} split of {name!r} is empty{hint}; training needs images in train, val "
                             f"and test")
    channels = train.shape[0]
    if mean is not None:
        mean, std = tuple(mean), tuple(std)
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean={mean} and std={std} must give one value per channel: {name!r} has {channels} "
                             f"channel(s)")
        for v in (*mean, *std):
            check_float("mean/std", v)
    norm = Normalization(mean, std) if mean is not None else channel_stats(train.images)
    return Splits(name, train, val, test, norm)


# ----------------------------------------------------------------------------- batches and augmentation


def random_crop_flip(x: torch.Tensor, pad: int = 4, flip: bool = True, generator=None,
                     fill: float | torch.Tensor = 0) -> torch.Tensor:
    """Per-image random crop after padding by ``pad`` and random horizontal flip, on a batch.

    As torchvision's ``RandomCrop(size, padding=pad)`` (``fill=0``) then ``RandomHorizontalFlip()``:
    the border is ``fill`` in the units of ``x``, 0 by default, which is black for uint8 or [0, 1]
    pixels, so crop the raw batch and normalise it afterwards (as ``Classification`` does), or pass
    the normalised value of black (``norm.black(device)``) for a normalised batch. ``fill`` is a
    number or one value per channel. ``x`` may be uint8 or float, on any device; the offsets and
    flips are drawn on the CPU from ``generator`` (one offset pair then one flip per image).
    """
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        fill = torch.as_tensor(fill, dtype=x.dtype, device=dev).reshape(-1)
        if fill.numel() not in (1, c):
            raise ValueError(f"fill needs one value or one per channel ({c}), got {fill.numel()}")
        xp = fill.view(1, -1, 1, 1).expand(b, c, h + 2 * pad, w + 2 * pad).clone()
        xp[:, :, pad:pad + h, pad:pad + w] = x
        dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
        dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(dev)
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None].expand(b, c, h, w)
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :].expand(b, c, h, w)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        x = xp[bi, ci, rows, cols]
    if flip:
        f = (torch.rand(b, generator=generator) < 0.5).to(dev)
        x = torch.where(f[:, None, None, None], x.flip(3), x)
    return x


def iterate_batches(data: ImageData, batch_size: int, shuffle: bool = False, generator=None,
                    drop_last: bool = False):
    """``(uint8 images, labels)`` batches of ``batch_size`` (an int >= 1, checked at the call), shuffled with
    ``generator`` when asked."""
    check_int("batch_size", batch_size, 1)
    return _batches(data, batch_size, shuffle, generator, drop_last)


def _batches(data: ImageData, batch_size: int, shuffle: bool, generator, drop_last: bool):
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        yield data.images[idx], data.labels[idx]
