"""Datasets held in memory as uint8 tensors, deterministic splits and pixel normalisation.

Every dataset loads into an :class:`ImageData` (``images`` uint8 ``(N, C, H, W)``, ``labels`` int64
``(N,)``, ``classes``). Training code normalises batches on the fly with :class:`Normalization`,
so the same bytes feed the dictionary estimation and the network (the original code estimated its
dictionary on [0, 1] pixels while the model saw [-1, 1]; here both see the same normalisation).

Supported on-disk formats, each tested on tiny files written in that format:

* ``fashion_mnist``: the official idx gz files (``train-images-idx3-ubyte.gz`` ...), looked up in
  ``$PATCHNB_DATA/fashion-mnist``, ``$PATCHNB_DATA/FashionMNIST/raw`` (torchvision's layout),
  ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``) and the patchnb cache.
* ``cifar10`` / ``cifar100``: the python pickles torchvision downloads (``cifar-10-batches-py``,
  ``cifar-100-python``).
* ``imagefolder``: any ``root/<class>/<image>`` tree, or ``root/{train,val,test}/<class>/...``.
* ``synthetic``: class-dependent random blobs, for tests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checks import check_choice  # noqa: F401  (re-exported: data-layer callers use it)

DATASETS = ("fashion_mnist", "cifar10", "cifar100", "imagefolder", "synthetic")
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


class DataError(RuntimeError):
    """Missing, corrupt or inconsistent data; the message says what to do."""


def cache_dir() -> Path:
    """patchnb's cache (data downloads, statistics, runs, the compiled kNN kernel): ``$PATCHNB_CACHE``
    or ~/.cache/patchnb, created readable and writable by its owner only.

    The cache folder must be private to you: it holds the compiled kernel that patchnb loads and
    runs (refused when another user owns it or may write it: :func:`patchnb.embedding._load_lib`)
    and results that the book shows. Do not point ``PATCHNB_CACHE`` at a folder others can write."""
    root = os.environ.get("PATCHNB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "patchnb"
    path = Path(root)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def data_roots() -> list[Path]:
    """Folders searched for datasets, in order: $PATCHNB_DATA, the cache's data folder."""
    roots = [Path(p) for p in os.environ.get("PATCHNB_DATA", "").split(os.pathsep) if p]
    return roots + [cache_dir() / "data"]


@dataclass
class ImageData:
    """Images as uint8 ``(N, C, H, W)`` with int64 labels ``(N,)`` and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels must have shape ({self.images.shape[0]},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, index) -> ImageData:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageData(self.images[index], self.labels[index], self.classes)


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

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised float -> [0, 1] pixels (for plotting)."""
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)


# ----------------------------------------------------------------------------- file formats


def _read_gz(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path} is corrupt or truncated ({e}); delete it and fetch the data again "
                        f"(`patchnb data fashion_mnist`).") from e


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (gzipped), the format of MNIST and Fashion-MNIST."""
    raw = _read_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte idx file (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated (incomplete header).")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DataError(f"{path} holds {len(raw) - header} bytes of data, its header announces {expected}; "
                        f"the file is truncated or corrupt: fetch it again (`patchnb data fashion_mnist`).")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as a gzipped idx file (for tests and for users making MNIST-like sets)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def find_fashion_mnist() -> Path | None:
    """The first folder holding the four Fashion-MNIST gz files, or None."""
    names = [n for pair in _FMNIST_FILES.values() for n in pair]
    candidates = []
    for root in data_roots():
        candidates += [root / "fashion-mnist", root / "FashionMNIST" / "raw", root]
    candidates.append(DEBIAN_FASHION_MNIST)
    for folder in candidates:
        if all((folder / n).is_file() for n in names):
            return folder
    return None


def _missing(name: str) -> DataError:
    roots = ", ".join(str(r) for r in data_roots())
    return DataError(
        f"{name} was not found (searched {roots}"
        + (f", {DEBIAN_FASHION_MNIST}" if name == "fashion_mnist" else "")
        + f"). Fetch it with `patchnb data {name}` (torchvision download), "
        + ("or `apt-get install dataset-fashion-mnist`, " if name == "fashion_mnist" else "")
        + "or point PATCHNB_DATA at a folder that holds it."
    )


def load_fashion_mnist(split: str) -> ImageData:
    folder = find_fashion_mnist()
    if folder is None:
        raise _missing("fashion_mnist")
    img_name, lab_name = _FMNIST_FILES[split]
    images = read_idx(folder / img_name)
    labels = read_idx(folder / lab_name)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: {img_name} and {lab_name} do not match ({images.shape} vs {labels.shape}).")
    if labels.max(initial=0) >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{folder / lab_name} has labels outside 0..9; the file is corrupt.")
    return ImageData(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)),
                     FASHION_MNIST_CLASSES)


_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", b"labels", b"label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", b"fine_labels", b"fine_label_names"),
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    pass


def _array_dtype(*args):
    """``numpy.dtype`` for the unpickler, refusing object dtypes (their items would be arbitrary objects)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise _ForbiddenGlobal(f"an array of Python objects (dtype {dtype})")
    return dtype


def _cifar_globals() -> dict:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's array-rebuilding function
    frombuffer = np.ndarray.__reduce_ex__(np.zeros(1), 5)[0]
    scalar = np.float64(0).__reduce__()[0]
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _array_dtype}
    for core in ("numpy.core", "numpy._core"):  # the name numpy < 2 / >= 2 pickles with
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only what the CIFAR python batches hold: dicts, lists, tuples, bytes and str,
    numbers and numpy arrays (the original files, pickled by Python 2, name exactly three globals:
    ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``; numpy >= 2 and
    pickle protocol 5 spell them ``numpy._core...`` and ``numpy._core.numeric._frombuffer``, numpy
    scalars ``...multiarray.scalar``). Any other global, which is how a pickle runs code, is refused
    before it is looked up."""

    ALLOWED = _cifar_globals()

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(f"{module}.{name}") from None


def _unpickle(path: Path) -> dict:
    """A CIFAR batch, read with :class:`_CifarUnpickler`; :class:`DataError` naming the file for
    anything but the dict of arrays, lists and strings those files hold."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except _ForbiddenGlobal as e:
        raise DataError(f"{path} is not a CIFAR batch: its pickle refers to {e}, which a CIFAR batch never holds; "
                        f"it was not loaded (unpickling it could run code). Delete it and download the data again "
                        f"(`patchnb data cifar10`).") from None
    except Exception as e:  # truncated pickles raise EOFError / UnpicklingError / ValueError
        raise DataError(f"{path} is corrupt or truncated ({type(e).__name__}: {e}); delete it and download "
                        f"the data again (`patchnb data cifar10`).") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR batch: it holds a {type(obj).__name__}, not a dict; delete it and "
                        f"download the data again (`patchnb data cifar10`).")
    return obj


def _entry(batch: dict, key: bytes, path: Path):
    if key not in batch:
        raise DataError(f"{path} is not a CIFAR batch: it has no {key!r} entry (it has {sorted(batch)[:5]}); delete "
                        f"it and download the data again (`patchnb data cifar10`).")
    return batch[key]


def load_cifar(name: str, split: str) -> ImageData:
    folder_name, train_files, test_files, meta_file, label_key, names_key = _CIFAR[name]
    folder = next((r / folder_name for r in data_roots() if (r / folder_name / meta_file).is_file()), None)
    if folder is None:
        raise _missing(name)
    images, labels = [], []
    for fname in train_files if split == "train" else test_files:
        if not (folder / fname).is_file():
            raise DataError(f"{folder / fname} is missing; download {name} again (`patchnb data {name}`).")
        batch = _unpickle(folder / fname)
        data = np.asarray(_entry(batch, b"data", folder / fname), dtype=np.uint8)
        lab = np.asarray(_entry(batch, label_key, folder / fname), dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or lab.shape != (len(data),):
            raise DataError(f"{folder / fname} does not hold (N, 3072) images with N labels.")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    names = _entry(_unpickle(folder / meta_file), names_key, folder / meta_file)
    classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    all_labels = np.concatenate(labels)
    if all_labels.size and (all_labels.min() < 0 or all_labels.max() >= len(classes)):
        raise DataError(f"{folder} has labels in {all_labels.min()}..{all_labels.max()} but {folder / meta_file} "
                        f"names {len(classes)} classes; the files are corrupt: download {name} again "
                        f"(`patchnb data {name}`).")
    return ImageData(torch.from_numpy(np.concatenate(images)), torch.from_numpy(all_labels), classes)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def read_image(path: str | Path, channels: int, image_size: int | None = None) -> np.ndarray:
    """One image file as uint8 ``(C, H, W)`` with ``channels`` 1 (grayscale) or 3 (RGB), resized to a
    square ``image_size`` when given; an unreadable file raises :class:`DataError` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            if image_size is not None:
                im = im.resize((image_size, image_size), Image.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path} is not a readable image ({e}); remove or replace it.") from e
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def load_image_folder(root: str | Path, image_size: int | None = None, channels: int | None = None) -> ImageData:
    """Load a ``root/<class>/<image>`` tree into memory, resized to ``image_size`` (square) if given.

    ``channels`` is 1 (grayscale) or 3 (RGB); by default, the mode of the first image decides.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ImageFolder root {root} does not exist.")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"ImageFolder root {root} needs at least two class folders, found {len(class_dirs)}.")
    files = []
    for label, d in enumerate(class_dirs):
        members = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not members:
            raise DataError(f"class folder {d} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        files += [(p, label) for p in members]
    if channels is None:
        from PIL import Image

        with Image.open(files[0][0]) as im:
            channels = 1 if im.mode in ("L", "1", "I;16", "I") else 3
    arrays = [read_image(path, channels, image_size) for path, _ in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"images under {root} have different sizes {sorted(shapes)[:3]}...; pass image_size.")
    images = torch.from_numpy(np.stack(arrays))
    labels = torch.tensor([label for _, label in files])
    return ImageData(images, labels, tuple(d.name for d in class_dirs))


def make_synthetic(n: int, n_classes: int = 10, shape=(1, 16, 16), seed: int = 0) -> ImageData:
    """Class-dependent images: a bright square at a class-specific place, plus noise. For tests."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = shape
    labels = torch.arange(n) % n_classes
    labels = labels[torch.randperm(n, generator=g)]
    x = torch.rand(n, c, h, w, generator=g) * 60
    s = max(2, h // 4)
    for cls in range(n_classes):
        top = (cls * 3) % (h - s)
        left = (cls * 5) % (w - s)
        x[labels == cls, :, top:top + s, left:left + s] += 180
    return ImageData(x.clamp(0, 255).to(torch.uint8), labels, tuple(f"class{i}" for i in range(n_classes)))


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


def channel_stats(images: torch.Tensor, cache: bool = True) -> Normalization:
    """Per-channel mean/std of uint8 images in [0, 1] units, cached on disk by content hash."""
    key = hashlib.sha1(images.numpy().tobytes()).hexdigest()[:16]
    path = cache_dir() / "stats" / f"{key}.json"
    if cache and path.is_file():
        d = json.loads(path.read_text())
        return Normalization(tuple(d["mean"]), tuple(d["std"]))
    x = images.double().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
    norm = Normalization(tuple(x.mean(1).tolist()), tuple(x.std(1).clamp_min(1e-6).tolist()))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"mean": norm.mean, "std": norm.std}))
    return norm


def _first(data: ImageData, n: int | None, seed: int) -> ImageData:
    if n is None or n >= len(data):
        return data
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
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
    train = _first(train, train_size, split_seed)
    val = _first(val, val_size, split_seed + 1)
    test = _first(test, test_size, split_seed + 2)
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither")
    norm = Normalization(tuple(mean), tuple(std)) if mean is not None else channel_stats(train.images)
    return Splits(name, train, val, test, norm)


def download(name: str, root: str | Path | None = None) -> Path:
    """Fetch a dataset with torchvision into ``root`` (default: the cache's data folder)."""
    import torchvision

    check_choice("dataset", name, ("fashion_mnist", "cifar10", "cifar100"))
    root = Path(root) if root else cache_dir() / "data"
    root.mkdir(parents=True, exist_ok=True)
    if name == "fashion_mnist":
        if find_fashion_mnist() is not None:
            return find_fashion_mnist()
        torchvision.datasets.FashionMNIST(root, train=True, download=True)
        torchvision.datasets.FashionMNIST(root, train=False, download=True)
        return root / "FashionMNIST" / "raw"
    cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
    cls(root, train=True, download=True)
    cls(root, train=False, download=True)
    return root / _CIFAR[name][0]


# ----------------------------------------------------------------------------- batches and augmentation


def random_crop_flip(x: torch.Tensor, pad: int = 4, flip: bool = True, generator=None) -> torch.Tensor:
    """Per-image random crop after zero padding by ``pad`` and random horizontal flip, on a batch.

    Works on normalised float batches on any device (zero padding is in normalised units, as
    ``transforms.RandomCrop(padding=pad)`` followed by ``Normalize`` would give mean-valued borders;
    here the padded value is 0 = the dataset mean, which keeps the crop statistics unbiased).
    """
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
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
    """Yield ``(uint8 images, labels)`` batches; shuffled with ``generator`` when asked."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        yield data.images[idx], data.labels[idx]
