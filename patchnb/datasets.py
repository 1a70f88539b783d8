"""Datasets on disk and in memory: the file formats patchnb reads, the loaders, the cache folder.

Every dataset loads into an :class:`ImageData` (``images`` uint8 ``(N, C, H, W)``, ``labels`` int64
``(N,)``, ``classes``). Splits, normalisation and batching are in :mod:`patchnb.data`, which
re-exports everything here.

Supported on-disk formats, each tested on tiny files written in that format:

* ``fashion_mnist``: the official idx gz files (``train-images-idx3-ubyte.gz`` ...), looked up in
  ``$PATCHNB_DATA/fashion-mnist``, ``$PATCHNB_DATA/FashionMNIST/raw`` (torchvision's layout),
  ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``) and the patchnb cache.
* ``cifar10`` / ``cifar100``: the python pickles torchvision downloads (``cifar-10-batches-py``,
  ``cifar-100-python``), read by an unpickler that builds nothing but arrays and plain values.
* ``imagefolder``: any ``root/<class>/<image>`` tree, or ``root/{train,val,test}/<class>/...``.
* ``synthetic``: class-dependent random blobs, for tests.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .checks import check_choice, check_int, private_root

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

    The cache folder must be private to you: it holds the compiled kernel that patchnb loads and runs
    and the results that the book shows. A folder that belongs to another user or that group or others
    may write is refused (:class:`patchnb.checks.UnsafePathError`, saying how to fix it); folders
    inside it are taken with :func:`patchnb.checks.private_dir`, which follows no symbolic link."""
    root = os.environ.get("PATCHNB_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "patchnb"
    return private_root(root, "the patchnb cache folder ($PATCHNB_CACHE)")


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
        if self.labels.is_floating_point() or self.labels.is_complex() or self.labels.dtype == torch.bool:
            raise ValueError(f"labels must be integer class indices, got a {self.labels.dtype} tensor")
        self.labels = self.labels.long()
        self.classes = tuple(self.classes)
        if self.labels.numel():
            lo, hi = int(self.labels.min()), int(self.labels.max())
            if lo < 0 or hi >= len(self.classes):
                bad = lo if lo < 0 else hi
                raise ValueError(f"labels holds a label {bad} but classes names {len(self.classes)} classes "
                                 f"(num_classes={len(self.classes)}); labels must be in 0..{len(self.classes) - 1}: "
                                 f"give one class name per label")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, index) -> ImageData:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageData(self.images[index], self.labels[index], self.classes)


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


GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def _is_grayscale(path: Path) -> bool:
    """Whether the image file is grayscale, from its header (PIL opens lazily: no pixels are decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode in GRAYSCALE_MODES
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path} is not a readable image ({e}); remove or replace it.") from e


def load_image_folder(root: str | Path, image_size: int | None = None, channels: int | None = None) -> ImageData:
    """Load a ``root/<class>/<image>`` tree into memory, resized to ``image_size`` (square) if given.

    ``channels`` is 1 (grayscale) or 3 (RGB); by default 3 when any image of the tree is in colour and 1
    when all are grayscale (every file's header is read, so a grayscale first file does not turn the
    tree gray).
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
        channels = 1 if all(_is_grayscale(path) for path, _ in files) else 3
    elif channels not in (1, 3):
        raise ValueError(f"channels={channels!r} is not supported; allowed values: 1 (grayscale), 3 (RGB), None")
    arrays = [read_image(path, channels, image_size) for path, _ in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"images under {root} have different sizes {sorted(shapes)[:3]}...; pass image_size.")
    images = torch.from_numpy(np.stack(arrays))
    labels = torch.tensor([label for _, label in files])
    return ImageData(images, labels, tuple(d.name for d in class_dirs))


def make_synthetic(n: int, n_classes: int = 10, shape=(1, 16, 16), seed: int = 0) -> ImageData:
    """``n`` class-dependent images of ``shape`` ``(C, H, W)``: a bright square of side ``max(2, H // 4)``
    at a class-specific place, plus noise. For tests."""
    check_int("n", n, 0)
    check_int("n_classes", n_classes, 1)
    check_int("seed", seed)
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ValueError(f"shape must be (channels, height, width), got {shape!r}")
    for dim in shape:
        check_int("shape", dim, 1)
    c, h, w = shape
    if min(h, w) <= max(2, h // 4):
        raise ValueError(f"shape={tuple(shape)} is too small: each image holds a square of side {max(2, h // 4)} "
                         f"placed by class, so height and width must be at least {max(2, h // 4) + 1}")
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    labels = labels[torch.randperm(n, generator=g)]
    x = torch.rand(n, c, h, w, generator=g) * 60
    s = max(2, h // 4)
    for cls in range(n_classes):
        top = (cls * 3) % (h - s)
        left = (cls * 5) % (w - s)
        x[labels == cls, :, top:top + s, left:left + s] += 180
    return ImageData(x.clamp(0, 255).to(torch.uint8), labels, tuple(f"class{i}" for i in range(n_classes)))


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
