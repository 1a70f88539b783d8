"""What a representation looks like: alignment / uniformity, the rotation test, nearest-neighbour
queries, saved projections, first-layer kernels and confusion matrices (patchwork's diagnostics,
seed 002).

The alignment and uniformity *losses* live in :mod:`patchnb.losses` (Wang & Isola 2020, squared
distances, no self-pairs); :func:`alignment_uniformity` evaluates them on held-out images.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
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
      normalised batch and a generator to a view; default: random crop after 4-pixel padding + flip);
    * uniformity :math:`\log \frac{2}{n(n-1)} \sum_{i<j} e^{-t\|f(x_i) - f(x_j)\|^2}` over distinct pairs
      of the un-augmented images.

    Lower is better for both. Returns ``{"alignment", "uniformity", "n"}``.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    g = torch.Generator().manual_seed(seed)
    if len(data) > n:
        data = data.subset(torch.randperm(len(data), generator=g)[:n].sort().values)
    augment = augment or (lambda x, gen: random_crop_flip(x, 4, True, gen))
    dev = _device_of(encoder, device)
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


# ----------------------------------------------------------------------------- figures


def _show(ax, img: torch.Tensor) -> None:
    img = img.float()
    if img.max() > 1:
        img = img / 255
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img[:3].permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def query_figure(feats: torch.Tensor, data: ImageData, n_matches: int = 5, queries: Sequence[int] | None = None,
                 title: str | None = None):
    """Nearest-neighbour queries (patchwork's ``query_fig``): one row per query image (default: the first image
    of each class) followed by its ``n_matches`` most cosine-similar images (itself excluded), each titled
    with its class and similarity. ``feats`` are the features of ``data`` (same order)."""
    import matplotlib.pyplot as plt

    if len(feats) != len(data):
        raise ValueError(f"feats ({len(feats)}) and data ({len(data)}) must have the same length")
    labels = data.labels
    if queries is None:
        queries = [int((labels == c).nonzero()[0]) for c in torch.unique(labels).tolist()]
    z = F.normalize(feats.float(), dim=1)
    sim = z[list(queries)] @ z.T
    sim[torch.arange(len(queries)), torch.as_tensor(list(queries))] = -float("inf")
    top_sim, top = sim.topk(min(n_matches, len(data) - 1), dim=1)
    names = data.classes
    fig, axes = plt.subplots(len(queries), top.shape[1] + 1, figsize=(1.4 * (top.shape[1] + 1), 1.5 * len(queries)),
                             squeeze=False)
    for r, q in enumerate(queries):
        _show(axes[r, 0], data.images[q])
        axes[r, 0].set_title(f"query: {names[int(labels[q])]}", fontsize=7, color="tab:blue")
        for c in range(top.shape[1]):
            j = int(top[r, c])
            _show(axes[r, c + 1], data.images[j])
            ok = int(labels[j]) == int(labels[q])
            axes[r, c + 1].set_title(f"{names[int(labels[j])]} {float(top_sim[r, c]):.2f}", fontsize=7,
                                     color="black" if ok else "tab:red")
    fig.suptitle(title or "nearest neighbours by cosine similarity (red: another class)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return fig


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first ``nn.Conv2d`` of ``model`` (registration order)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m
    raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer to visualise")


def kernel_figure(model: nn.Module, max_kernels: int = 64, ncols: int = 8, title: str | None = None):
    """The first convolution's filters (patchwork's ``visualize_kernels``), each rescaled to [0, 1]
    on its own; RGB when the layer has 3 input channels, else the mean over input channels in grey.
    Healthy learned filters include some edge / colour-blob detectors."""
    import matplotlib.pyplot as plt

    w = first_conv(model).weight.detach().float().cpu()[:max_kernels]
    w = w[:, :3] if w.shape[1] == 3 else w.mean(1, keepdim=True)
    lo = w.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = w.flatten(1).max(1).values.view(-1, 1, 1, 1)
    w = (w - lo) / (hi - lo).clamp_min(1e-12)
    ncols = max(1, min(ncols, len(w)))
    nrows = -(-len(w) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.8, nrows * 0.8), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(w):
            _show(ax, w[i])
        else:
            ax.axis("off")
    fig.suptitle(title or f"first-layer kernels ({tuple(first_conv(model).weight.shape)})", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


def confusion_figure(confusion, classes: Sequence[str] | None = None, normalize: bool = True,
                     title: str | None = None):
    """Confusion matrix plot (rows: true class, columns: predicted), row-normalised by default, with
    the value in every cell."""
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion must be a square matrix, got shape {cm.shape}")
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalize else cm
    n = len(cm)
    classes = list(classes) if classes is not None else [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(0.5 * n + 2.5, 0.5 * n + 2))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    for i in range(n):
        for j in range(n):
            txt = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, txt, ha="center", va="center", fontsize=6,
                    color="white" if shown[i, j] > 0.5 * shown.max() else "black")
    ax.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), classes, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    fig.colorbar(im, ax=ax, label="fraction of the true class" if normalize else "count")
    ax.set_title(title or "confusion matrix", fontsize=9)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- projections


def has_parquet() -> bool:
    """Whether pandas can write parquet here (pyarrow or fastparquet installed)."""
    for mod in ("pyarrow", "fastparquet"):
        try:
            __import__(mod)
            return True
        except ImportError:
            pass
    return False


def projections_frame(feats: torch.Tensor, labels: torch.Tensor, split: str | Sequence[str] = "test",
                      classes: Sequence[str] | None = None):
    """A pandas DataFrame: ``split``, ``label``, ``class`` and one column ``z0 ... z{D-1}`` per feature."""
    import pandas as pd

    feats = torch.as_tensor(feats).float()
    labels = torch.as_tensor(labels).long()
    if feats.ndim != 2 or len(feats) != len(labels):
        raise ValueError(f"feats must be (N, D) and labels (N,), got {tuple(feats.shape)} and {tuple(labels.shape)}")
    split_col = [split] * len(labels) if isinstance(split, str) else list(split)
    if len(split_col) != len(labels):
        raise ValueError(f"split must be a string or one entry per row, got {len(split_col)} for {len(labels)} rows")
    df = pd.DataFrame(feats.numpy(), columns=[f"z{i}" for i in range(feats.shape[1])])
    df.insert(0, "split", split_col)
    df.insert(1, "label", labels.numpy())
    if classes is not None:
        df.insert(2, "class", [classes[i] for i in labels.tolist()])
    return df


def save_projections(path: str | Path, feats: torch.Tensor, labels: torch.Tensor, split: str | Sequence[str] = "test",
                     classes: Sequence[str] | None = None) -> Path:
    """Write embeddings + labels + split (patchwork's ``save_projections``) to ``path``: parquet when the
    suffix is ``.parquet`` and pyarrow/fastparquet is installed, else CSV (a ``.parquet`` request falls back
    to ``.csv`` with a warning). Returns the path written; read it back with :func:`load_projections`
    (``pandas.read_csv`` / ``pandas.read_parquet``)."""
    path = Path(path)
    df = projections_frame(feats, labels, split, classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        if has_parquet():
            df.to_parquet(path, index=False)
            return path
        warnings.warn(f"pyarrow/fastparquet is not installed: writing {path.with_suffix('.csv')} instead of {path}",
                      stacklevel=2)
        path = path.with_suffix(".csv")
    df.to_csv(path, index=False)
    return path


def load_projections(path: str | Path):
    """Read a file written by :func:`save_projections` into a DataFrame."""
    import pandas as pd

    path = Path(path)
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
