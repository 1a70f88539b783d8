"""Diagnostic figures of a representation (patchwork's ``query_fig``, ``visualize_kernels`` and its
confusion matrices, jg10545/patchwork): nearest-neighbour queries, first-layer kernels, confusion matrix.
Each returns a matplotlib figure (the caller glues or closes it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageData


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
    import matplotlib.pyplot as plt  # a heavy import, needed only when a figure is drawn

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
    import matplotlib.pyplot as plt  # a heavy import, needed only when a figure is drawn

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
    import matplotlib.pyplot as plt  # a heavy import, needed only when a figure is drawn

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
