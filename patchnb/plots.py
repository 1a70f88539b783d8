"""Figure helpers shared by the notebooks (matplotlib; labelled axes, no kernels)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch


def _to_image(x: torch.Tensor):
    """(C, h, w) -> array scaled to its own [min, max] range, grayscale or RGB."""
    x = x.detach().float()
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def image_grid(images: torch.Tensor, ncols: int = 16, title: str | None = None, labels=None, size: float = 0.6):
    """A grid of (N, C, h, w) images, each scaled to its own range; returns the figure."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_to_image(images[i]), cmap="gray", interpolation="nearest")
            if labels is not None:
                ax.set_title(str(labels[i]), fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def patch_rows(rows: dict[str, torch.Tensor], title: str | None = None, size: float = 0.6):
    """One row of (N, C, h, w) images per entry of ``rows``, the key as the row label."""
    n = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(n * size + 1, len(rows) * size + 0.4), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        for i in range(n):
            ax = axes[r, i]
            ax.set_xticks([])
            ax.set_yticks([])
            if i < len(imgs):
                ax.imshow(_to_image(imgs[i]), cmap="gray", interpolation="nearest")
        axes[r, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
