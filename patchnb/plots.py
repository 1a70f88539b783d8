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


def explore_grid(states: dict[str, torch.Tensor], sizes, kinds, size: float = 0.32):
    """Precomputed explorer states: one panel of centroids per (patch size, whitening), rows by patch
    size and columns by whitening (``states["<size>-<kind>"]`` of shape (n, C, s, s))."""
    n = len(next(iter(states.values())))
    per_row = math.ceil(math.sqrt(n))
    fig = plt.figure(figsize=(len(kinds) * per_row * size + 1, len(sizes) * per_row * size + 0.6))
    outer = fig.add_gridspec(len(sizes), len(kinds), wspace=0.15, hspace=0.3)
    for r, s in enumerate(sizes):
        for c, kind in enumerate(kinds):
            imgs = states[f"{s}-{kind}"]
            inner = outer[r, c].subgridspec(per_row, per_row, wspace=0.05, hspace=0.05)
            for i in range(per_row * per_row):
                ax = fig.add_subplot(inner[i // per_row, i % per_row])
                ax.axis("off")
                if i < len(imgs):
                    ax.imshow(_to_image(imgs[i]), cmap="gray", interpolation="nearest")
                if i == 0:
                    ax.set_title(f"{s}x{s}, {kind}", fontsize=7, loc="left")
    fig.suptitle(f"{n} k-means centroids per patch size (rows) and whitening (columns)", fontsize=9)
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


def spectrum(eigenvalues: torch.Tensor, title: str):
    """Eigenvalues (largest first) on a log axis: the spectrum of a patch covariance."""
    lam = torch.as_tensor(eigenvalues).double().numpy()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(range(1, len(lam) + 1), lam, "o-", ms=3)
    ax.set_xlabel("component (sorted)")
    ax.set_ylabel("eigenvalue (normalised pixel units²)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def loglog_curves(curves: dict[str, dict], xlabel: str, ylabel: str, title: str):
    """One log-log line per entry ``label -> {x: y}`` (e.g. distortion against k, Figure 5)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, curve in curves.items():
        ax.loglog(list(curve), list(curve.values()), "o-", ms=3, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def stimulus_rows(rows: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], title: str):
    """One row of uint8 ``(N, 1, h, w)`` stimuli per entry ``name -> (images, shape labels, texture
    labels)``, ordered by shape class and titled ``S<shape>/T<texture>``."""
    n = max(len(v[0]) for v in rows.values())
    fig, axes = plt.subplots(len(rows), n, figsize=(n, 1.1 * len(rows)), squeeze=False)
    for row, (name, (images, shape, texture)) in enumerate(rows.items()):
        for j, i in enumerate(shape.argsort().tolist()):
            ax = axes[row, j]
            ax.imshow(torch.as_tensor(images[i, 0]).numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"S{int(shape[i])}/T{int(texture[i])}", fontsize=7)
        axes[row, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def errorbar_panels(panels: dict[str, dict[str, tuple]], xlabel: str, ylabel: str, figsize=(9, 3.4)):
    """Side-by-side panels sharing the y axis: ``panel title -> {line label: (x, y, yerr)}``."""
    fig, axes = plt.subplots(1, len(panels), figsize=figsize, sharey=True, squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels.items()):
        for label, (x, y, err) in lines.items():
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    axes[0, -1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def decisions(images: torch.Tensor, shape: torch.Tensor, texture: torch.Tensor, pred: torch.Tensor, title: str,
              n: int = 8):
    """The first ``n`` cue-conflict stimuli with their shape class S, texture class T and a model's
    decision (shape, texture or other)."""
    fig, axes = plt.subplots(1, n, figsize=(9, 1.9), squeeze=False)
    for i, ax in enumerate(axes[0]):
        ax.imshow(torch.as_tensor(images[i, 0]).numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([]), ax.set_yticks([])
        p, s, t = int(pred[i]), int(shape[i]), int(texture[i])
        verdict = "shape" if p == s else "texture" if p == t else "other"
        ax.set_title(f"S{s} T{t}\n→{p} ({verdict})", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
